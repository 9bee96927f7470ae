"""The library's stopping rule (strategies.stopping): every branch on constructed curves,
per-request bookkeeping, and ``RecoveryStop`` ending a real wrapper's run over the
in-process grid."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from strategies import Unlearning
from strategies.stopping import (
    PLATEAU,
    TOLERANCE,
    RecoveryStop,
    RequestStops,
    StopSettings,
    first_stop,
    plateaued,
    retained_mean,
    stop_branch,
)
from tests.fakegrid import FakeGrid, FakeNode

PLATEAU_3 = StopSettings(tolerance=0.02, window=3, min_delta=0.005, min_rounds=5)
#: climbs to about 0.71 and flattens, far below its reference 0.95
FLAT = [0.30, 0.60, 0.70, 0.71, 0.705, 0.708, 0.709, 0.70]


def test_back_within_tolerance_fires_at_the_first_round_at_or_above_reference_minus_tolerance():
    curve = [0.20, 0.80, 0.925, 0.94]
    assert first_stop(curve, 0.95, StopSettings(tolerance=0.02)) == (4, TOLERANCE)  # 0.93 needed
    assert first_stop(curve, 0.95, StopSettings(tolerance=0.025)) == (3, TOLERANCE)  # 0.925
    assert first_stop(curve, 0.95, StopSettings(tolerance=0.0)) is None


def test_a_plateau_fires_once_the_last_window_is_not_min_delta_above_the_best_before():
    # n=5: last 3 best 0.71 vs 0.60 before; n=6: 0.71 vs 0.70 (+0.01 > 0.005);
    # n=7: last 3 (0.705, 0.708, 0.709) best 0.709 vs 0.71 before: a plateau
    assert first_stop(FLAT, 0.95, PLATEAU_3) == (7, PLATEAU)
    assert stop_branch(FLAT[:6], 0.95, PLATEAU_3) is None
    # a larger min_delta calls round 6's +0.01 a plateau too
    wide = StopSettings(tolerance=0.02, window=3, min_delta=0.01, min_rounds=5)
    assert first_stop(FLAT, 0.95, wide) == (6, PLATEAU)


def test_a_plateau_before_min_rounds_does_not_fire():
    flat = [0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    early = StopSettings(window=2, min_delta=0.0, min_rounds=0)
    assert first_stop(flat, 0.95, early) == (3, PLATEAU)  # needs window + 1 rounds
    late = StopSettings(window=2, min_delta=0.0, min_rounds=5)
    assert first_stop(flat, 0.95, late) == (5, PLATEAU)
    assert first_stop(flat[:4], 0.95, late) is None
    assert not plateaued(flat[:4], window=2, min_delta=0.0, min_rounds=5)


def test_window_0_turns_the_plateau_test_off():
    off = StopSettings(tolerance=0.02, window=0, min_delta=0.5, min_rounds=0)
    assert first_stop(FLAT, 0.95, off) is None
    assert first_stop([0.3, 0.94], 0.95, off) == (2, TOLERANCE)  # the old rule still fires


def test_without_a_reference_only_the_plateau_can_fire():
    assert first_stop([0.99, 0.99], None, StopSettings(tolerance=1.0)) is None
    assert first_stop(FLAT, None, PLATEAU_3) == (7, PLATEAU)


def test_tolerance_wins_when_both_fire_and_unmeasured_rounds_are_skipped():
    flat = [0.94, 0.94, 0.94, 0.94]
    both = StopSettings(tolerance=0.02, window=1, min_delta=0.0, min_rounds=0)
    assert stop_branch(flat, 0.95, both) == TOLERANCE
    gaps = [0.5, None, 0.6, None, None]  # the last window (2 rounds) saw nothing
    assert not plateaued(gaps, window=2, min_delta=0.0, min_rounds=0)
    assert plateaued([*gaps, 0.6], window=3, min_delta=0.0, min_rounds=0)
    assert stop_branch([None], 0.5, both) is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tolerance": 1.5}, "tolerance must be in"),
        ({"window": -1}, "window must be an integer >= 0"),
        ({"window": 1.5}, "window must be an integer >= 0"),
        ({"min_delta": -0.1}, "min_delta must be in"),
        ({"min_rounds": -2}, "min_rounds must be an integer >= 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StopSettings(**kwargs)


def _replay(values: dict[int, float], requests: dict[int, float], settings) -> RequestStops:
    stops = RequestStops(settings)
    for rnd in sorted(values):
        if rnd in requests:
            stops.start(rnd, requests[rnd])
        stops.observe(rnd, values[rnd], recovery=rnd >= min(requests))
    return stops


def test_a_second_request_during_recovery_inherits_the_reference():
    # request 1 at round 6 (before: 0.95) never recovers before request 2 at round 9, whose
    # own "before" value 0.90 is of a model still recovering: it keeps 0.95
    values = {5: 0.95, 6: 0.10, 7: 0.80, 8: 0.90, 9: 0.89, 10: 0.94}
    stops = _replay(values, {6: 0.95, 9: 0.90}, StopSettings(tolerance=0.02))
    first, second = stops.entries
    assert (first["chosen_round"], first["curve"]) == (None, [0.10, 0.80, 0.90])
    assert second["reference"] == 0.95 and second["reference_of_request"] == 0
    assert (second["chosen_round"], second["branch"]) == (10, TOLERANCE)  # not 9 (0.89)
    assert stops.settled
    assert [r for r in range(5, 11) if stops.counts(r)] == [6, 7, 8, 9, 10]


def test_a_request_stopped_on_a_plateau_gives_the_next_its_own_reference():
    values = dict(enumerate([0.95, *FLAT, 0.2, 0.71], start=5))  # request 2 at round 14
    stops = _replay(values, {6: 0.95, 14: 0.70}, PLATEAU_3)
    first, second = stops.entries
    assert (first["chosen_round"], first["branch"]) == (12, PLATEAU)
    assert second["reference"] == 0.70 and second["reference_of_request"] is None
    assert (second["chosen_round"], second["branch"]) == (15, TOLERANCE)


def test_settled_needs_every_request_of_the_latest_round():
    stops = RequestStops(StopSettings(tolerance=0.02))
    assert not stops.settled  # no request yet
    stops.start(3, 0.9)
    stops.start(3, None)  # a second request at the same boundary: it inherits 0.9
    assert stops.observe(3, 0.95) == [0, 1] and stops.settled


def test_retained_mean_weighs_by_examples_and_leaves_the_targets_out():
    metrics = {
        1: {"accuracy": 1.0, "num-examples": 10},
        2: {"accuracy": 0.8, "num-examples": 30},
        3: {"accuracy": 0.6, "num-examples": 10},
    }
    assert retained_mean(metrics, "accuracy", "num-examples", {1}) == pytest.approx(0.75)
    assert retained_mean(metrics, "loss", "num-examples", set()) is None


# ------------------------------------------------ RecoveryStop with the real wrapper
#: the retained clients' accuracy after each round; the target (partition 0) reports 1.0
CURVE = {1: 0.9, 2: 0.9, 3: 0.9, 4: 0.2, 5: 0.5, 6: 0.89, 7: 0.9, 8: 0.3, 9: 0.6, 10: 0.9}


def _app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context):
        arrays = ArrayRecord({k: Array(v.numpy() + 0.1) for k, v in msg.content["arrays"].items()})
        metrics = MetricRecord({"num-examples": 10})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context):
        rnd = int(msg.content["config"]["server-round"])
        target = int(context.node_config["partition-id"]) == 0
        value = 1.0 if target else CURVE.get(rnd, 0.9)
        metrics = MetricRecord({"accuracy": value, "num-examples": 10})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _run(requests: list[tuple[int, int]], rounds: int = 12):
    app = _app()
    grid = FakeGrid({500 + i: FakeNode(app, {"partition-id": i}) for i in range(4)})
    strategy = Unlearning(FedAvg(min_train_nodes=2, min_evaluate_nodes=2, min_available_nodes=2))
    for node, at in requests:
        strategy.request_unlearning(node, by="node-id", at_round=at)
    stop = RecoveryStop(strategy, "accuracy", tolerance=0.02)
    arrays = ArrayRecord({"w": Array(np.zeros(3, dtype=np.float32))})
    result = strategy.start(grid, arrays, num_rounds=rounds, should_stop=stop)
    return result, stop


def test_recovery_stop_ends_the_run_once_the_request_recovered():
    result, stop = _run([(500, 4)])
    # reference: the retained nodes' 0.9 at round 3 (the aggregate with the target, 0.925,
    # would need 0.905); round 6's 0.89 is within 2 points: the run ends there
    assert sorted(result.evaluate_metrics_clientapp) == [1, 2, 3, 4, 5, 6]
    (entry,) = stop.stops.entries
    assert entry["reference"] == pytest.approx(0.9)
    assert (entry["request_round"], entry["chosen_round"], entry["branch"]) == (4, 6, TOLERANCE)


def test_recovery_stop_waits_for_a_pending_request():
    # request 1 recovers at round 6, but request 2 is due at round 8: the run goes on and
    # ends when request 2 recovered (round 10), not at the cap (12)
    result, stop = _run([(500, 4), (501, 8)])
    assert max(result.evaluate_metrics_clientapp) == 10
    assert [(e["request_round"], e["chosen_round"]) for e in stop.stops.entries] == [
        (4, 6),
        (8, 10),
    ]
