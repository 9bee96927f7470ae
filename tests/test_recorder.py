"""The run recorder: typed round statistics convert to the results.json rows and back."""

from __future__ import annotations

import json

from not_flower.app.recorder import RoundStats, RunRecorder, round_stats, sum_costs
from not_flower.app.run_state import RunState
from not_flower.app.stopping import StoppingRule
from not_flower.common.config import parse_run_config
from strategies.round_log import RoundLog

INFO = RoundLog(
    **{
        "phase": "recovery",
        "train_replied": [7, 5],
        "evaluate_replied": [5, 7, 9],
        "unlearning_replied": [],
        "train_metrics": {7: {"num-examples": 30, "num-forgotten": 2}, 5: {"num-examples": 20}},
        "evaluate_metrics": {
            5: {"val-acc": 0.5, "num-examples": 10},
            7: {"val-acc": 1.0, "num-examples": 30},
        },
        "bytes_down": 100,
        "bytes_up": 90,
        "client_seconds": 1.5,
        "server_seconds": 0.25,
    }
)
PARTITION = {5: 0, 7: 2}.get


def test_a_round_becomes_the_row_results_json_has_always_had():
    row = round_stats(
        4, "recovery", INFO, PARTITION, {"test_acc": 0.75, "test_loss": 0.5, "forget_acc": 0.25}
    )
    assert row.participants == [0, 2] and row.evaluated == [0, 2]
    assert row.val_acc == (0.5 * 10 + 1.0 * 30) / 40
    as_dict = row.to_dict()
    assert list(as_dict) == [
        "round",
        "phase",
        "participants",
        "participant_node_ids",
        "participants_detail",
        "unlearning_participants",
        "extra_rounds",
        "evaluated",
        "test_acc",
        "test_loss",
        "forget_acc",
        "trained_examples",
        "forgotten_examples",
        "val_acc",
        "bytes_down",
        "bytes_up",
        "client_seconds",
        "server_seconds",
    ]  # asr, the class-wise split and train_loss only when measured
    assert as_dict["trained_examples"] == {"2": 30, "0": 20}
    assert as_dict["forgotten_examples"] == {"2": 2, "0": 0}
    back = RoundStats.from_dict(json.loads(json.dumps(as_dict)))
    assert back.to_dict() == as_dict and list(back.to_dict()) == list(as_dict)


def test_costs_add_up_the_rounds_of_the_phases():
    rows = [
        round_stats(r, phase, INFO, PARTITION, {"test_acc": 0.0, "test_loss": 0.0})
        for r, phase in ((1, "train"), (2, "train"), (3, "recovery"))
    ]
    assert sum_costs(rows, ("train",)) == {
        "rounds": 2,
        "extra_rounds": 0,
        "bytes_down": 200,
        "bytes_up": 180,
        "client_seconds": 3.0,
        "server_seconds": 0.5,
    }
    assert sum_costs(rows, ("train", "recovery"), up_to=1)["rounds"] == 1


def test_the_results_so_far_survive_a_resume():
    cfg = parse_run_config({"num-train-rounds": 1, "recovery.rounds": 1})
    recorder = RunRecorder(cfg, "/runs/x", None)
    recorder.rounds.append(
        round_stats(1, "train", INFO, PARTITION, {"test_acc": 0.5, "test_loss": 1.0})
    )
    recorder.models["original"] = {"test_acc": 0.5}
    saved = json.loads(json.dumps(recorder.to_dict()))
    assert list(saved) == [
        "method",
        "config",
        "out_dir",
        "negation",
        "rounds",
        "requests",
        "models",
        "checkpoints",
    ]
    resumed = RunRecorder.from_dict(saved)
    resumed.mark_resumed(1)
    assert resumed.to_dict() == {**saved, "resumed_from_round": [1]}


def test_the_stopping_rule_counts_each_request_up_to_its_stop():
    rule = StoppingRule(0.1)
    rule.start(3, 0.8)
    rule.observe(3, "recovery", 0.5)
    rule.observe(4, "recovery", 0.75)  # stops at 4
    assert [r for r in range(1, 7) if rule.counts(r)] == [3, 4]


def test_the_run_state_round_trips_with_sorted_forget_ids():
    state = RunState(num_partitions=3, reference_val_acc=0.5, forget_ids={2, 0})
    data = state.to_dict()
    assert data == {
        "num_partitions": 3,
        "reference_val_acc": 0.5,
        "forget_ids": [0, 2],
        "stopping": [],
        "requests": [],
        "durable_round": 0,
    }
    assert RunState.from_dict(data) == state
