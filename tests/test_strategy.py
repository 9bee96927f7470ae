"""Unit tests of the NoT strategy over a fake Grid of real ClientApps."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from strategies import NoT, UnlearningError, answer_identity, identity_mod
from strategies.negation_arrays import NegationPlan
from tests.fakegrid import FakeGrid, FakeNode

KEYS = ("conv.weight", "conv.bias", "fc.weight")


def initial_arrays() -> ArrayRecord:
    rng = np.random.default_rng(0)
    return ArrayRecord({k: Array(rng.normal(size=(3, 2)).astype(np.float32)) for k in KEYS})


def quickstart_app(with_query: bool = False, with_mod: bool = False) -> ClientApp:
    """A Flower-quickstart-style ClientApp that knows nothing of not-flower unless told."""
    app = ClientApp(mods=[identity_mod] if with_mod else [])

    @app.train()
    def train(msg: Message, context):
        arrays = msg.content["arrays"]
        pid = int(context.node_config["partition-id"])
        # "training": move every weight towards the client's own value
        new = {
            k: Array((v.numpy() + 0.1 * (pid + 1)).astype(np.float32)) for k, v in arrays.items()
        }
        metrics = MetricRecord({"train-loss": float(pid), "num-examples": 10 + pid})
        return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context):
        pid = int(context.node_config["partition-id"])
        metrics = MetricRecord({"val-acc": pid / 10, "num-examples": 5})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    if with_query:
        app.query("identity")(answer_identity)
    return app


def make_grid(n=5, **app_kwargs) -> FakeGrid:
    app = quickstart_app(**app_kwargs)
    nodes = {
        1000 + 7 * i: FakeNode(app, {"partition-id": i, "num-partitions": n}, name=f"site-{i}")
        for i in range(n)
    }
    return FakeGrid(nodes)


def node_of(grid: FakeGrid, pid: int) -> int:
    return next(n for n, node in grid.nodes.items() if node.node_config["partition-id"] == pid)


def run(strategy, grid, rounds=4, seed=0, evaluate_fn=None):
    random.seed(seed)
    return strategy.start(grid, initial_arrays(), num_rounds=rounds, evaluate_fn=evaluate_fn)


PLAN = NegationPlan(layers=("conv",), keys=("conv.weight", "conv.bias"))


def test_without_request_not_is_exactly_fedavg():
    kw = dict(fraction_train=0.6, fraction_evaluate=0.4, min_train_nodes=2, min_evaluate_nodes=2)
    grid_a, grid_b = make_grid(with_query=True), make_grid(with_query=True)
    grid_a.replies_in_node_order = True  # NoT aggregates in node order (= partition order here)
    res_a = run(FedAvg(**kw), grid_a, rounds=5, seed=3)
    res_b = run(NoT(PLAN, **kw), grid_b, rounds=5, seed=3)
    assert grid_a.sent == grid_b.sent  # same sampling, same messages, same order
    for key in KEYS:
        np.testing.assert_array_equal(res_a.arrays[key].numpy(), res_b.arrays[key].numpy())
    assert res_a.train_metrics_clientapp.keys() == res_b.train_metrics_clientapp.keys()


def test_request_negates_at_boundary_and_excludes_target():
    grid = make_grid(with_query=True)
    target = node_of(grid, 2)
    seen = {}

    def central(server_round, arrays):
        seen[server_round] = {k: arrays[k].numpy().copy() for k in KEYS}
        return None

    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1)
    strategy.request_unlearning([2], at_round=3)
    result = run(strategy, grid, rounds=6, evaluate_fn=central)

    # target trained in rounds 1-2 only; never asked for train/evaluate afterwards
    assert len(grid.sent_to(target, "train")) == 2
    assert len(grid.sent_to(target, "evaluate")) == 2
    assert strategy.rounds[2].phase == "train"
    for r in range(3, 7):
        assert strategy.rounds[r].phase == "recovery"
        assert target not in strategy.rounds[r].train_sampled
        assert target not in strategy.rounds[r].train_replied
        assert len(strategy.rounds[r].train_replied) == 4
    assert strategy.excluded_node_ids == {target}
    event = strategy.events[0]
    assert event.round == 3 and [t["node_id"] for t in event.targets] == [target]
    assert event.targets[0]["value"] == "2" and event.targets[0]["name"] == "site-2"
    # round 3 trained on the NEGATED round-2 model: each client adds 0.1*(pid+1), weighted
    weights = np.array([10 + p for p in (0, 1, 3, 4)], float)
    shift = float(np.dot(weights / weights.sum(), [0.1 * (p + 1) for p in (0, 1, 3, 4)]))
    np.testing.assert_allclose(seen[3]["conv.weight"], -seen[2]["conv.weight"] + shift, rtol=1e-5)
    np.testing.assert_allclose(seen[3]["fc.weight"], seen[2]["fc.weight"] + shift, rtol=1e-5)
    assert result.arrays is not None


@pytest.mark.parametrize("by,value", [("node-id", None), ("supernode-name", "site-1")])
def test_plain_clientapp_works_unchanged_by_node_id_and_name(by, value):
    grid = make_grid()  # no identity handler, no mod
    target = node_of(grid, 1)
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1)
    strategy.request_unlearning([value or target], by=by, at_round=2)
    run(strategy, grid, rounds=3)
    assert len(grid.sent_to(target, "train")) == 1
    assert not grid.sent_to(target, "query")  # it was never even asked who it is
    assert strategy.excluded_node_ids == {target}


def test_partition_id_needs_the_one_line_and_says_so():
    grid = make_grid()  # plain app: cannot answer query.identity
    strategy = NoT(PLAN, min_train_nodes=1)
    strategy.request_unlearning("1", at_round=2)
    with pytest.raises(
        UnlearningError,
        match=r"partition-id=1 matches no connected node.*"
        r"app.query\('identity'\)\(answer_identity\)",
    ):
        run(strategy, grid, rounds=3)


def test_identity_mod_alone_is_enough():
    grid = make_grid(with_mod=True)  # replies carry the identity; no query handler
    target = node_of(grid, 4)
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1)
    strategy.request_unlearning("4", at_round=3)
    run(strategy, grid, rounds=4)
    assert len(grid.sent_to(target, "train")) == 2
    assert strategy.excluded_node_ids == {target}


def test_unknown_target_is_an_error_naming_value_and_choices():
    grid = make_grid(with_query=True)
    strategy = NoT(PLAN, min_train_nodes=1)
    strategy.request_unlearning("0,42", at_round=2)
    with pytest.raises(
        UnlearningError,
        match=r"partition-id=42 \(requested by operator, for "
        r"round 2\) matches none of the 5 connected nodes; they have "
        r"partition-id in \['0', '1', '2', '3', '4'\]; the run stops before",
    ):
        run(strategy, grid, rounds=2)
    assert not [t for t, _ in grid.sent if t == "train"]  # before round 1 trained


def test_every_client_targeted_is_refused():
    grid = make_grid(n=3, with_query=True)
    strategy = NoT(PLAN, min_train_nodes=1)
    strategy.request_unlearning("0,1,2", at_round=2)
    with pytest.raises(UnlearningError, match="exclude every connected node"):
        run(strategy, grid, rounds=2)
    assert not [t for t, _ in grid.sent if t == "train"]  # refused before round 1 trained
    assert strategy.outcomes[0].status == "failed" and not strategy.pending_requests


def test_reply_from_excluded_node_is_dropped_and_logged(caplog):
    grid = make_grid(n=3, with_query=True)
    target = node_of(grid, 0)
    grid.rogue[target] = True  # it keeps answering even when not asked
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1)
    strategy.request_unlearning("0", at_round=2)
    seen = {}
    with caplog.at_level(logging.WARNING, logger="flwr"):
        run(
            strategy,
            grid,
            rounds=3,
            evaluate_fn=lambda r, a: seen.__setitem__(r, a["fc.weight"].numpy().copy()),
        )
    assert "dropped a train reply from excluded node %d" % target in caplog.text
    # aggregate of round 3 uses clients 1 and 2 only
    w = np.array([11.0, 12.0])
    shift = float(np.dot(w / w.sum(), [0.2, 0.3]))
    np.testing.assert_allclose(seen[3], seen[2] + shift, rtol=1e-5)
    assert target not in strategy.rounds[3].train_replied


def test_restarted_target_with_new_node_id_stays_excluded():
    grid = make_grid(n=4, with_query=True)
    old = node_of(grid, 3)
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1)
    strategy.request_unlearning("3", at_round=2)

    def restart(server_round, arrays):
        if server_round == 2:  # the target comes back under a new id
            node = grid.nodes.pop(old)
            grid.nodes[99] = FakeNode(node.app, dict(node.node_config), name=node.name)
        return None

    run(strategy, grid, rounds=4, evaluate_fn=restart)
    assert not grid.sent_to(99, "train") and not grid.sent_to(99, "evaluate")
    assert grid.sent_to(99, "query")  # it was asked who it is, then excluded
    assert strategy.excluded_node_ids == {old, 99}


def test_too_few_nodes_left_fails_clearly_after_waiting():
    grid = make_grid(n=3, with_query=True)
    strategy = NoT(PLAN, min_train_nodes=3, node_wait_timeout=0.5)
    strategy.request_unlearning("0", at_round=2)
    with pytest.raises(UnlearningError, match=r"needs 3 non-target node\(s\) for train but only 2"):
        run(strategy, grid, rounds=2)


def test_live_request_from_another_caller_applies_at_next_boundary():
    grid = make_grid(with_query=True)
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1)

    def central(server_round, arrays):
        if server_round == 2:
            strategy.request_unlearning("1")  # arrives mid-run
        return None

    run(strategy, grid, rounds=4, evaluate_fn=central)
    assert strategy.events[0].round == 3
    assert len(grid.sent_to(node_of(grid, 1), "train")) == 2


def test_keys_instead_of_plan_and_bad_input():
    strategy = NoT(["conv.weight"])
    assert strategy.negation.keys == ("conv.weight",)
    with pytest.raises(ValueError, match="non-empty list of state_dict keys"):
        NoT([])
    with pytest.raises(ValueError, match="names no target"):
        strategy.request_unlearning("")
    with pytest.raises(ValueError, match="at_round must be an integer >= 1"):
        strategy.request_unlearning("1", at_round=0)
    with pytest.raises(ValueError, match="node ids are non-negative integers"):
        strategy.request_unlearning("abc", by="node-id")


def _bad_app(kind: str) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context):
        arrays = {k: v.numpy().copy() for k, v in msg.content["arrays"].items()}
        n = 10
        if kind == "nan":
            arrays["fc.weight"][0, 0] = np.nan
        elif kind == "inf":
            arrays["conv.bias"][1, 1] = -np.inf
        elif kind == "keys":
            arrays["extra.weight"] = arrays.pop("fc.weight")
        elif kind == "shape":
            arrays["conv.weight"] = np.zeros((4, 2), np.float32)
        elif kind == "weight":
            n = 0
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                "metrics": MetricRecord({"train-loss": 0.0, "num-examples": n}),
            }
        )
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context):
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": 5})}), reply_to=msg)

    return app


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("nan", "tensor 'fc.weight' holds NaN or inf"),
        ("inf", "tensor 'conv.bias' holds NaN or inf"),
        (
            "keys",
            r"keys differ from the global model: missing \['fc.weight'\], "
            r"unexpected \['extra.weight'\]",
        ),
        (
            "shape",
            r"tensor 'conv.weight' is \(4, 2\) float32, the global model's is \(3, 2\) float32",
        ),
        ("weight", "metric 'num-examples' must be a positive number, got 0"),
    ],
)
def test_untrusted_replies_are_rejected_and_the_rest_aggregated(kind, reason, caplog):
    grid = make_grid(n=3, with_query=True)
    grid.nodes[666] = FakeNode(_bad_app(kind), {"partition-id": 9, "num-partitions": 4})
    seen = {}
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        run(
            strategy,
            grid,
            rounds=2,
            evaluate_fn=lambda r, a: seen.__setitem__(r, {k: a[k].numpy().copy() for k in KEYS}),
        )
    assert "rejected the train reply of node 666" in caplog.text
    import re

    assert re.search(reason, strategy.rounds[1].rejected_train[666])
    assert "metric keys ['num-examples'] differ" in strategy.rounds[1].rejected_evaluate[666]
    assert 666 not in strategy.rounds[1].train_replied
    # the aggregate is the weighted mean of the three good clients only
    w = np.array([10.0, 11.0, 12.0])
    shift = float(np.dot(w / w.sum(), [0.1, 0.2, 0.3]))
    for key in KEYS:
        np.testing.assert_allclose(seen[1][key], seen[0][key] + shift, rtol=1e-5)
        assert np.isfinite(seen[2][key]).all()


def test_server_momentum_and_config_apply_in_recovery_only():
    grid = make_grid(n=3, with_query=True)
    seen, configs = {}, []
    original = grid.send_and_receive

    def spy(messages, *, timeout=None):
        messages = list(messages)
        configs.extend(
            dict(m.content["config"]) for m in messages if m.metadata.message_type == "train"
        )
        return original(messages, timeout=timeout)

    grid.send_and_receive = spy
    strategy = NoT(
        ["fc.weight"],
        min_train_nodes=1,
        min_evaluate_nodes=1,
        recovery_momentum=0.5,
        recovery_config={"lr": 0.123},
    )
    strategy.request_unlearning("0", at_round=3)
    run(
        strategy,
        grid,
        rounds=4,
        evaluate_fn=lambda r, a: seen.__setitem__(r, a["conv.weight"].numpy().copy()),
    )
    w2 = np.array([11.0, 12.0])
    shift = float(np.dot(w2 / w2.sum(), [0.2, 0.3]))  # clients 1, 2 in recovery
    w3 = np.array([10.0, 11.0, 12.0])
    shift_all = float(np.dot(w3 / w3.sum(), [0.1, 0.2, 0.3]))
    np.testing.assert_allclose(seen[2], seen[1] + shift_all, rtol=1e-5)  # plain FedAvg
    np.testing.assert_allclose(seen[3], seen[2] + shift, rtol=1e-5)  # v = delta
    np.testing.assert_allclose(seen[4], seen[3] + 1.5 * shift, rtol=1e-5)  # v = 0.5 v + delta
    assert [c.get("lr") for c in configs] == [None] * 6 + [0.123] * 4
    with pytest.raises(ValueError, match=r"server_momentum must be in \[0, 1\), got 1.0"):
        NoT(["fc.weight"], recovery_momentum=1.0)
