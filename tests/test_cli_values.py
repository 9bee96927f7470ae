"""not_flower/launch/cli.py checks run-config values before anything starts, and merges overrides
(a key given again takes its later value) into the one --run-config flwr gets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.common.config import parse_config_args

from not_flower.launch.cli import RunConfigError, checked_args, main, override_values

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def test_a_key_given_again_takes_its_later_value_in_one_run_config():
    script = "out-dir='/tmp/x y' num-train-rounds=20 recovery.rounds=15 overwrite=true"
    args = checked_args(
        [
            ".",
            "local",
            "--stream",
            "--run-config",
            script,
            "--run-config",
            "recovery.rounds=2 lr=0.1",
        ],
        PYPROJECT,
    )
    assert args[:3] == [".", "local", "--stream"] and args.count("--run-config") == 1
    merged = args[-1]
    assert merged == (
        "out-dir='/tmp/x y' num-train-rounds=20 recovery.rounds=2 overwrite=true lr=0.1"
    )
    # what Flower itself makes of it (it refuses a key twice in one string)
    assert parse_config_args([merged])["recovery.rounds"] == 2
    assert parse_config_args([merged])["out-dir"] == "/tmp/x y"
    same = checked_args([".", "--run-config", f"{script} recovery.rounds=2"], PYPROJECT)
    assert parse_config_args([same[-1]])["recovery.rounds"] == 2


def test_no_run_config_and_a_toml_file_pass_through(tmp_path):
    assert checked_args([".", "--stream"], PYPROJECT) == [".", "--stream"]
    toml = tmp_path / "over.toml"
    toml.write_text('model = "mlp"\n\n[recovery]\nrounds = 2\n')
    assert checked_args([".", "-c", str(toml)], PYPROJECT) == [".", "--run-config", str(toml)]
    with pytest.raises(RunConfigError, match="over.toml. is not key=value"):
        checked_args([".", "-c", str(toml), "-c", "lr=0.1"], PYPROJECT)


@pytest.mark.parametrize(
    "override, message",
    [
        ("recovery.rounds=-1", "recovery.rounds must be >= 0, got -1"),
        ("model='transformer'", "unknown model 'transformer'; choose one of: cnn, mlp"),
        ("unlearn.mode='class' unlearn.classes='x'", r"unlearn.classes must be class labels"),
        ("method='retrain' init-checkpoint='/x.pt'", "method 'retrain' .* init-checkpoint"),
        ("model=cnn", r"model=cnn is not a number, true/false or quoted text \(write model='cnn'"),
    ],
)
def test_bad_values_are_refused_naming_them(override, message):
    with pytest.raises(RunConfigError, match=message):
        checked_args([".", "--run-config", override], PYPROJECT)


BEFORE_START = [  # what needs no data and no node: refused before anything starts
    (
        "unlearn.mode='class' unlearn.classes='3,42'",
        r"unlearn.classes 42: out of range; data set 'digits' has 10 classes \(labels 0 to 9\)",
    ),
    (
        "dataset='cifar100' unlearn.mode='class' unlearn.classes='100'",
        r"unlearn.classes 100: .* 'cifar100' has 100 classes \(labels 0 to 99\)",
    ),
    (
        "init-checkpoint='/nonexistent.pt'",
        r"init-checkpoint '/nonexistent.pt' does not exist; give the path of a checkpoint file",
    ),
    ("init-checkpoint='/tmp'", "init-checkpoint '/tmp' is a directory"),
    (
        "audit-log='/etc/hostname/log.jsonl'",
        "audit-log '/etc/hostname/log.jsonl' is under '/etc/hostname', which is a file",
    ),
    ("out-dir='/etc/hostname/run'", "out-dir '/etc/hostname/run' is under '/etc/hostname'"),
]
WITH_THREE_CLIENTS = [  # need the number of clients: a simulation's num-supernodes
    (
        "unlearn.clients='0,1,2'",
        r"unlearn.clients '0,1,2' names every one of the 3 clients \(partition ids 0 to 2\)",
    ),
    ("unlearn.clients='0,1;2'", "unlearn.clients '0,1;2' names every one of the 3 clients"),
    (
        "train-subset=3",
        r"train-subset=3 with 3 clients and val-fraction=0.1 .* \(at least 6 here\)",
    ),
    ("train-subset=2 val-fraction=0", r"train-subset=2 with 3 clients .*at least 3 here"),
]


@pytest.fixture
def local_flwr_home(tmp_path, monkeypatch):
    """A FLWR_HOME whose default connection is the local simulation (as flwr writes it)."""
    (tmp_path / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n\n'
        '[superlink.remote]\naddress = "10.1.2.3:9093"\n'
    )
    monkeypatch.setenv("FLWR_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "")  # no `flwr`: reaching it would raise, not start a run
    return tmp_path


@pytest.mark.parametrize("override, message", BEFORE_START + WITH_THREE_CLIENTS)
def test_values_needing_no_data_are_refused_before_anything_starts(
    override, message, local_flwr_home, capsys
):
    three = ["--federation-config", "num-supernodes=3 client-resources-num-cpus=1"]
    with pytest.raises(RunConfigError, match=message):
        checked_args([".", "--stream", *three, "--run-config", override], PYPROJECT)
    # the `run` command: exit 2, the message naming key and value, flwr never started
    assert main(["run", str(ROOT), "local", *three, "--run-config", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err
    assert main(["check-run-config", "--app", str(ROOT), "--num-clients", "3", override]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_the_number_of_clients_comes_from_the_simulation_or_is_left_to_the_app(local_flwr_home):
    every, small = "unlearn.clients='0,1,2'", "train-subset=7"
    (local_flwr_home / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n[superlink.local]\naddress = ":local:"\n'
        "[superlink.local.options]\nnum-supernodes = 3\n"
    )
    with pytest.raises(RunConfigError, match="every one of the 3 clients"):  # (old) options
        checked_args([".", "local", "-c", every], PYPROJECT)
    checked_args([".", "local", "-c", small], PYPROJECT)  # 7 >= 2 * 3
    # --federation-config wins over the options
    four = ["--federation-config", "num-supernodes=4"]
    assert checked_args([".", "local", *four, "-c", every], PYPROJECT)[-1] == every
    with pytest.raises(RunConfigError, match=r"train-subset=7 with 4 clients .*at least 8 here"):
        checked_args([".", "local", *four, "-c", small], PYPROJECT)
    # unknown here, left to the ServerApp's checks before round 1: a deployment, or
    # check-run-config without --num-clients
    (local_flwr_home / "config.toml").write_text(
        '[superlink]\ndefault = "dep"\n[superlink.dep]\naddress = "127.0.0.1:9093"\n'
    )
    for override in (every, small):
        assert checked_args([".", "--stream", *four, "-c", override], PYPROJECT)[-1] == override
        assert main(["check-run-config", "--app", str(ROOT), override]) == 0


def test_paths_are_checked_only_where_the_server_app_runs_here(local_flwr_home):
    gone = "init-checkpoint='/nonexistent.pt'"
    with pytest.raises(RunConfigError, match="init-checkpoint '/nonexistent.pt'"):
        checked_args([".", "-c", gone], PYPROJECT)  # the default: local simulation
    # a SuperLink elsewhere reads its own files: the ServerApp checks them
    assert checked_args([".", "remote", "-c", gone], PYPROJECT)[-1] == gone
    # a relative path is the ServerApp's (its working directory is the SuperLink's)
    assert checked_args([".", "-c", "init-checkpoint='x.pt'"], PYPROJECT)[-1] == (
        "init-checkpoint='x.pt'"
    )


def test_check_run_config_command_checks_values(capsys):
    assert main(["check-run-config", "--app", str(ROOT), "recovery.rounds=-1"]) == 2
    assert "recovery.rounds must be >= 0, got -1" in capsys.readouterr().err
    assert main(["check-run-config", "--app", str(ROOT), "recovery.rounds=2"]) == 0


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
            "unlearn.mode='class' unlearn.classes='42'",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    # not_flower/common/prestart.py's check (imported with importlib: importtime omits it)
    assert "unlearn.classes 42: out of range; data set 'digits' has 10 classes" in out.stderr
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "not_flower.common.methods" in imported  # what not_flower/common/config.py imports
    assert not [m for m in imported if m.split(".")[0] in ("torch", "flwr", "numpy")]
