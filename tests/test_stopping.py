"""The stopping rule of recovery and its summary, per request of a sequence."""

from __future__ import annotations

import pytest

from not_flower.app.stopping import StoppingRule, summary_lines

# retained clients' validation accuracy per round: requests at rounds 6 and 9
# (num-train-rounds 5, recovery.rounds 3, unlearn.clients '0;3')
VAL = {
    1: 0.5,
    2: 0.8,
    3: 0.9,
    4: 0.94,
    5: 0.95,
    6: 0.10,
    7: 0.80,
    8: 0.90,  # request 1: never back within 2 points of 0.95
    9: 0.89,
    10: 0.94,
    11: 0.96,
}  # request 2: 0.89 is within 2 points of round 8's 0.90


def _run(val, requests, tolerance=0.02):
    rule = StoppingRule(tolerance)
    stops = {}
    for rnd in sorted(val):
        if rnd in requests:
            rule.start(rnd, val[rnd - 1])
        phase = "recovery" if rnd >= min(requests) else "train"
        for k in rule.observe(rnd, phase, val[rnd]):
            stops[k] = rnd
    return rule, stops


def test_each_request_is_judged_on_its_own_rounds():
    rule, stops = _run(VAL, {6, 9})
    first, second = rule.summary(cap=3)
    # request 1 never got back in its rounds 6-8: no stop, and round 9 is not credited to it
    assert first == {
        "request_round": 6,
        "reference_val_acc": 0.95,
        "reference_of_request": None,
        "chosen_round": None,
        "branch": None,
        "chosen_recovery_rounds": None,
        "observed_rounds": 3,
        "cap": 3,
        "rounds_saved": None,
    }
    # request 2 inherits 0.95 (request 1 had not recovered), so round 9's 0.89 (within 2
    # points of the still-recovering round 8's 0.90) is NOT a stop; round 10's 0.94 is
    assert second == {
        "request_round": 9,
        "reference_val_acc": 0.95,
        "reference_of_request": 0,
        "chosen_round": 10,
        "branch": "tolerance",
        "chosen_recovery_rounds": 2,
        "observed_rounds": 3,
        "cap": 3,
        "rounds_saved": 1,
    }
    assert stops == {1: 10}


def test_a_recovered_request_gives_the_next_its_own_reference():
    val = {**VAL, 7: 0.94, 8: 0.97, 9: 0.40, 10: 0.95, 11: 0.96}
    rule, stops = _run(val, {6, 9})
    first, second = rule.summary(cap=3)
    assert (first["chosen_round"], first["chosen_recovery_rounds"]) == (7, 2)
    assert second["reference_val_acc"] == 0.97 and second["reference_of_request"] is None
    assert (second["chosen_round"], second["chosen_recovery_rounds"]) == (10, 2)
    assert stops == {0: 7, 1: 10}


def test_costs_count_each_request_up_to_its_own_stop():
    rule, _ = _run(VAL, {6, 9})
    rows = [{"round": r} for r in sorted(VAL)]
    # request 1 did not stop: all of 6-8; request 2 stopped at 10: 9-10
    assert [r["round"] for r in rule.rows_until_stop(rows)] == [6, 7, 8, 9, 10]
    single, _ = _run({r: v for r, v in VAL.items() if r <= 8} | {7: 0.94}, {6})
    assert [r["round"] for r in single.rows_until_stop(rows[:8])] == [6, 7]


