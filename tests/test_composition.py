"""The Unlearning wrapper composed with Flower's own strategies, as a Flower engineer uses it.

The ClientApp is a plain quickstart-style app that knows nothing of not-flower (targets are
named by node id or SuperNode name, which need nothing from the client); the grid is the
in-process grid of tests/fakegrid.py over real ClientApps and real Flower messages. Needs
numpy and Flower, not torch nor not_flower (scripts/test-flwr-nightly.sh runs this file
against the newest flwr-nightly).

Covered: the DP nesting (server-side DP around the wrapper is
refused before round 1, inside it keeps the negation; client-side DP, fixed and adaptive,
either way), a fresh server state at every request for every stateful strategy (the adaptive
DP clipping norm included; and ``keep_server_state``), the requests' typed outcomes in
``start()``'s result (a DP accountant refusing the smaller sample fails the request), ``by``
checked early, the DP sample-size warning, ``should_stop``, the grid view's
``pull_messages`` in Flower 1.42's and 1.43's forms, the wrapper's name in logs and
``repr``, and a client forgotten once only.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedYogi,
    Result,
)
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from flwr.supercore.privacy_accounting import (
    NeighboringRelation,
    PrivacyConfig,
    PrivacySpent,
    SamplingMethod,
)

from strategies import Negation, NegationPlan, Unlearning, UnlearningError, answer_identity
from strategies.composition import fresh_copy
from strategies.grid_view import ExcludingGrid
from strategies.outcomes import UnlearningResult
from tests.fakegrid import FakeGrid, FakeNode

KEYS = ("conv.weight", "conv.bias", "fc.weight")
PLAN = NegationPlan(layers=("conv",), keys=("conv.weight", "conv.bias"))
ALL = dict(min_train_nodes=2, min_evaluate_nodes=2, min_available_nodes=2)


def plain_app(mods=(), identity=False) -> ClientApp:
    """A quickstart ClientApp: "training" moves every weight by 0.1 * (partition-id + 1)."""
    app = ClientApp(mods=list(mods))

    @app.train()
    def train(msg: Message, context):
        pid = int(context.node_config["partition-id"])
        new = {
            k: Array((v.numpy() + 0.1 * (pid + 1)).astype(np.float32))
            for k, v in msg.content["arrays"].items()
        }
        metrics = MetricRecord({"train-loss": float(pid), "num-examples": 10})
        return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context):
        metrics = MetricRecord({"val-acc": 0.5, "num-examples": 10})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    if identity:
        app.query("identity")(answer_identity)
    return app


def grid_of(n=4, **app_kwargs) -> FakeGrid:
    app = plain_app(**app_kwargs)
    return FakeGrid(
        {1000 + 7 * i: FakeNode(app, {"partition-id": i}, name=f"site-{i}") for i in range(n)}
    )


def initial() -> ArrayRecord:
    rng = np.random.default_rng(0)
    return ArrayRecord({k: Array(rng.normal(size=(3, 2)).astype(np.float32)) for k in KEYS})


def start(strategy, grid, rounds=4, **kwargs):
    """Run ``strategy``; returns (result, the global model after each round)."""
    random.seed(3)
    np.random.seed(3)
    seen = {}

    def central(server_round, arrays):
        seen[server_round] = {k: arrays[k].numpy().copy() for k in KEYS}

    return strategy.start(grid, initial(), num_rounds=rounds, evaluate_fn=central, **kwargs), seen


def cosine(a, b) -> float:
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ------------------------------------------------------------------ 1. DP nesting
@pytest.mark.parametrize(
    "dp",
    [DifferentialPrivacyServerSideFixedClipping, DifferentialPrivacyServerSideAdaptiveClipping],
)
def test_server_side_dp_around_the_wrapper_is_refused_before_round_1(dp):
    grid = grid_of()
    inner = Unlearning(FedAvg(**ALL), Negation(PLAN))
    inner.request_unlearning(1000, by="node-id", at_round=2)
    clip = (
        {"clipping_norm": 1.0}
        if dp is DifferentialPrivacyServerSideFixedClipping
        else {"initial_clipping_norm": 1.0}
    )
    outer = dp(inner, noise_multiplier=0.0, num_sampled_clients=4, **clip)
    with pytest.raises(
        TypeError,
        match=rf"{dp.__name__} wraps the Unlearning wrapper.*"
        rf"Put it inside instead: Unlearning\({dp.__name__}\(FedAvg",
    ):
        start(outer, grid)
    assert grid.sent == []  # nothing was sent


def test_server_side_dp_inside_the_wrapper_keeps_the_negation():
    grid = grid_of()
    target = 1000
    strategy = Unlearning(
        DifferentialPrivacyServerSideFixedClipping(
            FedAvg(**ALL), noise_multiplier=0.0, clipping_norm=1.0, num_sampled_clients=3
        ),
        Negation(PLAN),
    )
    strategy.request_unlearning(target, by="node-id", at_round=3)
    _, seen = start(strategy, grid, rounds=3)
    for key in PLAN.keys:  # the recovery round moves the negated layer by at most the clip
        assert cosine(seen[3][key], seen[2][key]) < -0.9
        assert np.linalg.norm(seen[3][key] + seen[2][key]) <= 1.0 + 1e-5
    assert cosine(seen[3]["fc.weight"], seen[2]["fc.weight"]) > 0.9


CLIENT_DP = {  # the client-side DP wrapper, its clipping arguments, the clients' mod
    "fixed": (
        DifferentialPrivacyClientSideFixedClipping,
        {"clipping_norm": 1.0},
        fixedclipping_mod,
    ),
    "adaptive": (
        DifferentialPrivacyClientSideAdaptiveClipping,
        {"initial_clipping_norm": 1.0},
        adaptiveclipping_mod,
    ),
}


@pytest.mark.parametrize("clipping", CLIENT_DP)
@pytest.mark.parametrize("outside", [True, False])
def test_client_side_dp_either_way_keeps_the_negation(outside, clipping):
    """The clients' fixedclipping_mod/adaptiveclipping_mod clip against the model they
    received (the negated one), and the client-side DP wrapper only adds noise (and, the
    adaptive one, adapts the norm it sends): both nestings are right."""
    dp, clip, mod = CLIENT_DP[clipping]
    grid = grid_of(mods=[mod])
    if outside:
        inner = Unlearning(FedAvg(**ALL), Negation(PLAN))
        strategy = dp(inner, noise_multiplier=0.0, num_sampled_clients=3, **clip)
    else:
        inner = strategy = Unlearning(
            dp(FedAvg(**ALL), noise_multiplier=0.0, num_sampled_clients=3, **clip),
            Negation(PLAN),
        )
    inner.request_unlearning(1000, by="node-id", at_round=3)
    _, seen = start(strategy, grid, rounds=3)
    for key in PLAN.keys:
        assert cosine(seen[3][key], seen[2][key]) < -0.9
    assert inner.outcomes[0].status == "applied"


# ------------------------------------------------------------------ 2. server state
STATEFUL = {
    "FedAdam": lambda: FedAdam(eta=0.05, beta_1=0.9, beta_2=0.99, **ALL),
    "FedYogi": lambda: FedYogi(eta=0.05, **ALL),
    "FedAdagrad": lambda: FedAdagrad(eta=0.05, **ALL),
    "FedAvgM": lambda: FedAvgM(server_momentum=0.9, **ALL),
    "DP": lambda: DifferentialPrivacyServerSideFixedClipping(
        FedAvg(**ALL), noise_multiplier=0.0, clipping_norm=0.5, num_sampled_clients=3
    ),
    "DP-adaptive": lambda: DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvg(**ALL), noise_multiplier=0.0, num_sampled_clients=3, initial_clipping_norm=0.5
    ),  # 3 of 4 updates clipped in rounds 1-2: the norm adapts before the request
}


@pytest.mark.parametrize("name", STATEFUL)
def test_each_request_gets_a_fresh_server_state_unless_kept(name):
    """Default: after the request the wrapped strategy goes on exactly as a fresh copy of
    itself would (``recovery_strategy`` = the same strategy, copied afresh); with
    ``keep_server_state=True`` its moments/momentum/model copy from before carry over."""
    runs, norms = {}, {}
    for variant, kwargs in {
        "default": {},
        "fresh": {"recovery_strategy": STATEFUL[name]()},
        "kept": {"keep_server_state": True},
    }.items():
        strategy = Unlearning(STATEFUL[name](), Negation(PLAN), **kwargs)
        strategy.request_unlearning(1000, by="node-id", at_round=3)
        _, runs[variant] = start(strategy, grid_of(), rounds=5)
        norms[variant] = getattr(strategy.active_strategy, "clipping_norm", None)
        if variant == "default":
            assert strategy.active_strategy is not strategy.strategy
            assert type(strategy.active_strategy) is type(strategy.strategy)
    for r in range(1, 6):
        for key in KEYS:
            np.testing.assert_array_equal(runs["default"][r][key], runs["fresh"][r][key])
    if name != "DP":  # the DP wrapper's model copy is renewed every round anyway
        assert not np.array_equal(runs["default"][3]["conv.weight"], runs["kept"][3]["conv.weight"])
    if name == "DP-adaptive":  # the adapted clipping norm restarts at the request
        assert norms["default"] == norms["fresh"] != norms["kept"]


def test_fedavgm_fresh_state_steps_from_the_negated_model():
    """FedAvgM keeps its own copy of the model: kept, its first recovery step is taken from
    the model before the negation; fresh, exactly from the negated one."""
    seen = {}
    for keep in (False, True):
        strategy = Unlearning(
            FedAvgM(server_momentum=0.9, **ALL), Negation(PLAN), keep_server_state=keep
        )
        strategy.request_unlearning(1000, by="node-id", at_round=3)
        _, seen[keep] = start(strategy, grid_of(), rounds=3)
    step = np.mean([0.1 * (p + 1) for p in (1, 2, 3)])  # the 3 other clients' mean shift
    for key in PLAN.keys:
        np.testing.assert_allclose(seen[False][3][key], -seen[False][2][key] + step, rtol=1e-5)
        assert not np.allclose(seen[True][3][key], -seen[True][2][key] + step, rtol=1e-3)


class MetricsCollector:
    """A stateful metrics callback: counts the rounds it aggregated."""

    def __init__(self) -> None:
        self.calls = 0

    def aggregate(self, records, weighting_metric_name):
        self.calls += 1
        return aggregate_metricrecords(records, weighting_metric_name)


def test_a_bound_method_callback_works_on_a_copy_after_a_request():
    """The fresh copy is a deepcopy: a bound-method callback's object is copied with it
    (as documented), a plain function's closure is shared."""
    collector, closure_calls = MetricsCollector(), []

    def closure(records, weighting_metric_name):
        closure_calls.append(len(records))
        return aggregate_metricrecords(records, weighting_metric_name)

    fedavg = FedAvg(
        train_metrics_aggr_fn=collector.aggregate, evaluate_metrics_aggr_fn=closure, **ALL
    )
    strategy = Unlearning(fedavg, Negation(PLAN))
    strategy.request_unlearning(1000, by="node-id", at_round=3)
    start(strategy, grid_of(), rounds=4)
    copied = strategy.active_strategy.train_metrics_aggr_fn.__self__
    assert copied is not collector
    assert (collector.calls, copied.calls) == (2, 2)  # rounds 1-2, then rounds 3-4
    assert closure_calls == [4, 4, 3, 3]


