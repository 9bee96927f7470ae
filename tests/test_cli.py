"""not_flower/launch/cli.py: run-config keys checked before `flwr run`; a failed run is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from not_flower.launch.cli import (
    RunConfigError,
    app_config_keys,
    check_run_config,
    failure_message,
    main,
    override_keys,
    run_config_values,
    run_outcome,
)

ROOT = Path(__file__).resolve().parents[1]
KEYS = app_config_keys(ROOT / "pyproject.toml")


def test_app_keys_are_pyprojects():
    assert {"num-train-rounds", "recovery.rounds", "unlearn.clients", "out-dir"} <= set(KEYS)
    assert len(KEYS) == len(set(KEYS)) > 40


def test_override_keys_split_as_flwr_does(tmp_path):
    text = "out-dir='/a b/c=d' unlearn.clients='0;3' lr=0.1 negate.bias=false model=\"cnn\""
    assert override_keys([text, "seed=2"]) == [
        "out-dir",
        "unlearn.clients",
        "lr",
        "negate.bias",
        "model",
        "seed",
    ]
    toml = tmp_path / "over.toml"
    toml.write_text('lr = 0.1\n"num-train-rounds" = 3\n[a]\nb = 1\n')
    assert override_keys([str(toml)]) == ["lr", "num-train-rounds", "a.b"]
    with pytest.raises(RunConfigError, match=r"'num-train-rounds 3' is not key=value"):
        override_keys(["lr=0.1 num-train-rounds 3"])


def test_known_keys_pass():
    check_run_config(["out-dir='/x' num-train-rounds=2 recovery.rounds=1 model='resnet18'"], KEYS)
    check_run_config([], KEYS)


@pytest.mark.parametrize(
    "override, message",
    [
        ("num-rounds=3", r"unknown run-config key 'num-rounds'; nearest: num-train-rounds"),
        (
            "unlearn-client='3'",
            r"unknown run-config key 'unlearn-client'; nearest: unlearn.clients",
        ),
        ("lr=0.1 recovery_rounds=2", r"'recovery_rounds'; nearest: recovery.rounds"),
        ("rounds=2", r"'rounds'; nearest: .*num-train-rounds"),
        ("zzzzzz=1", r"unknown run-config key 'zzzzzz' \(the keys are pyproject.toml's"),
    ],
)
def test_unknown_keys_are_named_with_the_nearest_valid_ones(override, message):
    with pytest.raises(RunConfigError, match=message):
        check_run_config([override], KEYS)


def test_every_unknown_key_is_named_once():
    with pytest.raises(RunConfigError) as err:
        check_run_config(["num-rounds=3 out-dir='/x' epochs=2"], KEYS)
    text = str(err.value)
    assert text.count("unknown run-config key") == 2 and "'epochs'" in text


def test_run_config_values_found_in_flwr_run_arguments():
    args = [
        ".",
        "local",
        "--stream",
        "--run-config",
        "a=1",
        "-c",
        "b=2",
        "--run-config=c=3",
        "--federation-config",
        "num-supernodes=3",
    ]
    assert run_config_values(args) == ["a=1", "b=2", "c=3"]


def test_check_run_config_command_exits_2_naming_the_key(capsys):
    assert main(["check-run-config", "--app", str(ROOT), "num-rounds=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown run-config key 'num-rounds'; nearest: num-train-rounds")
    assert main(["check-run-config", "--app", str(ROOT), "num-train-rounds=3"]) == 0


def test_run_refuses_a_bad_key_before_starting_flwr(capsys, tmp_path):
    # `flwr` that does not exist: reaching it would raise, so the check came first
    assert main(["run", str(ROOT), "--run-config", "num-rounds=3", "--stream"]) == 2
    assert "nearest: num-train-rounds" in capsys.readouterr().err


def _ls(status, details=""):
    return json.dumps(
        {"success": True, "runs": [{"run-id": "7", "status": status, "status-details": details}]}
    )


def test_outcome_of_a_completed_and_a_failed_run():
    assert run_outcome(_ls("finished:completed")) == ("finished:completed", "")
    assert failure_message("7", *run_outcome(_ls("finished:completed"))) is None
    failed = _ls(
        "finished:failed", "Simulation failed with exception: unknown model 'x'\nTraceback..."
    )
    assert failure_message("7", *run_outcome(failed)) == (
        "error: run 7 finished:failed: Simulation failed with exception: unknown model 'x'"
    )
    assert (
        failure_message("7", *run_outcome(_ls("finished:stopped")))
        == "error: run 7 finished:stopped"
    )
    assert run_outcome("not json")[0] == "unknown"
    assert run_outcome(json.dumps({"runs": []})) == ("unknown", "`flwr ls` lists no such run")
    assert failure_message("7", *run_outcome("")).startswith("error: run 7 unknown: unreadable")
