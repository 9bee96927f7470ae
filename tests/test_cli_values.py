"""not_flower/launch/cli.py checks run-config values before anything starts, and merges overrides
(a key given again takes its later value) into the one --run-config flwr gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flwr.common.config import parse_config_args

from not_flower.launch.cli import RunConfigError, checked_args, main, override_values

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def test_a_key_given_again_takes_its_later_value_in_one_run_config():
    script = "out-dir='/tmp/x y' num-train-rounds=20 recovery-rounds=15 overwrite=true"
    args = checked_args(
        [
            ".",
            "local",
            "--stream",
            "--run-config",
            script,
            "--run-config",
            "recovery-rounds=2 lr=0.1",
        ],
        PYPROJECT,
    )
    assert args[:3] == [".", "local", "--stream"] and args.count("--run-config") == 1
    merged = args[-1]
    assert merged == (
        "out-dir='/tmp/x y' num-train-rounds=20 recovery-rounds=2 overwrite=true lr=0.1"
    )
    # what Flower itself makes of it (it refuses a key twice in one string)
    assert parse_config_args([merged])["recovery-rounds"] == 2
    assert parse_config_args([merged])["out-dir"] == "/tmp/x y"
    same = checked_args([".", "--run-config", f"{script} recovery-rounds=2"], PYPROJECT)
    assert parse_config_args([same[-1]])["recovery-rounds"] == 2


def test_no_run_config_and_a_toml_file_pass_through(tmp_path):
    assert checked_args([".", "--stream"], PYPROJECT) == [".", "--stream"]
    toml = tmp_path / "over.toml"
    toml.write_text('"recovery-rounds" = 2\n"model" = "mlp"\n')
    assert checked_args([".", "-c", str(toml)], PYPROJECT) == [".", "--run-config", str(toml)]
    with pytest.raises(RunConfigError, match="over.toml. is not key=value"):
        checked_args([".", "-c", str(toml), "-c", "lr=0.1"], PYPROJECT)


@pytest.mark.parametrize(
    "override, message",
    [
        ("recovery-rounds=-1", "recovery-rounds must be >= 0, got -1"),
        ("model='transformer'", "unknown model 'transformer'; choose one of: cnn, mlp"),
        ("unlearn-mode='class' unlearn-classes='x'", r"unlearn-classes must be class labels"),
        ("method='retrain' init-checkpoint='/x.pt'", "method 'retrain' .* init-checkpoint"),
        ("model=cnn", r"model=cnn is not a number, true/false or quoted text \(write model='cnn'"),
    ],
)
def test_bad_values_are_refused_naming_them(override, message):
    with pytest.raises(RunConfigError, match=message):
        checked_args([".", "--run-config", override], PYPROJECT)


def test_check_run_config_command_checks_values(capsys):
    assert main(["check-run-config", "--app", str(ROOT), "recovery-rounds=-1"]) == 2
    assert "recovery-rounds must be >= 0, got -1" in capsys.readouterr().err
    assert main(["check-run-config", "--app", str(ROOT), "recovery-rounds=2"]) == 0


def test_run_refuses_a_bad_value_before_starting_flwr(capsys):
    # `flwr` that does not exist: reaching it would raise, so the check came first
    assert main(["run", str(ROOT), "--run-config", "fraction-train=0", "--stream"]) == 2
    assert "fraction-train must be in (0, 1], got 0.0" in capsys.readouterr().err


def test_other_apps_values_are_theirs(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.flwr.app.components]\nserverapp = "mine.server:app"\n'
        "[tool.flwr.app.config]\nrecovery-rounds = 1\n"
    )
    assert (
        checked_args([".", "-c", "recovery-rounds=-1"], tmp_path / "pyproject.toml")[-1]
        == "recovery-rounds=-1"
    )


def test_override_values_keep_first_order_and_last_value():
    assert override_values(["a=1 b='x'", "a=2"]) == {"a": "2", "b": "'x'"}


@pytest.mark.e2e  # runs cli.py as a file, as the scripts do
def test_the_file_checks_values_without_importing_torch():
    out = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "not_flower/launch/cli.py",
            "check-run-config",
            "unlearn-mode='class' unlearn-classes='x'",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "unlearn-classes must be class labels" in out.stderr
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "not_flower.common.methods" in imported  # what not_flower/common/config.py imports
    assert not [m for m in imported if m.split(".")[0] in ("torch", "flwr", "numpy")]