def test_fresh_copy_shares_the_privacy_accountant():
    template = DifferentialPrivacyServerSideFixedClipping(
        FedAvg(), noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=3
    )
    used = fresh_copy(template, None)
    used.accountant = ledger = object()  # what a real accountant has spent so far
    used.current_arrays = initial()
    fresh = fresh_copy(template, used)
    assert fresh.accountant is ledger
    assert len(fresh.current_arrays) == 0 and fresh.strategy is not used.strategy


# ------------------------------------------------------------------ 3. outcomes
def test_outcomes_in_the_result_and_on_the_request(caplog):
    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN))
    applied = strategy.request_unlearning("site-1", by="supernode-name", at_round=2)
    late = strategy.request_unlearning(1000, by="node-id", at_round=10)
    assert applied.status == "pending" and applied.outcome.round is None
    with caplog.at_level(logging.WARNING, logger="flwr"):
        result, _ = start(strategy, grid_of(), rounds=3)
    assert isinstance(result, UnlearningResult) and isinstance(result, Result)
    assert result.unlearning == strategy.outcomes == [applied.outcome, late.outcome]
    assert applied.status == "applied"
    assert applied.outcome.to_dict() == {
        "by": "supernode-name",
        "values": ["site-1"],
        "kind": "client",
        "requested_by": "operator",
        "at_round": 2,
        "status": "applied",
        "round": 2,
        "node_ids": [1007],
        "negated": ["conv"],
        "reason": "",
        "negated_metrics": None,
    }
    assert late.status == "pending"
    assert (
        "the run ended after round 3 with an unlearning request still pending, never "
        "applied: node-id=1000 (asked for round 10): pending"
    ) in caplog.text
    assert len(strategy.events) == 1


