"""MkDocs hook: builds the settings reference (docs/settings.md) from the declarations.

The page's marker line ``<!-- settings-table -->`` becomes one table per group of every
run-config key declared in :mod:`not_flower.common.run_settings`,
:mod:`not_flower.common.unlearning_settings` and :mod:`not_flower.common.scenario_settings`
(key, default, allowed values, meaning: :func:`not_flower.common.settings.reference_rows`).
The build fails when ``pyproject.toml``'s ``[tool.flwr.app.config]`` (the defaults
``flwr run`` uses) names other keys or other defaults than the declarations.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- settings-table -->"
GROUP_TITLES = {
    "run": "The run",
    "data": "Data",
    "training": "Local training and sampling",
    "evaluation": "Evaluation",
    "unlearn": "The unlearning request: `[tool.flwr.app.config.unlearn]`",
    "negate": "Negation: `[tool.flwr.app.config.negate]`",
    "recovery": "Recovery: `[tool.flwr.app.config.recovery]`",
    "stop": "The stopping rule: `[tool.flwr.app.config.stop]`",
    "backdoor": "Backdoor scenario: `[tool.flwr.app.config.backdoor]`",
    "mislabel": "Mislabel scenario: `[tool.flwr.app.config.mislabel]`",
    "style": "Style scenario: `[tool.flwr.app.config.style]`",
    "canary": "Canaries: `[tool.flwr.app.config.canary]`",
    "pgd": "PGD: `[tool.flwr.app.config.pgd]`",
    "federaser": "FedEraser: `[tool.flwr.app.config.federaser]`",
    "fukd": "FUKD: `[tool.flwr.app.config.fukd]`",
    "mia": "Per-example membership attack (LiRA): `[tool.flwr.app.config.mia]`",
}


def toml_value(value) -> str:
    """A default written as in ``pyproject.toml`` (``true``, ``"first"``, ``0.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def settings_table(pyproject: Path, rows: list) -> str:
    """The Markdown tables of every run-config key, one per group.

    Parameters
    ----------
    pyproject : Path
        The app's ``pyproject.toml``.
    rows : list
        ``(group, key, default, allowed, help)`` per key
        (:func:`not_flower.common.settings.reference_rows`).

    Returns
    -------
    str

    Raises
    ------
    PluginError
        When ``pyproject.toml`` lacks a declared key, has an undeclared one, or states
        another default.
    """
    _on_path()
    from not_flower.common.settings import flatten  # pylint: disable=import-outside-toplevel

    config = tomllib.loads(pyproject.read_text())["tool"]["flwr"]["app"]["config"]
    defaults = flatten(config)
    declared = {key: default for _, key, default, _, _ in rows}
    missing = [k for k in declared if k not in defaults]
    unknown = [k for k in defaults if k not in declared]
    other = [k for k in declared if k in defaults and defaults[k] != declared[k]]
    if missing or unknown or other:
        raise PluginError(
            "pyproject.toml's [tool.flwr.app.config] and the declared settings disagree: "
            f"declared keys it lacks: {missing or 'none'}; undeclared keys: "
            f"{unknown or 'none'}; other defaults: {other or 'none'}"
        )
    out: list[str] = []
    for group, title in GROUP_TITLES.items():
        mine = [r for r in rows if r[0] == group]
        if not mine:
            continue
        out += ["", f"## {title}", "", "| key | default | allowed | meaning |", "|---|---|---|---|"]
        out += [
            f"| `{key}` | `{toml_value(default)}` | {allowed} | {meaning} |"
            for _, key, default, allowed, meaning in mine
        ]
    return "\n".join(out).strip() + "\n"


def _on_path() -> None:
    """This checkout's ``not_flower`` importable (the hook runs from mkdocs, not the repo)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def declared_rows() -> list:
    """The declarations' reference rows (imports not-flower's settings; no torch)."""
    _on_path()
    from not_flower.common.config import RunConfig  # pylint: disable=import-outside-toplevel
    from not_flower.common.settings import reference_rows  # pylint: disable=import-outside-toplevel

    return reference_rows(RunConfig)


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001  (MkDocs' signature)
    """Fill the settings page's marker with the tables."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, settings_table(ROOT / "pyproject.toml", declared_rows()))
