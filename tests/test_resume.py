"""The ServerApp is killed mid-recovery; a new run resumes with the request still in force."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from not_flower.common.store import load_checkpoint
from not_flower.experiments.simulation import simulate

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py

CONFIG = {
    "num-train-rounds": 3,
    "recovery.rounds": 5,
    "unlearn.clients": "1",
    "lr": 0.02,
    "recovery.run-to-cap": True,  # fixed length: the stopping rule reports, never ends it
}


def _session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of a session."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True).stdout
    return [
        int(p)
        for p, s, st in (line.split()[:3] for line in out.splitlines())
        if int(s) == sid and not st.startswith("Z")
    ]


def _kill_session(sid: int, timeout: float = 20.0) -> None:
    """SIGKILL every process of the session, by pid, until none is left."""
    deadline = time.time() + timeout
    while (pids := _session_pids(sid)) and time.time() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def test_killed_mid_recovery_then_resumed(tmp_path):
    out = tmp_path / "run"
    config = {**CONFIG, "out-dir": str(out)}
    code = (
        "import sys, json; from not_flower.experiments.simulation import simulate; "
        "simulate(json.loads(sys.argv[1]), num_supernodes=3)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        killed_at = None
        while time.time() < deadline and proc.poll() is None:
            state = out / "state.json"
            if state.exists():
                try:
                    rnd = json.loads(state.read_text())["round"]
                except (json.JSONDecodeError, KeyError):
                    rnd = 0
                if rnd >= 5:  # two recovery rounds done
                    killed_at = rnd
                    break
            time.sleep(0.2)
        assert killed_at is not None, "the run never reached recovery"
    finally:
        # kill the whole ServerApp process (and its Ray workers) hard, by pid
        _kill_session(proc.pid)
        proc.wait(timeout=30)
    assert _session_pids(proc.pid) == []
    assert not (out / "results.json").exists()
    # the last good checkpoints survived the kill intact
    load_checkpoint(out / "checkpoint-original.pt")
    _, meta = load_checkpoint(out / "checkpoint-latest.pt")
    saved = json.loads((out / "state.json").read_text())
    assert meta["round"] == saved["round"] >= killed_at
    assert saved["applied"] == [{"by": "partition-id", "values": ["1"]}]

    seen: list[str] = []
    collect = logging.Handler()
    collect.emit = lambda record: seen.append(record.getMessage())
    flwr_logger = logging.getLogger("flwr")
    # an earlier test's Ray or a logging config may have disabled or quieted the logger
    before = (flwr_logger.level, flwr_logger.disabled)
    flwr_logger.setLevel(logging.INFO)
    flwr_logger.disabled = False
    flwr_logger.addHandler(collect)
    try:
        results = simulate({**config, "resume": True}, num_supernodes=3)
    finally:
        flwr_logger.removeHandler(collect)
        flwr_logger.setLevel(before[0])
        flwr_logger.disabled = before[1]
    # Flower counts the resumed run's rounds from 1: the log says which app round that is
    n = saved["round"]
    expected = f"its [ROUND 1/{8 - n}] is the app's round {n + 1}"
    assert any(expected in m for m in seen), [m for m in seen if "resum" in m]
    rounds = [r["round"] for r in results["rounds"]]
    assert rounds == list(range(9))  # every round once, none repeated or lost
    assert results["resumed_from_round"] == [saved["round"]]
    for row in results["rounds"][4:]:
        assert row["phase"] == "recovery" and row["participants"] == [0, 2]
    assert len(results["requests"]) == 1 and results["requests"][0]["round"] == 4
    assert results["models"]["recovered"]["test_acc"] > results["models"]["negated"]["test_acc"]


def test_resume_refuses_a_different_configuration(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state.json").write_text(json.dumps({"round": 2, "config": {"seed": 99}}))
    with pytest.raises(Exception, match="different configuration"):
        simulate({**CONFIG, "out-dir": str(out), "resume": True}, num_supernodes=3)
