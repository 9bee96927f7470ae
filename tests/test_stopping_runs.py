"""Stopping that stops, end to end: a simulated run ends where the rule fires and records
the rounds it saved; with ``recovery.run-to-cap`` the same run goes on to the cap and
reports the same stop; a run interrupted before its stop resumes and stops at the same
round (and is then finished)."""

from __future__ import annotations

import json

import pytest

from not_flower.app.run_state import RunFinishedError
from not_flower.common import faults
from not_flower.common.config import parse_run_config

pytestmark = pytest.mark.e2e  # whole runs of the app (simulation engine, or in process)

#: The plateau test fires at the second recovery round whatever the values (window 1,
#: any improvement below 100 points is a plateau, from 2 rounds on); tolerance 0: the
#: other branch needs the validation accuracy back at its level before the request.
PLATEAU_AT_2 = {
    "stop.tolerance": 0.0,
    "stop.plateau-window": 1,
    "stop.plateau-min-delta": 1.0,
    "stop.min-rounds": 2,
}
SIMULATED = {
    "num-train-rounds": 3,
    "recovery.rounds": 6,
    "unlearn.clients": "1",
    "lr": 0.02,
    **PLATEAU_AT_2,
}


def test_a_simulated_run_ends_where_the_rule_fires_and_to_the_cap_reports_the_same(tmp_path):
    from not_flower.experiments.simulation import simulate  # pylint: disable=import-outside-toplevel

    early = simulate({**SIMULATED, "out-dir": str(tmp_path / "early")}, num_supernodes=4)
    capped = simulate(
        {**SIMULATED, "out-dir": str(tmp_path / "cap"), "recovery.run-to-cap": True},
        num_supernodes=4,
    )
    stop = early["stopping"]
    # request at round 4; the plateau fires at its 2nd recovery round, 5: the run ends
    assert [r["round"] for r in early["rounds"]] == list(range(6))
    assert (stop["chosen_round"], stop["chosen_recovery_rounds"], stop["branch"]) == (
        5,
        2,
        "plateau",
    )
    assert (stop["cap"], stop["rounds_saved"], stop["ended_run"], stop["run_to_cap"]) == (
        6,
        4,
        True,
        False,
    )
    assert early["costs"]["unlearning"]["rounds"] == 2
    assert early["costs"]["unlearning_fixed_length"]["rounds"] == 2  # nothing run past it
    # the final model is the stopped one
    assert early["models"]["recovered"]["test_acc"] == early["models"]["stopped"]["test_acc"]
    state = json.loads((tmp_path / "early" / "state.json").read_text())
    assert state["round"] == 5 and state["state"]["requests"][0]["status"] == "done"

    # to the cap: all 6 recovery rounds, the same stop (round, branch, model) reported
    assert [r["round"] for r in capped["rounds"]] == list(range(10))
    cap_stop = capped["stopping"]
    assert (cap_stop["chosen_round"], cap_stop["branch"], cap_stop["rounds_saved"]) == (
        5,
        "plateau",
        4,
    )
    assert (cap_stop["ended_run"], cap_stop["run_to_cap"]) == (False, True)
    assert capped["models"]["stopped"] == early["models"]["stopped"]
    assert capped["costs"]["unlearning"]["rounds"] == 2
    assert capped["costs"]["unlearning_fixed_length"]["rounds"] == 6


IN_PROCESS = {
    "seed": 0,
    "num-train-rounds": 2,
    "recovery.rounds": 4,
    "unlearn.clients": "1",
    "lr": 0.02,
    **PLATEAU_AT_2,
}


def _run(config: dict, out) -> dict:
    """The ServerApp's run over 3 in-process nodes."""
    # pylint: disable=import-outside-toplevel
    from not_flower.app.server_app import run_experiment
    from tests.golden_runs import grid_for

    config = {**config, "out-dir": str(out)}
    return run_experiment(grid_for(config), parse_run_config(config), out)


def test_a_run_interrupted_before_its_stop_resumes_and_stops_at_the_same_round(tmp_path):
    faults.arm(None)
    reference = _run(IN_PROCESS, tmp_path / "reference")
    assert reference["stopping"]["chosen_round"] == 4 and reference["stopping"]["ended_run"]
    writes = [p.rsplit("/", 1)[-1] for p in faults.writes()]
    # killed right after round 3's state.json (the first recovery round) is on disk
    at = [i for i, name in enumerate(writes, start=1) if name == "state.json"][3 - 1]
    out = tmp_path / "killed"
    faults.arm(at, "after")
    try:
        with pytest.raises(faults.SimulatedKill):
            _run(IN_PROCESS, out)
    finally:
        faults.arm(None)
    assert json.loads((out / "state.json").read_text())["round"] == 3
    resumed = _run({**IN_PROCESS, "resume": True}, out)
    assert resumed["resumed_from_round"] == [3]
    assert [r["round"] for r in resumed["rounds"]] == list(range(5))  # ends at 4 again
    for key in ("chosen_round", "branch", "rounds_saved", "ended_run", "per_request"):
        assert resumed["stopping"][key] == reference["stopping"][key], key
    with pytest.raises(RunFinishedError, match="the stopping rule ended it after round 4"):
        _run({**IN_PROCESS, "resume": True}, out)
