"""scripts/setup.sh says what it installs and how long it took, and is quiet otherwise.

The installing run uses a stand-in Python (a shell script that records what it is asked
to do), so the test neither downloads nor touches the real venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import flwr
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.e2e  # runs bash scripts

ROOT = Path(__file__).resolve().parents[1]

# Stand-in interpreter: `-m venv DIR` copies itself to DIR/bin/python; `-c CODE` fails
# until `-m pip install -e ...` has run, then prints versions if asked to; every call is logged.
FAKE = r"""#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
  "-m venv") mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
  "-m pip") case " $* " in *" -e "*) touch "$here/installed" ;; esac ;;
  -c*) [ -f "$here/installed" ] || exit 1
       case "$2" in *print*) echo "flwr 1.42.0, torch 2.14.1" ;; esac ;;
esac
"""


def _setup(tmp_path: Path, venv: Path) -> subprocess.CompletedProcess:
    fake = tmp_path / "python3"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PYTHON": str(fake),
        "NF_VENV": str(venv),
        "FAKE_LOG": str(tmp_path / "calls.log"),
    }
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_setup_says_what_it_installs_then_done_with_the_time(tmp_path):
    venv = tmp_path / "venv"
    proc = _setup(tmp_path, venv)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert (
        lines[0] == f"setup: creating the virtual environment {venv} ({tmp_path}/python3 -m venv)"
    )
    assert lines[1] == (
        f"setup: installing not-flower and the test tools into {venv} at the tested versions of "
        "constraints.txt (flwr 1.42.0, torch 2.14.1, torchvision 0.29.1 and 9 more); "
        "takes about 2 minutes"
    )
    assert re.fullmatch(r"setup: done in \d+ s \(flwr 1\.42\.0, torch 2\.14\.1\)", lines[-1])
    calls = (tmp_path / "calls.log").read_text()
    assert "-m pip install --quiet -c constraints.txt -e .[dev]" in calls


def test_setup_is_quiet_when_everything_is_installed(tmp_path):
    venv = tmp_path / "venv"
    assert _setup(tmp_path, venv).returncode == 0  # installs (into the stand-in)
    again = _setup(tmp_path, venv)
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""


def _constraints() -> dict[str, str]:
    """constraints.txt as ``{name: version}`` (every line but comments is ``name==version``)."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_pins_it_prints_are_the_constraints_and_pyproject_states_ranges():
    pins = _constraints()
    assert {k: pins[k] for k in ("flwr", "torch", "torchvision")} == {
        "flwr": "1.42.0",
        "torch": "2.14.1",
        "torchvision": "0.29.1",
    }
    assert len(pins) - 3 == 9  # "... and 9 more" in the message above
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = [Requirement(d) for d in project["dependencies"]]
    deps += [Requirement(d) for d in project["optional-dependencies"]["dev"]]
    for req in deps:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} has no tested version in constraints.txt"
        assert req.specifier.contains(pins[name]), (
            f"constraints.txt's {name}=={pins[name]} is outside {req}"
        )
        if name in ("flwr", "torch", "torchvision"):  # a plugin: ranges, not pins
            assert not any(s.operator == "==" for s in req.specifier), str(req)
    # the pinned Flower is the one installed here and in the images (docker/Dockerfile)
    assert pins["flwr"] == flwr.__version__
