"""Markdown cells of the comparison report: a table line, a mean ± std, rounds, a cost.

Pure formatting shared by :mod:`not_flower.experiments.report_markdown` and
:mod:`not_flower.experiments.report_membership`; a missing number prints as "–".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _md_row(cells: Sequence[str]) -> str:
    """One Markdown table line."""
    return "| " + " | ".join(cells) + " |"


def _cell(stat: Mapping | None, digits: int = 2, suffix: str = "") -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    mean = f"{stat['mean']:.{digits}f}{suffix}"
    if stat.get("std") is None:
        return mean
    return f"{mean} ± {stat['std']:.{digits}f}{suffix}"


def _rounds_cell(stat: Mapping | None) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    if not stat.get("std"):
        mean = stat["mean"]
        return f"{mean:.0f}" if float(mean).is_integer() else f"{mean:.1f}"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def _cost_cell(stats: Mapping) -> str:
    parts = [
        stats[k].get("mean") for k in ("cost_rounds_pct", "cost_mb_pct", "cost_client_seconds_pct")
    ]
    if all(p is None for p in parts):
        return "–"
    return " / ".join("–" if p is None else f"{p:.0f}%" for p in parts)


def present_columns(
    rows: Mapping[str, Mapping], columns: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The ``(title, key)`` columns for which at least one row's stats have a mean.

    Parameters
    ----------
    rows : Mapping
        Row label -> report row (with ``stats``).
    columns : sequence of (str, str)
        Optional columns: title and row key.

    Returns
    -------
    list of (str, str)
        Those to show, in the given order.
    """
    return [
        (title, key)
        for title, key in columns
        if any((row["stats"].get(key) or {}).get("mean") is not None for row in rows.values())
    ]


def table_head(header: str, extra: Sequence[tuple[str, str]] = ()) -> list[str]:
    """A Markdown table's header line, with the ``extra`` columns' titles appended, and its
    separator line (one ``---`` per column).

    Parameters
    ----------
    header : str
        The fixed columns' header line, ``"| a | b |"``.
    extra : sequence of (str, str)
        Optional columns shown (:func:`present_columns`): title and row key.

    Returns
    -------
    list[str]
        ``[header, separator]``.
    """
    line = header + "".join(f" {title} |" for title, _ in extra)
    return [line, "|" + "---|" * (line.count("|") - 1)]
