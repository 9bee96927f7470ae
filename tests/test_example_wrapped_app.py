"""The docs' sample of NoT around FedProx and FedAdam runs, with a quickstart-style ClientApp.

The sample is shown in docs/guide/strategy-api.md ("The strategy in your own ServerApp").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from examples.own_app import client_app
from examples.wrapped_app import server_app
from tests.fakegrid import FakeGrid, FakeNode

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_show_the_tested_sample():
    page = (ROOT / "docs" / "guide" / "strategy-api.md").read_text()
    assert (ROOT / "examples/wrapped_app/server_app.py").read_text().strip() in page


@pytest.mark.e2e  # a whole in-process federation per base strategy
@pytest.mark.parametrize("base", ["fedprox", "fedadam"])
def test_not_around_fedprox_and_fedadam_forgets_client_1(base):
    grid = FakeGrid(
        {
            10 + p: FakeNode(client_app.app, {"partition-id": p, "num-partitions": 4})
            for p in range(4)
        }
    )
    strategy, result = server_app.run(grid, base)
    target = 11
    event = strategy.events[0]
    assert event.round == 4 and event.layers == ["conv"]
    assert [t["node_id"] for t in event.targets] == [target]
    assert grid.sent_to(target, "train") == ["train"] * 3  # rounds 1-3, never after
    for r in (4, 5, 6):
        assert target not in strategy.rounds[r].train_sampled
        assert len(strategy.rounds[r].train_replied) == 3
    assert type(strategy.strategy).__name__ == {"fedprox": "FedProx", "fedadam": "FedAdam"}[base]
    for array in result.arrays.values():
        assert np.isfinite(array.numpy()).all()
    assert len(result.train_metrics_clientapp) == 6
