"""The documentation site builds strictly, and its settings reference is pyproject.toml's.

`scripts/mkdocs_hooks.py` builds docs/settings.md's tables from the settings' declarations
(not_flower/common/*_settings.py); the unit tests check the tables and that a
`pyproject.toml` naming other keys or defaults fails the build. The e2e test
runs the README's `bash scripts/docs.sh` (`mkdocs build --strict`) into a temp folder.
"""

from __future__ import annotations

import importlib.util
import subprocess
import tomllib
from pathlib import Path

import pytest

from not_flower.common.settings import flatten

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs", reason="the docs extra is not installed (bash scripts/docs.sh)")


def _hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts/mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_tables_list_every_declared_key_with_its_default_by_group():
    hooks = _hooks()
    rows = hooks.declared_rows()
    table = hooks.settings_table(ROOT / "pyproject.toml", rows)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    lines = [r for r in table.splitlines() if r.startswith("| `")]
    assert sorted(r.split("`")[1] for r in lines) == sorted(flatten(config))
    assert '| `method` | `"not"` | `not`, `ft`, `retrain`' in table
    assert "| `negate.bias` | `true` | `true`, `false` |" in table
    assert "| `recovery.rounds` | `15` | integer >= 0 |" in table
    assert "| `val-fraction` | `0.1` | [0, 1) |" in table
    assert "## Recovery: `[tool.flwr.app.config.recovery]`" in table
    assert table.index("## The run") < table.index("## Data") < table.index("## Recovery")


def test_nested_tables_become_dotted_keys():
    assert flatten({"a": 1, "recovery": {"rounds": 2, "x": {"y": "z"}}}) == {
        "a": 1,
        "recovery.rounds": 2,
        "recovery.x.y": "z",
    }


def test_a_pyproject_that_disagrees_with_the_declarations_fails_the_build(tmp_path):
    from mkdocs.exceptions import PluginError

    rows = [("run", "seed", 0, "integer >= 0", "seeds"), ("training", "lr", 0.05, "> 0", "lr")]
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.flwr.app.config]\nseed = 1\nmomentum = 0.9\n")
    with pytest.raises(
        PluginError,
        match=r"lacks: \['lr'\]; undeclared keys: \['momentum'\]; other defaults: \['seed'\]",
    ):
        _hooks().settings_table(pyproject, rows)


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
    assert "settings-table" not in settings and "<code>recovery.rounds</code>" in settings
    api = (site / "reference" / "strategies" / "index.html").read_text()
    assert 'id="strategies.unlearning.Unlearning"' in api and "request_unlearning" in api
    for page in ("guide/quickstart", "results/comparison", "compare-fmnist", "benchmarks"):
        assert (site / page / "index.html").is_file(), page
