"""Ctrl-C, TERM, HUP or a closed output pipe stop everything a script started.

Real processes: ``examples/quickstart.sh`` (``flwr run`` on a local SuperLink, whose
simulation runs Ray) and ``examples/deploy/local.sh`` (SuperLink, SuperNodes, SuperExecs,
ServerApp, ClientApps). Each test starts the script in its own session with a private
``FLWR_HOME``, waits until the run is training, sends the signal as a user would (Ctrl-C
and a hang-up reach the whole foreground process group, ``kill`` only the script; a
closed pipe is the reader of the script's output going away), then checks that the
script exits with ``128 + signal``, that no process of the run is left (every descendant
of the script seen before the signal, and every process whose environment holds the
test's ``FLWR_HOME``: that also finds processes re-parented to init), and that no file in
the out-dir changes afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy_utils import (
    DEPLOY,
    FAST,
    ROOT,
    base_env,
    cmdline,
    descendants,
    free_port,
    pid_alive,
)

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py

# Long enough (20 + 15 rounds) to be interrupted mid-run; one local epoch and no federated
# evaluation so that round 1 (and state.json) comes soon.
QUICK = "local-epochs=1 fraction-evaluate=0"


def _with_env(name: str, value: str) -> list[int]:
    """Live processes of this user started with ``name=value`` in their environment."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """(mtime in ns, size) of every file under folder, by relative path."""
    out = {}
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                st = path.stat()
                out[str(path.relative_to(folder))] = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            continue
    return out


def _wait(condition, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the script ended ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.5)


def _default_stop_signals() -> None:
    """In the child: INT and HUP as a terminal's user has them. A test run started in the
    background (``cmd &`` ignores INT) or under ``nohup`` (ignores HUP) would otherwise hand
    the ignoring down, and bash cannot trap a signal ignored when it started."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _start(args: list[str], env: dict, log: Path, how: str) -> tuple[subprocess.Popen, object]:
    """Start args in a new session, output to log; through a ``cat`` reader for "pipe"."""
    with open(log, "wb") as out:
        reader = (
            subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=out, start_new_session=True)
            if how == "pipe"
            else None
        )
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=reader.stdin if reader else out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_stop_signals,
        )
    if reader is not None:
        reader.stdin.close()  # the script holds the only write end
    return proc, reader


def _interrupt(proc: subprocess.Popen, how: str, reader=None) -> None:
    """Ctrl-C / hang-up: the whole process group; TERM: the script only; pipe: the reader
    of the script's output goes away."""
    if how == "pipe":
        reader.kill()
        reader.wait()
    elif how == "TERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, getattr(signal, f"SIG{how}"))


def _assert_all_stopped_and_quiet(proc, tracked: set[int], home: Path, out: Path) -> None:
    """Nothing of the run is left, and the out-dir stays as it is."""
    deadline = time.monotonic() + 5  # SIGKILLed processes may take a moment to vanish
    while time.monotonic() < deadline:
        left = {p for p in tracked if pid_alive(p)} | set(_with_env("FLWR_HOME", str(home)))
        if not left:
            break
        time.sleep(0.2)
    assert not left, [(p, cmdline(p)[:160]) for p in sorted(left)]
    before = _files(out)
    time.sleep(5)
    assert _files(out) == before, "a file in the out-dir changed after the script stopped"


def _stop_leftovers(proc: subprocess.Popen, home: Path) -> None:
    """After a failed assertion: leave nothing behind (by pid, this test's processes)."""
    pids = [*descendants(proc.pid), *_with_env("FLWR_HOME", str(home))]
    if proc.poll() is None:
        pids.append(proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


# HUP reaches the quickstart's process group as INT does and its trap has the same shape
# (exit 129 instead of 130); the hang-up case runs on local.sh below.
@pytest.mark.parametrize("how, status", [("INT", 130), ("TERM", 143), ("pipe", 141)])
def test_quickstart_stops_the_whole_run(tmp_path, how, status):
    home, out = tmp_path / "flwr-home", tmp_path / "demo"
    env = {**base_env(home), "OUT": str(out)}
    for var in ("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", "FLWR_LOCAL_CONTROL_API_PORT"):
        env.pop(var, None)  # flwr-env.sh chooses this FLWR_HOME's own
    proc, reader = _start(
        ["bash", str(ROOT / "examples" / "quickstart.sh"), QUICK],
        env,
        tmp_path / "quickstart.log",
        how,
    )
    try:
        # training: round 1 wrote its checkpoint and state.json, round 2 is under way
        _wait(lambda: (out / "state.json").is_file(), 300, proc, "state.json")
        tracked = {proc.pid, *descendants(proc.pid), *_with_env("FLWR_HOME", str(home))}
        assert any(
            "flwr-simulation" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
            for p in tracked
            if pid_alive(p)
        )
        _interrupt(proc, how, reader)
        assert proc.wait(timeout=90) == status, (tmp_path / "quickstart.log").read_text()[-3000:]
        _assert_all_stopped_and_quiet(proc, tracked, home, out)
        assert (out / "state.json").is_file() and (out / "checkpoint-latest.pt").is_file()
        assert not (out / "results.json").exists()
    finally:
        _stop_leftovers(proc, home)


@pytest.mark.parametrize("how, status", [("INT through tee", 130), ("pipe", 141), ("HUP", 129)])
def test_deploy_local_stops_everything(tmp_path, how, status):
    home, out, work = tmp_path / "flwr-home", tmp_path / "out", tmp_path / "work"
    script = [
        "bash",
        str(DEPLOY / "local.sh"),
        "--nodes",
        "2",
        "--port",
        str(free_port()),
        "--train-rounds",
        "5",
        "--out",
        str(out),
        "--work",
        str(work),
        "--run-config",
        FAST,
    ]
    if how in ("pipe", "HUP"):  # HUP: the terminal went away, output to a file
        proc, reader = _start(script, base_env(home), tmp_path / "deploy.log", how)
    else:  # the case: `local.sh ... 2>&1 | tee log`, then Ctrl-C
        line = " ".join(f"'{a}'" for a in script) + f" 2>&1; echo $? > '{tmp_path}/rc'"
        reader = None
        proc = subprocess.Popen(
            ["bash", "-c", f"{{ {line}; }} | tee '{tmp_path}/tee.log'"],
            cwd=ROOT,
            env=base_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_default_stop_signals,
        )
    try:
        run_log = work / "flwr-run.log"
        _wait(
            lambda: run_log.is_file() and "configure_train" in run_log.read_text(errors="replace"),
            300,
            proc,
            "a training round",
        )
        tracked = {proc.pid, *descendants(proc.pid), *_with_env("FLWR_HOME", str(home))}
        _interrupt(proc, how.split()[0], reader)
        code = proc.wait(timeout=120)
        if how.startswith("INT"):
            code = int((tmp_path / "rc").read_text())
        assert code == status
        _assert_all_stopped_and_quiet(proc, tracked, home, out)
        # where the output still has a reader: the script says it stops, and what it stopped.
        # (Ctrl-C reaches tee too, and a closed pipe has no reader: nothing after the signal
        # can be read there.)
        if how == "HUP":
            log = (tmp_path / "deploy.log").read_text()
            assert "hung up" in log and "stopping everything started (by pid)" in log, log
            assert "stopped (exit 129)" in log, log
        assert len(tracked) >= 6  # SuperLink, 2 SuperNodes, SuperExecs, ServerApp, flwr run
    finally:
        _stop_leftovers(proc, home)