def test_summary_lines_report_every_request():
    rule, _ = _run(VAL, {6, 9})
    requests = [
        {"request": {"rule": {"by": "partition-id", "values": ["0"]}}, "models": {}},
        {
            "request": {"rule": {"by": "partition-id", "values": ["3"]}},
            "models": {"stopped": {"test_acc": 0.9215}},
        },
    ]
    assert summary_lines(rule.summary(cap=3), requests) == [
        "request 1 (partition-id=0, round 6): stopping rule: retained val acc neither back "
        "within tolerance nor on a plateau in its 3 recovery rounds",
        "request 2 (partition-id=3, round 9): stopping rule chose round 10 (2 recovery rounds "
        "of 3, back within tolerance), test acc 92.15 % (target: 95.00 %, the level before "
        "request 1, which had not recovered)",
    ]
    single, _ = _run({r: v for r, v in VAL.items() if r <= 8} | {8: 0.94}, {6})
    assert summary_lines(single.summary(cap=15), requests[:1]) == [
        "stopping rule chose round 8 (3 recovery rounds of 15, back within tolerance)"
    ]
    none = StoppingRule(0.02)
    none.start(6, None)
    none.observe(6, "recovery", 0.9)
    assert "no reference" in summary_lines(none.summary(cap=3), requests[:1])[0]


def test_entries_survive_a_resume():
    rule, _ = _run({r: v for r, v in VAL.items() if r <= 7}, {6})
    resumed = StoppingRule(0.02, rule.entries)  # as read back from state.json
    resumed.observe(8, "recovery", 0.90)
    resumed.start(9, 0.90)
    for rnd in (9, 10):
        resumed.observe(rnd, "recovery", VAL[rnd])
    assert [s["chosen_round"] for s in resumed.summary(cap=3)] == [None, 10]
    assert rule.entries is resumed.entries


@pytest.mark.parametrize("phase", ["train", "retrain"])
def test_the_rule_fires_in_recovery_rounds_only(phase):
    rule = StoppingRule(0.02)
    rule.start(1, 0.5)
    assert rule.observe(1, phase, 0.9) == [] and rule.summary(None)[0]["chosen_round"] is None


@pytest.mark.e2e  # runs the whole app in process (tens of seconds)
def test_a_sequence_through_the_servers_run(tmp_path):
    """not-flower's ServerApp and ClientApp (in process): the results, the records and the
    costs carry one stopping decision per request, each within its own rounds."""
    import json

    from not_flower.app import client_app as ca
    from not_flower.app.server_app import run_experiment
    from not_flower.common.config import parse_run_config
    from tests.fakegrid import FakeGrid, FakeNode

    config = {
        "num-train-rounds": 2,
        "recovery.rounds": 2,
        "unlearn.clients": "0;1",
        "local-epochs": 1,
        "out-dir": str(tmp_path),
        "stop.tolerance": 1.0,
    }
    nodes = {}
    for pid in range(3):
        node = FakeNode(ca.app, {"partition-id": pid, "num-partitions": 3})
        node.context.run_config = dict(config)
        nodes[900 + pid] = node
    results = run_experiment(FakeGrid(nodes), parse_run_config(config), tmp_path)
    per_request = results["stopping"]["per_request"]
    # tolerance 1.0: each request stops at its own first recovery round (3 and 5), never
    # the first request at the second's round; after the last one's stop the run ends
    # (round 5 of 6: recovery.run-to-cap is false)
    assert [
        (s["request_round"], s["chosen_round"], s["chosen_recovery_rounds"], s["observed_rounds"])
        for s in per_request
    ] == [(3, 3, 1, 2), (5, 5, 1, 1)]
    assert [row["round"] for row in results["rounds"]][-1] == 5
    stopping = results["stopping"]
    assert (stopping["chosen_round"], stopping["branch"]) == (5, "tolerance")  # the last's
    assert (stopping["ended_run"], stopping["rounds_saved"], stopping["cap"]) == (True, 1, 2)
    assert results["costs"]["unlearning"]["rounds"] == 2  # rounds 3 and 5
    assert results["costs"]["unlearning_fixed_length"]["rounds"] == 3  # 3, 4 and 5: run
    first, second = results["requests"]
    assert (
        "stopped" in first["models"] and results["models"]["stopped"] == second["models"]["stopped"]
    )
    records = [json.loads((tmp_path / f"unlearning-record-{k}.json").read_text()) for k in (1, 2)]
    assert [r["stopping"]["chosen_round"] for r in records] == [3, 5]
