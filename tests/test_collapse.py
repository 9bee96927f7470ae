"""A recovery stuck at chance (not_flower.app.collapse): the test behind the ServerApp's
warning, on constructed curves for each branch, and the warning in a run that collapses."""

from __future__ import annotations

import logging

import pytest

from not_flower.app.collapse import (
    CHANCE_ROUNDS,
    collapse_warning,
    first_at_chance,
    stuck_at_chance,
)
from not_flower.common.config import parse_run_config


def test_three_known_rounds_at_chance_are_stuck():
    assert CHANCE_ROUNDS == 3
    assert stuck_at_chance([0.10, 0.12, 0.15], 10)  # 1/10 + 0.05 counts as chance
    assert stuck_at_chance([0.80, 0.10, 0.11, 0.09], 10)  # the last three decide
    assert stuck_at_chance([0.10, None, 0.12, None, 0.09], 10)  # rounds without evaluation skipped


def test_fewer_known_rounds_or_one_above_chance_is_not_stuck():
    assert not stuck_at_chance([], 10)
    assert not stuck_at_chance([0.10, 0.10], 10)
    assert not stuck_at_chance([0.10, None, 0.10, None], 10)
    assert not stuck_at_chance([0.10, 0.16, 0.10], 10)  # one round above 15 %
    assert not stuck_at_chance([0.36, 0.95, 1.0], 10)  # a recovering run
    assert stuck_at_chance([0.45, 0.5, 0.55], 2)  # two classes: chance 50 %, up to 55 %
    assert not stuck_at_chance([0.45, 0.5, 0.56], 2)
    assert stuck_at_chance([0.3, 0.3], 10, rounds=2, margin=0.2)


def test_the_warning_fires_at_the_first_stuck_round_only():
    curve = [0.5, 0.1, 0.1, 0.1, 0.1, None, 0.09]
    fired = [n for n in range(1, len(curve) + 1) if first_at_chance(curve[:n], 10)]
    assert fired == [4]  # the third round at chance; never again for this request
    assert not first_at_chance([], 10)
    assert not first_at_chance([0.1, 0.1, 0.3, 0.1], 10)
    # stuck, recovered, stuck again: it warned already
    assert not first_at_chance([0.1, 0.1, 0.1, 0.5, 0.1, 0.1, 0.1], 10)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_classes >= 2 and rounds >= 1, got 1, 3"):
        stuck_at_chance([0.5], 1)
    with pytest.raises(ValueError, match="got 10, 0"):
        stuck_at_chance([0.5], 10, rounds=0)


def test_the_warning_names_what_was_seen_and_what_to_set():
    text = collapse_warning(2, 14, 0.0942, 10)
    assert "request 2" in text and "round 14: 9.42 %" in text and "chance 10.00 %" in text
    assert "recovery.lr-warmup-rounds = 3" in text and "recovery.lr" in text


def _run(config: dict, out):
    # pylint: disable=import-outside-toplevel
    from not_flower.app.server_app import run_experiment
    from tests.golden_runs import grid_for

    config = {**config, "out-dir": str(out)}
    return run_experiment(grid_for(config), parse_run_config(config), out)


@pytest.mark.e2e  # whole runs of the app, in process
def test_a_run_whose_recovery_collapses_warns_once_and_a_healthy_one_does_not(tmp_path, caplog):
    base = {"num-train-rounds": 3, "recovery.rounds": 4, "unlearn.clients": "1"}
    base["recovery.run-to-cap"] = True
    caplog.set_level(logging.INFO)  # flwr's logger propagates to the root caplog reads
    # a client learning rate of 5 in every recovery round: the model falls to chance
    broken = _run({**base, "recovery.lr": 5.0}, tmp_path / "broken")
    warned = [r for r in caplog.records if "stayed at chance" in r.getMessage()]
    caplog.clear()
    healthy = _run(base, tmp_path / "healthy")
    quiet = [r for r in caplog.records if "stayed at chance" in r.getMessage()]
    vals = [r["val_acc"] for r in broken["rounds"] if r["phase"] == "recovery"]
    assert all(v <= 0.15 for v in vals[:3]), vals
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "recovery of request 1" in warned[0].getMessage()
    assert "round 6:" in warned[0].getMessage()  # request at round 4: its third round
    assert quiet == []
    assert max(r["val_acc"] for r in healthy["rounds"] if r["phase"] == "recovery") > 0.9
