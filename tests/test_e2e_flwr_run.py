"""The most faithful end-to-end test: `flwr run .` in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from not_flower.launch import local_superlink

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture()
def flwr_env(tmp_path):
    home = tmp_path / "flwr-home"
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(home),
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    # this FLWR_HOME's own local-SuperLink ports, as scripts/flwr-env.sh sets them: a test
    # run in another checkout at the same time has its own SuperLink
    env.update({k: str(v) for k, v in local_superlink.ports_for_home(home).items()})
    yield env, home
    local_superlink.stop(home, grace=10.0)  # by pid: this FLWR_HOME's and port's only


def test_flwr_run_trains_unlearns_recovers(flwr_env, tmp_path):
    env, _ = flwr_env
    out = tmp_path / "out"
    run_config = (
        f"out-dir='{out}' num-train-rounds=5 recovery.rounds=3 unlearn.clients='2' local-epochs=2 "
        "recovery.run-to-cap=true"
    )
    proc = subprocess.run(
        [
            str(BIN / "flwr"),
            "run",
            ".",
            "--stream",
            "--run-config",
            run_config,
            "--federation-config",
            "num-supernodes=4 client-resources-num-cpus=1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "NoT: round 6: unlearning partition-id=2" in log
    assert "not-flower summary" in log and "recovered" in log
    results = json.loads((out / "results.json").read_text())
    rows = results["rounds"]
    assert [r["round"] for r in rows] == list(range(9))
    assert all(r["participants"] == [0, 1, 2, 3] for r in rows[1:6])
    assert all(r["participants"] == [0, 1, 3] for r in rows[6:])
    assert results["models"]["negated"]["test_acc"] < results["models"]["original"]["test_acc"]
    assert (out / "checkpoint-original.pt").is_file() and (out / "checkpoint-final.pt").is_file()


def _quickstart(env: dict, tmp_path: Path, overrides: str) -> tuple[int, list[str]]:
    """`bash examples/quickstart.sh OVERRIDES` (stdout and stderr in order), its lines."""
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "quickstart.sh"), overrides],
        cwd=ROOT,
        env={**env, "OUT": str(tmp_path / "demo")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=400,
    )
    return proc.returncode, [line for line in proc.stdout.splitlines() if line.strip()]


def test_quickstart_exits_1_with_the_error_last_when_the_serverapp_fails(flwr_env, tmp_path):
    env, _ = flwr_env
    # a value only the ServerApp can judge (the target's training split), before round 1
    code, lines = _quickstart(env, tmp_path, "unlearn.mode='instance' unlearn.samples='999999'")
    assert code == 1, "\n".join(lines[-30:])
    assert re.fullmatch(
        r"error: run \d+ finished:failed: Simulation failed with exception: unlearn.samples "
        r"999999: out of range; client 0 has (\d+) training examples \(sample ids 0 to \d+\)",
        lines[-1],
    ), lines[-5:]
    assert not any(line.startswith("results:") for line in lines)
    assert not (tmp_path / "demo" / "results.json").exists()


def test_quickstart_names_an_unknown_key_before_running(flwr_env, tmp_path):
    env, home = flwr_env
    code, lines = _quickstart(env, tmp_path, "num-rounds=3")
    assert code == 2, "\n".join(lines[-30:])
    # the nearest keys by spelling, best first (others may follow as keys are added)
    assert lines[-1].startswith(
        "error: unknown run-config key 'num-rounds'; nearest: num-train-rounds"
    )
    assert lines[-1].endswith("(the keys are pyproject.toml's [tool.flwr.app.config])")
    assert not any("Starting local SuperLink" in line for line in lines)
    assert not (home / "local-superlink").exists()  # flwr was never started
    # a bad value too: cli.py parses values as the ServerApp does, before flwr starts
    code, lines = _quickstart(env, tmp_path, "model='transformer'")
    assert code == 2, "\n".join(lines[-30:])
    assert lines[-1] == "error: unknown model 'transformer'; choose one of: cnn, mlp, resnet18, vit"
    # and what needs the class table or the simulation's 10 SuperNodes, not the data
    code, lines = _quickstart(env, tmp_path, "unlearn.mode='class' unlearn.classes='42'")
    assert code == 2, "\n".join(lines[-30:])
    assert lines[-1] == (
        "error: unlearn.classes 42: out of range; data set 'digits' has 10 classes (labels 0 to 9)"
    )
    code, lines = _quickstart(env, tmp_path, "unlearn.clients='0,1,2,3,4,5,6,7,8,9'")
    assert code == 2 and "names every one of the 10 clients" in lines[-1], lines[-5:]
    assert not (home / "local-superlink").exists()
