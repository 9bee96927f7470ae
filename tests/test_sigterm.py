"""A SIGTERM to pytest tears the running test down (tests/conftest.py pytest_configure):
its finally blocks and its fixtures' teardown run, so what it started is stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy_utils import pid_alive

pytestmark = pytest.mark.e2e  # starts pytest and a sleep: see tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]

INNER = """
import subprocess, time
from pathlib import Path

import pytest

OUT = Path({out!r})


@pytest.fixture
def server():
    proc = subprocess.Popen(["sleep", "300"])
    (OUT / "pid").write_text(str(proc.pid))
    yield proc
    proc.terminate()
    proc.wait()
    (OUT / "fixture-teardown").write_text("ran")


def test_long(server):
    try:
        (OUT / "started").write_text("yes")
        time.sleep(120)
    finally:
        (OUT / "finally").write_text("ran")
"""


def test_sigterm_runs_the_tests_finally_blocks_and_fixture_teardown(tmp_path):
    (tmp_path / "test_inner.py").write_text(INNER.format(out=str(tmp_path)))
    # the hook under test, alone (not the e2e-mark guard of tests/conftest.py)
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_configure\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-s",
            str(tmp_path / "test_inner.py"),
            "--rootdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, out  # pytest's "interrupted"
    assert (tmp_path / "finally").read_text() == "ran"
    assert (tmp_path / "fixture-teardown").read_text() == "ran"
    assert not pid_alive(int((tmp_path / "pid").read_text()))
