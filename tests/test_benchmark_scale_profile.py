"""benchmarks/strategy_profile.py and benchmarks/scale.py measure what they say.

The profile's FedAvg baseline must aggregate every client in every round (its fake clients
used to fail from round 2 on with a BatchNorm model: FedAvg's float64
``num_batches_tracked``); scale.py must finish with a client excluded (it waited for
``clients`` nodes although one is excluded) and read only public strategy attributes.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import scale  # noqa: E402  (benchmarks/ is not a package)
import strategy_profile  # noqa: E402
from tests.fakegrid import FakeGrid, FakeNode  # noqa: E402


class TinyBN(torch.nn.Module):
    """A model with BatchNorm (an int64 ``num_batches_tracked``), small and fast."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.bn = torch.nn.BatchNorm2d(2)
        self.fc = torch.nn.Linear(2 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).flatten(1))


def _grid(model, nodes: int = 3) -> FakeGrid:
    app = strategy_profile.client_app({k: v.numpy().dtype for k, v in model.state_dict().items()})
    return FakeGrid(
        {
            1000 + i: FakeNode(app, {"partition-id": i, "num-partitions": nodes})
            for i in range(nodes)
        }
    )


def test_fedavg_baseline_aggregates_every_client_in_every_round():
    model = TinyBN()
    grid = _grid(model)
    errors = strategy_profile.count_errors(grid)
    result = FedAvg(min_available_nodes=3).start(
        grid, ArrayRecord(model.state_dict()), num_rounds=3, train_config=ConfigRecord({"lr": 0.1})
    )
    assert errors == {"errors": 0, "first": ""}
    assert sorted(result.train_metrics_clientapp) == [1, 2, 3]
    assert grid.sent.count(("train", 1000)) == 3
    # FedAvg itself still turns the counter into float64: the fake clients cope, as real ones
    assert result.arrays["bn.num_batches_tracked"].dtype == "float64"


def test_profile_stops_when_a_reply_is_an_error(monkeypatch):
    monkeypatch.setattr(strategy_profile, "_updated", lambda value, dtype: 1 / 0)
    with pytest.raises(
        SystemExit,
        match=r"client replies were errors \(first: "
        r"ZeroDivisionError.*different work",
    ):
        strategy_profile.main(
            ["--model", "cnn", "--clients", "2", "--rounds", "2", "--repeat", "1"]
        )


def test_target_resolution_asks_every_node_once():
    model = strategy_profile.build_model("cnn", (1, 8, 8), 10)
    app = strategy_profile.client_app({k: v.numpy().dtype for k, v in model.state_dict().items()})
    row = strategy_profile.resolve_targets(model, (1, 8, 8), app, 12)
    assert row["nodes"] == 12 and row["asked"] == 12  # the first request asks everyone
    assert row["first_ms"] > 0 and row["second_asked"] == 0  # the second: from the cache


def test_scale_waits_for_the_nodes_left_and_reads_public_attributes_only():
    tree = ast.parse((ROOT / "benchmarks" / "scale.py").read_text())
    private = sorted(
        {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        }
    )
    assert private == []
    call = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "NoT"
    )
    (minimum,) = [k.value for k in call.keywords if k.arg == "min_available_nodes"]
    assert ast.unparse(minimum) == "clients - 1"


def test_scale_times_identity_queries():
    model = strategy_profile.build_model("cnn", (1, 8, 8), 10)
    grid = _grid(model, nodes=4)
    from not_flower.task.models import example_input
    from strategies import NoT, plan_negation

    strategy = NoT(plan_negation(model, example_input((1, 8, 8))), min_available_nodes=3)
    strategy.request_unlearning("0", at_round=2)
    spent = scale.time_identity_queries(strategy)
    strategy.start(
        grid, ArrayRecord(model.state_dict()), num_rounds=3, train_config=ConfigRecord({"lr": 0.1})
    )
    assert spent["nodes"] == 4 and spent["seconds"] > 0
    (excluded,) = strategy.excluded_node_ids
    assert grid.sent_to(excluded, "train") == ["train"]  # round 1 only
