"""tests.deploy_utils.run_script: a script that times out (or is interrupted) is stopped
with everything it started, its own trap first."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.deploy_utils import pid_alive, run_script

pytestmark = pytest.mark.e2e  # starts processes (bash, sleep): see tests/conftest.py


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_script_that_times_out_has_its_trap_run_and_its_children_stopped(tmp_path):
    pids, trapped = tmp_path / "pids", tmp_path / "trapped"
    script = (
        f"trap 'echo yes > {trapped}; exit 0' TERM; "
        f"sleep 300 & echo $! > {pids}; "
        # a child that ignores TERM and outlives the script's trap: stopped by pid
        f"bash -c 'trap \"\" TERM; sleep 300' & echo $! >> {pids}; wait"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        run_script(["bash", "-c", script], timeout=1.5, grace=5.0)
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    assert trapped.read_text().strip() == "yes"  # SIGTERM first: the trap ran
    assert all(_wait_gone(p) for p in started)


def test_a_script_that_ends_gives_its_output_and_status():
    proc = run_script(["bash", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    merged = run_script(["bash", "-c", "echo out; echo err >&2"], timeout=30, merge_stderr=True)
    assert merged.stdout == "out\nerr\n" and merged.stderr is None
