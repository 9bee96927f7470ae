"""The README's "your own ServerApp" sample runs, with a quickstart-style ClientApp."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.simulation import run_simulation

from examples.own_app import client_app, server_app

ROOT = Path(__file__).resolve().parents[1]


def test_readme_shows_the_tested_sample():
    readme = (ROOT / "README.md").read_text()
    assert (ROOT / "examples/own_app/server_app.py").read_text().strip() in readme


@pytest.mark.e2e  # Flower's Ray simulation
def test_own_serverapp_forgets_client_1():
    run_simulation(
        server_app=server_app.app,
        client_app=client_app.app,
        num_supernodes=4,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "logging_level": "ERROR"},
        },
    )
    strategy, result = server_app.RUNS[-1]
    event = strategy.events[0]
    assert event.round == 4 and event.layers == ["conv"]
    assert event.keys == ["conv.weight", "conv.bias"]
    (target,) = [t["node_id"] for t in event.targets]
    assert event.targets[0]["identity"]["partition-id"] == 1
    for r in (1, 2, 3):
        assert target in strategy.rounds[r].train_replied
    for r in (4, 5, 6):
        assert target not in strategy.rounds[r].train_sampled
        assert len(strategy.rounds[r].train_replied) == 3
    assert result.arrays is not None and len(result.train_metrics_clientapp) == 6
