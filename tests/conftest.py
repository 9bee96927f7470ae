"""Guard for the fast test loop: a test that starts a process must be marked ``e2e``.

``bash scripts/test.sh -m "not e2e"`` runs the unit tests alone. A test that starts
Flower (SuperLink, SuperNode, ``flwr run``), Flower's Ray simulation, a container tool or
any other process belongs to the end-to-end set: mark it ``@pytest.mark.e2e`` (or set
``pytestmark = pytest.mark.e2e`` for a whole module). While a test that is not so marked
runs, every process start is checked (``subprocess.Popen._execute_child``, which every
``subprocess`` call and Ray's process launcher go through); one started by this
repository's code, or a Flower or Ray program started by anyone, makes the test fail at
teardown with a message naming the command and the caller. Processes that third-party
libraries start for themselves (a font cache, a compiler probe) are ignored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/test_e2e_marks.py runs a small pytest session


def pytest_configure(config):  # pylint: disable=unused-argument
    """SIGTERM (``timeout``, ``kill PID``, a CI job's stop) ends the test run as Ctrl-C does.

    By default SIGTERM kills pytest on the spot: no ``finally`` block and no fixture
    teardown runs, and the SuperLinks, SuperNodes and Ray clusters the running test started
    live on. As a KeyboardInterrupt the running test's ``finally`` blocks run and pytest
    tears its fixtures down, stopping them by pid (``tests/test_sigterm.py``).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


ROOT = Path(__file__).resolve().parents[1]
_SUBPROCESS_FILE = os.path.normcase(subprocess.__file__)
# Programs that are Flower, Ray or our own runtime, whoever launches them.
_RUNTIME_PROGRAMS = ("flwr", "flower-", "ray", "gcs_server", "raylet", "docker", "bash")


def _caller_outside_subprocess() -> str:
    """File and line of the innermost frame that is not in ``subprocess.py`` nor here."""
    frame = sys._getframe(2)  # pylint: disable=protected-access
    here = os.path.normcase(__file__)
    while frame is not None:
        name = os.path.normcase(frame.f_code.co_filename)
        if name not in (_SUBPROCESS_FILE, here):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def is_ours(caller: str) -> bool:
    """Whether ``caller`` ('file:line') is this repository's code (not an installed package).

    Parameters
    ----------
    caller : str
        ``path:line`` of the frame that started the process.
    """
    path = caller.rsplit(":", 1)[0]
    if "site-packages" in path or f"{os.sep}.venv{os.sep}" in path:
        return False
    try:
        Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return False
    return True


def starts_runtime(args) -> bool:
    """Whether the command ``args`` (a string or argv list) is Flower, Ray, docker or bash.

    Parameters
    ----------
    args : str | bytes | os.PathLike | list
        What ``subprocess.Popen`` was given as its first argument.
    """
    argv0 = args if isinstance(args, (str, bytes, os.PathLike)) else (args[0] if args else "")
    name = os.path.basename(os.fsdecode(argv0).split()[0] if os.fsdecode(argv0).strip() else "")
    return name.startswith(_RUNTIME_PROGRAMS)


def process_violation(args) -> str | None:
    """Why starting ``args`` from the current stack needs the ``e2e`` mark, or ``None``."""
    caller = _caller_outside_subprocess()
    ray_launch = f"{os.sep}ray{os.sep}" in caller
    if is_ours(caller) or ray_launch or starts_runtime(args):
        shown = args if isinstance(args, (str, bytes)) else " ".join(map(os.fsdecode, args))
        return f"started {shown[:200]!r} (from {caller})"
    return None


@pytest.fixture(autouse=True)
def _processes_need_the_e2e_mark(request, monkeypatch):
    """Fail a test that starts a process unless it is marked ``e2e`` (see module docstring)."""
    if request.node.get_closest_marker("e2e") is not None:
        yield
        return
    seen: list[str] = []
    original = subprocess.Popen._execute_child  # pylint: disable=protected-access

    def guarded(self, args, *rest, **kwargs):
        why = process_violation(args)
        if why is not None:
            seen.append(why)
        return original(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", guarded)
    yield
    if seen:
        pytest.fail(
            f"{request.node.nodeid} starts processes but is not marked e2e: "
            + "; ".join(seen[:3])
            + ". Mark it @pytest.mark.e2e (module: pytestmark = pytest.mark.e2e) so that "
            '`bash scripts/test.sh -m "not e2e"` stays fast.',
            pytrace=False,
        )
