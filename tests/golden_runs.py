"""Fixed-seed runs of every method whose per-round results are kept in tests/golden/.

Each run is the real ServerApp (``run_experiment``) with the real ClientApp
(``not_flower.app.client_app.app``, its mods and handlers), over the in-process grid of
``tests/fakegrid.py``: nodes answer one after another, so a run is bit-for-bit
reproducible. (In Flower's simulation engine replies arrive in completion order; the
Unlearning wrapper aggregates them in node order, so a simulated run is reproducible too:
tests/test_reproducibility.py.)

:func:`summary` keeps what a refactoring must not change: per round the phase, who
trained, who was evaluated, who worked in the unlearning step, the centralized accuracy
and loss, forget accuracy and validation accuracy, bytes sent each way, and per named
model its accuracies. Wall-clock times are left out (they differ run to run).

Regenerate (only when a change of behaviour is intended and explained)::

    PYTHONPATH=$PWD .venv/bin/python -m tests.golden_runs
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from not_flower.common.methods import METHOD_NAMES, REGISTRY

GOLDEN_DIR = Path(__file__).parent / "golden"
#: Every method of the app has (and needs) a golden file; the registry's comparison variants
#: (``not-weights-only``) run as one of these with a run-config key fixed.
METHODS = METHOD_NAMES
NUM_SUPERNODES = 3
ROUND_KEYS = (
    "round",
    "phase",
    "participants",
    "evaluated",
    "unlearning_participants",
    "extra_rounds",
    "test_acc",
    "test_loss",
    "forget_acc",
    "val_acc",
    "train_loss",
    "bytes_down",
    "bytes_up",
)
MODEL_KEYS = ("test_acc", "test_loss", "forget_acc", "forget_loss", "retain_acc", "retain_loss")


def run_config(method: str, out_dir: str) -> dict:
    """The demo configuration at the size the end-to-end tests use, seed 0."""
    config = {
        "out-dir": out_dir,
        "method": method,
        "seed": 0,
        "num-train-rounds": 2,
        "recovery.rounds": 2,
        "unlearn.clients": "1",
        "lr": 0.02,
        "eval-recovery-rounds": "1,2",
        "recovery.run-to-cap": True,  # fixed-length runs: every round is kept
    }
    if REGISTRY[method].requirements.server_data:  # fukd distils on server-side data
        config["fukd.server-data-fraction"] = 0.1
    return config


def summary(results: dict) -> dict:
    """The deterministic part of a ``results.json``."""
    return {
        "method": results["method"],
        "final": results["final"],
        "rounds": [{k: row.get(k) for k in ROUND_KEYS} for row in results["rounds"]],
        "models": {
            name: {k: m.get(k) for k in MODEL_KEYS} for name, m in sorted(results["models"].items())
        },
        "requests": [
            {
                "round": r["round"],
                "partition_ids": r["partition_ids"],
                "layers": r["layers"],
                "keys": r["keys"],
            }
            for r in results["requests"]
        ],
        "stopping": {k: results["stopping"][k] for k in ("reference_val_acc", "chosen_round")},
        "storage_bytes": results["costs"]["storage_bytes"],
    }


#: Flower run ids handed out by :func:`grid_for`: each grid (a run, or its resume) a new one.
RUN_IDS = itertools.count(42)


def grid_for(config: dict):
    """The in-process grid: one node per partition, each with the run config.

    ``grid.run.run_id`` is a new run id for every grid, as Flower gives a resumed run a
    new one (the records of forgetting keep the first).
    """
    from flwr.app import Context, RecordDict  # pylint: disable=import-outside-toplevel

    from not_flower.app.client_app import app  # pylint: disable=import-outside-toplevel
    from tests.fakegrid import FakeGrid, FakeNode  # pylint: disable=import-outside-toplevel

    nodes = {}
    for pid in range(NUM_SUPERNODES):
        node = FakeNode(app, {"partition-id": pid, "num-partitions": NUM_SUPERNODES})
        node.context = Context(
            run_id=1,
            node_id=0,
            node_config=dict(node.node_config),
            state=RecordDict(),
            run_config=dict(config),
        )
        nodes[101 + 11 * pid] = node

    class RunGrid(FakeGrid):
        """The fake grid with a Flower run attached (its ``run_id``)."""

        run = SimpleNamespace(run_id=next(RUN_IDS))

    return RunGrid(nodes)


def run(method: str) -> dict:
    """Run ``method`` through the ServerApp in process and return its :func:`summary`."""
    # pylint: disable=import-outside-toplevel
    from not_flower.app.server_app import run_experiment
    from not_flower.common.config import parse_run_config

    with tempfile.TemporaryDirectory() as out:
        config = run_config(method, out)
        return summary(run_experiment(grid_for(config), parse_run_config(config), Path(out)))


def main(methods) -> None:
    """Write ``tests/golden/<method>.json`` for each method."""
    GOLDEN_DIR.mkdir(exist_ok=True)
    for method in methods:
        path = GOLDEN_DIR / f"{method}.json"
        path.write_text(json.dumps(run(method), indent=1, sort_keys=True) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1:] or METHODS)