@pytest.mark.parametrize("evaluate_negated", [True, False])
def test_the_negated_model_reaches_evaluate_fn(evaluate_negated):
    """At the request round evaluate_fn also sees the model the step produced (before
    recovery trains it); its metrics are the outcome's, not the Result's per-round ones."""
    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN), evaluate_negated=evaluate_negated)
    request = strategy.request_unlearning("site-1", by="supernode-name", at_round=2)
    calls = []

    def central(server_round, arrays):
        calls.append(server_round)
        return MetricRecord({"conv-sum": float(arrays["conv.weight"].numpy().sum())})

    before = {}
    strategy.on_unlearning = lambda event, old, new: before.update(
        old=float(old["conv.weight"].numpy().sum()), new=float(new["conv.weight"].numpy().sum())
    )
    result = strategy.start(grid_of(), initial(), num_rounds=3, evaluate_fn=central)
    assert request.status == "applied"
    if evaluate_negated:
        assert calls == [0, 1, 2, 2, 3]  # round 2's extra call comes first, on the step's model
        assert request.outcome.negated_metrics == {"conv-sum": pytest.approx(before["new"])}
        assert before["new"] == pytest.approx(-before["old"])
    else:
        assert calls == [0, 1, 2, 3] and request.outcome.negated_metrics is None
    assert sorted(result.evaluate_metrics_serverapp) == [0, 1, 2, 3]


