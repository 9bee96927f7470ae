"""MkDocs hook: builds the settings reference (docs/settings.md) from pyproject.toml.

The page's marker line ``<!-- settings-table -->`` becomes a table of every run-config key
of ``[tool.flwr.app.config]`` with its default as ``pyproject.toml`` states it (the values
``flwr run`` uses) and its meaning from ``docs/settings-help.toml``. The build fails when a
key has no meaning there, or when a meaning names a key ``pyproject.toml`` does not have.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- settings-table -->"


def flat_keys(table: dict, prefix: str = "") -> dict:
    """Flatten nested run-config tables to dotted keys, as Flower does.

    Parameters
    ----------
    table : dict
        ``[tool.flwr.app.config]`` as parsed by ``tomllib``.
    prefix : str
        Dotted prefix of ``table``'s keys.

    Returns
    -------
    dict
        Key to default value, in the file's order.
    """
    out: dict = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def toml_value(value) -> str:
    """A default written as in ``pyproject.toml`` (``true``, ``"first"``, ``0.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def settings_table(pyproject: Path, help_file: Path) -> str:
    """The Markdown table of every run-config key: key, default, meaning.

    Parameters
    ----------
    pyproject : Path
        The app's ``pyproject.toml``.
    help_file : Path
        TOML file mapping each key to one line of Markdown.

    Returns
    -------
    str

    Raises
    ------
    PluginError
        A key without a meaning, or a meaning for a key that does not exist.
    """
    config = tomllib.loads(pyproject.read_text())["tool"]["flwr"]["app"]["config"]
    defaults = flat_keys(config)
    meanings = tomllib.loads(help_file.read_text())
    missing = [k for k in defaults if k not in meanings]
    unknown = [k for k in meanings if k not in defaults]
    if missing or unknown:
        raise PluginError(
            f"{help_file.name} and pyproject.toml's [tool.flwr.app.config] disagree: "
            f"keys without a meaning: {missing or 'none'}; meanings of unknown keys: "
            f"{unknown or 'none'}"
        )
    rows = [
        f"| `{key}` | `{toml_value(value)}` | {meanings[key]} |" for key, value in defaults.items()
    ]
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *rows])


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001  (MkDocs' signature)
    """Fill the settings page's marker with the table."""
    if MARKER not in markdown:
        return markdown
    table = settings_table(ROOT / "pyproject.toml", Path(config["docs_dir"]) / "settings-help.toml")
    return markdown.replace(MARKER, table)
