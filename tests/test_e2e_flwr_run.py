"""The most faithful end-to-end test: `flwr run .` in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _stop_local_superlink(flwr_home: Path) -> None:
    """Stop, by pid, the background SuperLink that `flwr run` started for flwr_home."""
    marker = f"--log-file {flwr_home}/local-superlink/superlink.log"
    out = subprocess.run(["pgrep", "-f", "--", marker], capture_output=True, text=True)
    for pid in map(int, out.stdout.split()):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 10
    while time.time() < deadline:
        if not subprocess.run(["pgrep", "-f", "--", marker], capture_output=True).stdout:
            return
        time.sleep(0.5)
    for pid in map(int, subprocess.run(["pgrep", "-f", "--", marker], capture_output=True,
                                       text=True).stdout.split()):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture()
def flwr_env(tmp_path):
    home = tmp_path / "flwr-home"
    env = dict(os.environ)
    env.update(FLWR_HOME=str(home), FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
               PATH=f"{BIN}:{env.get('PATH', '')}")
    yield env, home
    _stop_local_superlink(home)


def test_flwr_run_trains_unlearns_recovers(flwr_env, tmp_path):
    env, _ = flwr_env
    out = tmp_path / "out"
    run_config = (f"out-dir='{out}' num-train-rounds=5 recovery-rounds=3 "
                  "unlearn-clients='2' local-epochs=2")
    proc = subprocess.run(
        [str(BIN / "flwr"), "run", ".", "--stream", "--run-config", run_config,
         "--federation-config", "num-supernodes=4 client-resources-num-cpus=1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
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