def test_a_round_that_fails_after_the_step_fails_the_request():
    """The round after the step cannot sample (min_available_nodes can no longer be met):
    the request is failed with the reason, and no event is recorded."""
    strategy = Unlearning(
        FedAvg(min_train_nodes=4, min_evaluate_nodes=4, min_available_nodes=4),
        Negation(PLAN),
        node_wait_timeout=0,
    )
    request = strategy.request_unlearning(1000, by="node-id", at_round=2)
    with pytest.raises(UnlearningError, match="recovery needs 4 non-target node"):
        start(strategy, grid_of(), rounds=3)
    assert request.status == "failed" and request.outcome.round == 2
    assert "the round failed: UnlearningError: recovery needs 4" in request.outcome.reason
    assert strategy.events == []


class FakeAccountant:
    """The part of Flower's ``PrivacyAccountant`` protocol the fixed-clipping DP wrapper
    calls (``dp_accounting``, behind Flower's RDP accountant, is not installed here)."""

    def __init__(self, population_size: int) -> None:
        self.config = PrivacyConfig(
            target_delta=1e-5,
            population_size=population_size,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
            max_epsilon=100.0,
        )
        self.composed = []

    def would_exceed(self, event, max_epsilon=None, count=1) -> bool:
        return False

    def compose(self, event, count=1) -> None:
        self.composed.append(event.sample_size)

    def get_privacy_spent(self, delta=None) -> PrivacySpent:
        n = len(self.composed)
        return PrivacySpent(epsilon=float(n), delta=1e-5, num_releases=n, accounting_method="fake")


def test_a_dp_accountant_refusing_the_smaller_sample_fails_the_request():
    """With an accountant the DP wrapper refuses a round that samples other than
    num_sampled_clients: the request round (3 of 4 nodes) fails, the request is failed with
    the accountant's reason, no event is recorded, and the fresh copy spends from the same
    accountant."""
    accountant = FakeAccountant(population_size=4)
    strategy = Unlearning(
        DifferentialPrivacyServerSideFixedClipping(
            FedAvg(**ALL),
            noise_multiplier=1.0,
            clipping_norm=1.0,
            num_sampled_clients=4,
            accountant=accountant,
        ),
        Negation(PLAN),
    )
    request = strategy.request_unlearning(1000, by="node-id", at_round=3)
    with pytest.raises(ValueError, match=r"does not match num_sampled_clients: 3 != 4"):
        start(strategy, grid_of(), rounds=4)
    assert request.status == "failed" and request.outcome.round == 3
    assert request.outcome.reason == (
        "the round failed: ValueError: The configured sample size does not match "
        "num_sampled_clients: 3 != 4."
    )
    assert strategy.events == []
    assert strategy.active_strategy is not strategy.strategy
    assert strategy.active_strategy.accountant is strategy.strategy.accountant is accountant
    assert accountant.composed == [4, 4]  # rounds 1 and 2, nothing from round 3


