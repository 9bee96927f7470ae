"""The fast loop stays fast: a test that starts a process must be marked ``e2e``.

tests/conftest.py fails such a test at teardown; here a small pytest session with that
conftest shows it: unmarked tests that start a process fail with a message naming the
command and the mark to add, marked ones (function or module) pass, and pure tests pass.
The marker is registered in pyproject.toml, so ``-m "not e2e"`` is not a typo-prone no-op.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.conftest import process_violation, starts_runtime

ROOT = Path(__file__).resolve().parents[1]

BODIES = """
import subprocess, sys
import pytest

def test_pure():
    assert 1 + 1 == 2

def test_unmarked_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)

@pytest.mark.e2e
def test_marked_subprocess():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""


def test_unmarked_process_start_fails_and_marked_passes(pytester):
    pytester.makeconftest(
        (ROOT / "tests" / "conftest.py").read_text().replace('pytest_plugins = ["pytester"]', "")
    )
    pytester.makeini("[pytest]\nmarkers =\n    e2e: end to end\n")
    pytester.makepyfile(
        test_functions=BODIES,
        test_module=(
            "import subprocess, sys\nimport pytest\npytestmark = pytest.mark.e2e\n\n"
            "def test_in_marked_module():\n"
            "    subprocess.run([sys.executable, '-c', 'pass'], check=True)\n"
        ),
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=1)
    text = result.stdout.str()
    assert (
        "test_functions.py::test_unmarked_subprocess starts processes but is not marked e2e" in text
    )
    assert "Mark it @pytest.mark.e2e" in text
    fast = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "not e2e")
    fast.assert_outcomes(passed=2, errors=1, deselected=2)  # the unmarked one still fails


def test_flower_and_ray_programs_count_whoever_starts_them():
    assert starts_runtime(["/x/.venv/bin/flwr", "run", "."])
    assert starts_runtime(["flower-superlink", "--insecure"])
    assert starts_runtime("bash examples/quickstart.sh")
    assert starts_runtime([Path("/usr/bin/docker-compose"), "config"])
    assert not starts_runtime(["fc-list", "--format=%{file}"])
    assert not starts_runtime([])


def test_a_process_started_from_this_repository_is_a_violation():
    why = process_violation(["fc-list"])  # called from tests/: ours, whatever the program
    assert why is not None and "fc-list" in why and "test_e2e_marks.py" in why


def test_the_e2e_marker_is_registered():
    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("e2e:") for m in ini["markers"])
