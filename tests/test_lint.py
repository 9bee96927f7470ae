"""The code base passes ruff as pyproject.toml configures it (CI runs scripts/lint.sh too).

``ruff check`` (pycodestyle, pyflakes, import order, bugbear) and ``ruff format --check``
over the repository; ruff is a dev dependency, pinned in constraints.txt.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ruff import find_ruff_bin

pytestmark = pytest.mark.e2e  # starts ruff (well under a second)

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [find_ruff_bin(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_lint_script_runs_as_shown():
    res = subprocess.run(
        ["bash", "scripts/lint.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert res.stdout.splitlines()[-1].startswith(
        "lint: ruff check and ruff format --check passed (ruff 0.17."
    )


def test_ruff_check_passes():
    res = _ruff("check", "--no-cache", ".")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_ruff_format_check_passes():
    res = _ruff("format", "--check", "--no-cache", ".")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_ruff_reads_the_projects_settings():
    res = _ruff("check", "--show-settings", "pyproject.toml")
    assert res.returncode == 0, res.stderr
    assert f'Settings path: "{ROOT / "pyproject.toml"}"' in res.stdout
    assert "linter.line_length = 100" in res.stdout
    enabled = res.stdout.split("linter.rules.enabled = [", 1)[1].split("]", 1)[0]
    for rule in ("E501", "F401", "W291", "I001", "B006"):  # one of each selected family
        assert f"({rule})" in enabled, rule
    assert "(B905)" not in enabled  # ignored on purpose (pyproject.toml says why)