# ------------------------------------------------------------------ 4. early checks
def test_by_near_miss_of_a_builtin_kind_is_refused_at_once():
    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN))
    with pytest.raises(
        ValueError,
        match=r"by='node_id' is not a kind of target; did you mean "
        r"'node-id'\? Allowed: 'node-id', 'supernode-name' or a node-config",
    ):
        strategy.request_unlearning(1000, by="node_id")
    assert strategy.outcomes == []


def test_by_near_miss_of_a_reported_key_fails_before_round_1():
    grid = grid_of(identity=True)
    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN))
    strategy.request_unlearning(1, by="partition_id", at_round=3)
    with pytest.raises(
        ValueError,
        match=r"by='partition_id' is no node-config key of the "
        r"connected nodes \(they report \['partition-id'\]\); did you mean "
        r"'partition-id'\?",
    ):
        start(strategy, grid)
    assert not [t for t, _ in grid.sent if t == "train"]
    assert strategy.outcomes[0].status == "failed"


def test_unknown_node_id_fails_before_round_1():
    grid = grid_of()
    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN))
    strategy.request_unlearning(4242, by="node-id", at_round=3)
    with pytest.raises(
        UnlearningError,
        match=r"node-id=4242 \(requested by operator, for "
        r"round 3\) matches none of the 4 connected nodes; they have node-id in "
        r"\['1000', '1007', '1014', '1021'\]; the run stops before round 1",
    ):
        start(strategy, grid)
    assert grid.sent == []


# ------------------------------------------------------------------ 5. DP sample size
def test_dp_num_sampled_clients_after_exclusion_warns_once_with_the_numbers(caplog):
    strategy = Unlearning(
        DifferentialPrivacyServerSideFixedClipping(
            FedAvg(**ALL), noise_multiplier=0.0, clipping_norm=1.0, num_sampled_clients=4
        ),
        Negation(PLAN),
    )
    strategy.request_unlearning(1000, by="node-id", at_round=2)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        start(strategy, grid_of(), rounds=4)
    text = (
        "DifferentialPrivacyServerSideFixedClipping calibrates its noise for "
        "num_sampled_clients=4, but with 1 node(s) excluded by unlearning this round "
        "samples 3"
    )
    assert caplog.text.count(text) == 1
    assert "recovery_strategy with num_sampled_clients=3" in caplog.text


# ------------------------------------------------------------------ 6. should_stop
def test_should_stop_ends_the_run_after_the_round_it_says():
    calls = []

    def should_stop(server_round: int, result: Result) -> bool:
        calls.append((server_round, sorted(result.train_metrics_clientapp)))
        return server_round == 2

    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN))
    strategy.request_unlearning(1000, by="node-id", at_round=2)
    result, seen = start(strategy, grid_of(), rounds=5, should_stop=should_stop)
    assert calls == [(1, [1]), (2, [1, 2])]
    assert sorted(seen) == [0, 1, 2] and sorted(result.train_metrics_clientapp) == [1, 2]
    assert result.unlearning[0].status == "applied"
    with pytest.raises(TypeError, match="should_stop must be a callable"):
        strategy.start(grid_of(), initial(), num_rounds=1, should_stop=True)


class PullRecordingGrid(FakeGrid):
    """Answers ``pull_messages`` with its replies in reverse, recording its arguments."""

    def pull_messages(self, *args, **kwargs):
        self.pulled.append((args, kwargs))
        return self.replies[::-1]


def test_grid_view_pull_messages_passes_either_flower_signature_through():
    """Flower 1.42: ``pull_messages(message_ids)``; 1.43: ``pull_messages(
    reply_to_message_ids=None, *, message_ids=None)``. The view passes both on as given
    and returns the replies in node order."""
    grid = PullRecordingGrid(grid_of().nodes)
    ids = sorted(grid.nodes)
    asks = [Message(RecordDict(), dst_node_id=n, message_type="evaluate") for n in ids]
    grid.replies, grid.pulled = list(grid.send_and_receive(asks)), []
    identities = {n: node.context.node_config for n, node in grid.nodes.items()}
    view = ExcludingGrid(grid, lambda _: False, identities=identities)
    for args, kwargs in [((["m1", "m2"],), {}), ((["r1"],), {"message_ids": ["m3"]})]:
        replies = view.pull_messages(*args, **kwargs)
        assert [m.metadata.src_node_id for m in replies] == ids
    assert grid.pulled == [((["m1", "m2"],), {}), ((["r1"],), {"message_ids": ["m3"]})]


