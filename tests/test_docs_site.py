"""The documentation site builds strictly, and its settings reference is pyproject.toml's.

`scripts/mkdocs_hooks.py` builds docs/settings.md's table from `pyproject.toml`'s
`[tool.flwr.app.config]` and `docs/settings-help.toml`; the unit tests check the table and
that a key without a meaning (or a meaning without a key) fails the build. The e2e test
runs the README's `bash scripts/docs.sh` (`mkdocs build --strict`) into a temp folder.
"""

from __future__ import annotations

import importlib.util
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs", reason="the docs extra is not installed (bash scripts/docs.sh)")


def _hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts/mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_table_lists_every_key_with_pyprojects_default():
    hooks = _hooks()
    table = hooks.settings_table(ROOT / "pyproject.toml", ROOT / "docs" / "settings-help.toml")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    rows = table.splitlines()[2:]
    assert [r.split("`")[1] for r in rows] == list(hooks.flat_keys(config))
    assert '| `method` | `"not"` |' in table and "| `negate-bias` | `true` |" in table
    assert "| `recovery-rounds` | `15` |" in table and "| `val-fraction` | `0.1` |" in table


def test_nested_tables_become_dotted_keys():
    assert _hooks().flat_keys({"a": 1, "recovery": {"rounds": 2, "x": {"y": "z"}}}) == {
        "a": 1,
        "recovery.rounds": 2,
        "recovery.x.y": "z",
    }


def test_a_key_without_a_meaning_or_a_meaning_without_a_key_fails(tmp_path):
    from mkdocs.exceptions import PluginError

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.flwr.app.config]\nseed = 0\nlr = 0.05\n")
    help_file = tmp_path / "settings-help.toml"
    help_file.write_text('seed = "seeds everything"\nmomentum = "local SGD momentum"\n')
    with pytest.raises(
        PluginError, match=r"without a meaning: \['lr'\].*unknown keys: \['momentum'\]"
    ):
        _hooks().settings_table(pyproject, help_file)


@pytest.mark.e2e
def test_docs_build_strictly_as_shown(tmp_path):
    """`bash scripts/docs.sh` as the README shows it, into a temp site folder: exit 0, every
    page of the nav built, the settings table filled and the API reference generated."""
    site = tmp_path / "site"
    proc = subprocess.run(
        ["bash", "-c", f"bash scripts/docs.sh --site-dir '{site}'"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    settings = (site / "settings" / "index.html").read_text()
    assert "settings-table" not in settings and "<code>recovery-rounds</code>" in settings
    api = (site / "reference" / "strategies" / "index.html").read_text()
    assert 'id="strategies.unlearning.Unlearning"' in api and "request_unlearning" in api
    for page in ("guide/quickstart", "results/comparison", "compare-fmnist", "benchmarks"):
        assert (site / page / "index.html").is_file(), page