# ------------------------------------------------------------------ 7. names
def test_the_wrapper_names_itself_after_the_strategy(caplog):
    plain = Unlearning(FedAvg(**ALL))
    with caplog.at_level(logging.INFO, logger="flwr"):
        plain.request_unlearning(1000, by="node-id")
    assert "Unlearning(FedAvg): unlearning request queued: node-id=1000" in caplog.text
    assert "FT" not in caplog.text
    assert repr(plain) == (
        "Unlearning(strategy=FedAvg, unlearner=None (no unlearning step, "
        "recovery only), recovery_strategy=None, keep_server_state=False; "
        "requests: 1 pending, 0 applied; excluded nodes: [])"
    )
    dp = Unlearning(
        DifferentialPrivacyServerSideFixedClipping(
            FedAdam(), noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=3
        ),
        Negation(PLAN),
    )
    assert dp.tag == "Unlearning(DifferentialPrivacyServerSideFixedClipping(FedAdam), NoT)"
    assert "unlearner=NoT (changes ['conv'])" in repr(dp)


# ------------------------------------------------------------------ #26.1 forgotten once
@pytest.mark.parametrize("strict", [True, False])
def test_a_client_already_forgotten_is_not_negated_again(strict, caplog):
    grid = grid_of()
    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN))
    strategy.request_unlearning("site-1", by="supernode-name", at_round=2)
    again = strategy.request_unlearning(1007, by="node-id", at_round=4, strict=strict)
    sent = {}
    with caplog.at_level(logging.WARNING, logger="flwr"):
        if strict:
            with pytest.raises(
                UnlearningError,
                match=r"node-id=1007 is already forgotten "
                r"\(node\(s\) \[1007\] were unlearnt by an earlier request\)",
            ):
                start(strategy, grid, rounds=5)
        else:
            _, sent = start(strategy, grid, rounds=5)
    assert len(strategy.events) == 1
    assert again.status == ("failed" if strict else "ignored")
    assert "already forgotten" in again.outcome.reason
    if not strict:  # round 4 trained on round 3's model, not a negated one
        step = np.mean([0.1 * (p + 1) for p in (0, 2, 3)])
        np.testing.assert_allclose(sent[4]["conv.weight"], sent[3]["conv.weight"] + step, rtol=1e-5)
        assert "ignored unlearning request from operator" in caplog.text


def test_two_requests_for_one_client_at_one_boundary_negate_once():
    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN))
    first = strategy.request_unlearning("site-1", by="supernode-name", at_round=2)
    second = strategy.request_unlearning(1007, by="node-id", at_round=2)
    _, seen = start(strategy, grid_of(), rounds=2)
    step = np.mean([0.1 * (p + 1) for p in (0, 2, 3)])
    np.testing.assert_allclose(seen[2]["conv.weight"], -seen[1]["conv.weight"] + step, rtol=1e-5)
    assert [e.request for e in strategy.events] == [first]
    assert (first.status, second.status) == ("applied", "ignored")
    assert "another request at this boundary names the same client" in second.outcome.reason


def test_a_target_that_may_still_connect_is_checked_at_its_round(caplog):
    """4 of the 6 nodes the federation has (num-partitions) are connected: partition 5
    may still connect, so it is not refused before round 1; at its round it is."""
    grid = grid_of(identity=True)
    for node in grid.nodes.values():
        node.context.node_config["num-partitions"] = 6
    strategy = Unlearning(FedAvg(**ALL), Negation(PLAN))
    strategy.request_unlearning(5, by="partition-id", at_round=2)
    with caplog.at_level(logging.INFO, logger="flwr"):
        with pytest.raises(UnlearningError, match="partition-id=5 matches no connected node"):
            start(strategy, grid, rounds=3)
    assert (
        "(4 of 6 nodes connected so far; it is checked again when the request applies)"
        in caplog.text
    )
    assert [t for t, _ in grid.sent if t == "train"]  # round 1 trained
    assert strategy.outcomes[0].status == "failed" and strategy.outcomes[0].round == 2
