"""Markdown of the comparison report's membership evidence, per scenario.

Pure functions over one scenario's summary
(:func:`not_flower.experiments.report_summary.summarize_scenario`): the per-example attack's
table (:func:`render_lira_table`, with the canaries' own columns when the departing client
planted canaries) and whether it separates Original from Retrain
(:func:`lira_separation`), then the departing client's canary test
(:func:`render_canary_table`, :func:`canary_separation`, :func:`canary_intro`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from not_flower.experiments.report_cells import _cell, _md_row, present_columns, table_head
from not_flower.task.canary import ALPHA

LIRA_HEADER = (
    "| method | LiRA AUC | TPR@1%FPR | TPR@0.1%FPR | retain TPR@1%FPR | MIA-efficacy | "
    "Avg Gap | Avg Gap (LiRA) |"
)
#: Columns added to the LiRA table when the forget set holds canaries (``canary.clients``):
#: the same attack on the canaries alone, against held-out canaries.
CANARY_LIRA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("canary LiRA AUC", "lira_canary_auc"),
    ("canary TPR@1%FPR", "lira_canary_tpr1"),
)


def render_lira_table(summary: Mapping) -> list[str]:
    """The per-example membership table of one scenario; empty when no row has LiRA numbers.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary (:func:`summarize_scenario`).

    Returns
    -------
    list[str]
        Header, separator, one line per row with LiRA numbers (with
        :data:`CANARY_LIRA_COLUMNS` when a row has them), then the noise floor and whether
        the attack separates Original from Retrain on the forget set, and on its canaries
        (:func:`lira_separation`).
    """
    rows = {
        label: row
        for label, row in summary["methods"].items()
        if (row["stats"].get("lira_auc") or {}).get("mean") is not None
    }
    if not rows:
        return []
    extra = present_columns(rows, CANARY_LIRA_COLUMNS)
    lines = table_head(LIRA_HEADER, extra)
    for label, row in rows.items():
        st = row["stats"]
        lines.append(
            _md_row(
                [
                    label,
                    _cell(st["lira_auc"]),
                    _cell(st["lira_tpr1"]),
                    _cell(st["lira_tpr01"]),
                    _cell(st["lira_retain_tpr1"]),
                    _cell(st["mia"]),
                    _cell(st["avg_gap"]),
                    _cell(st["avg_gap_lira"]),
                    *(_cell(st.get(key)) for _, key in extra),
                ]
            )
        )
    lira_nf = (summary.get("noise_floor") or {}).get("lira")
    lines.append("")
    if lira_nf:
        lines.append(
            f"Retrain vs Retrain (seed noise): Avg Gap (LiRA) {_cell(lira_nf['avg_gap_lira'])} "
            f"points; |LiRA AUC difference| {_cell(lira_nf['lira_auc_diff'])}, |TPR@1%FPR "
            f"difference| {_cell(lira_nf['lira_tpr1_diff'])} points."
        )
    for key, subject in (
        ("lira_tpr1", "the forget set"),
        ("lira_canary_tpr1", "the departing client's canaries"),
    ):
        verdict = lira_separation(summary, key=key, subject=subject)
        if verdict:
            lines.append(verdict)
    return lines


def lira_separation(
    summary: Mapping, *, key: str = "lira_tpr1", subject: str = "the forget set"
) -> str | None:
    """Whether the attack tells Original from Retrain on ``subject``, in one sentence.

    It separates them when, in every seed with both, Original's TPR at 1 % FPR exceeds
    Retrain's by more than 2 points (Retrain's expected value is about 1 %, the FPR).
    When it does not, there is nothing for the attack to detect in that scenario: a
    method's low TPR there is no evidence that it forgot.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary.
    key : str, default "lira_tpr1"
        The row key of the TPR at 1 % FPR: ``lira_tpr1`` (the forget set) or
        ``lira_canary_tpr1`` (its canaries against held-out canaries).
    subject : str, default "the forget set"
        What the TPR is measured on, as the sentence names it.

    Returns
    -------
    str or None
        The sentence, or ``None`` without both Original's and Retrain's ``key``.
    """
    methods = summary.get("methods", {})
    orig = (methods.get("Original") or {}).get("per_seed", {})
    ret = (methods.get("Retrain") or {}).get("per_seed", {})
    seeds = [
        s for s in orig if s in ret and orig[s].get(key) is not None and ret[s].get(key) is not None
    ]
    if not seeds:
        return None
    pairs = ", ".join(f"seed {s}: {orig[s][key]:.1f} vs {ret[s][key]:.1f}" for s in seeds)
    if all(orig[s][key] > ret[s][key] + 2.0 for s in seeds):
        return (
            f"Sanity check: LiRA separates Original from Retrain on {subject} "
            f"(TPR@1%FPR, Original vs Retrain: {pairs} %)."
        )
    return (
        f"Sanity check: LiRA does NOT separate Original from Retrain on {subject} "
        f"(TPR@1%FPR, Original vs Retrain: {pairs} %): in this scenario there is nothing "
        f"for the attack to detect, so a method's low TPR here says nothing about how well "
        f"it forgot."
    )


CANARY_HEADER = f"| method | canary p per seed | canary AUC | detected (p < {ALPHA:g}) |"


def _canary_p_values(row: Mapping) -> list[float]:
    """The canary p-values of a report row, in seed order (seeds without one left out)."""
    per_seed = row.get("per_seed", {})
    values = ((per_seed.get(str(s)) or {}).get("canary_p") for s in row.get("seeds", []))
    return [p for p in values if p is not None]


def _detected(p_values: Sequence[float]) -> int:
    """How many of the p-values detect the canaries (``p < ALPHA``)."""
    return sum(p < ALPHA for p in p_values)


def render_canary_table(summary: Mapping) -> list[str]:
    """The departing client's canary test of one scenario; empty when no row has it.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary (:func:`summarize_scenario`).

    Returns
    -------
    list[str]
        Header, separator and one line per row with canary numbers (the p-value of every
        seed, the AUC's mean ± std, in how many seeds the test detects the canaries), then
        an empty line and whether the test separates Original from Retrain
        (:func:`canary_separation`).
    """
    rows = {
        label: p_values
        for label, row in summary["methods"].items()
        if (p_values := _canary_p_values(row))
    }
    if not rows:
        return []
    lines = table_head(CANARY_HEADER)
    for label, p_values in rows.items():
        lines.append(
            _md_row(
                [
                    label,
                    ", ".join(f"{p:.4f}" for p in p_values),
                    _cell(summary["methods"][label]["stats"].get("canary_auc")),
                    f"{_detected(p_values)} of {len(p_values)} seeds",
                ]
            )
        )
    return lines + ["", canary_separation(summary)]


def canary_separation(summary: Mapping) -> str:
    """Whether the canary test tells Original from Retrain, in one sentence.

    It separates them when, in every seed with both, it detects the canaries in Original
    (which trained on them) and not in Retrain (which never saw them). When it does not,
    the test cannot tell a model that kept the canaries from one that never had them in
    that scenario, so a method's result there is no evidence either way.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary.

    Returns
    -------
    str
        The sentence; it says so when no seed has both rows' canary numbers.
    """
    methods = summary.get("methods", {})
    orig = (methods.get("Original") or {}).get("per_seed", {})
    ret = (methods.get("Retrain") or {}).get("per_seed", {})
    seeds = [
        s
        for s in orig
        if s in ret and orig[s].get("canary_p") is not None and ret[s].get("canary_p") is not None
    ]
    if not seeds:
        return (
            "Sanity check not possible: no seed has the canary test of both Original and "
            "Retrain, so it is unknown whether the test can tell them apart here."
        )
    found_orig = _detected([orig[s]["canary_p"] for s in seeds])
    found_ret = _detected([ret[s]["canary_p"] for s in seeds])
    counts = (
        f"detected in Original in {found_orig} of {len(seeds)} seeds, in Retrain in "
        f"{found_ret} of {len(seeds)}"
    )
    if found_orig == len(seeds) and found_ret == 0:
        return (
            f"Sanity check: the canary test separates Original from Retrain ({counts}). "
            "A p-value at or above the threshold is no proof of forgetting, only no evidence "
            "against it."
        )
    return (
        f"Sanity check: the canary test does NOT separate Original from Retrain here "
        f"({counts}): it cannot tell a model that kept the canaries from one that never "
        "saw them, so a method's canary result in this scenario is no evidence either way."
    )


def canary_intro(summary: Mapping) -> str:
    """The line above the canary table: the test, and how many canaries it used.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary.

    Returns
    -------
    str
        The number of in-canaries is named when every row and seed agrees on it.
    """
    counts = {
        row_seed.get("canary_n")
        for row in summary.get("methods", {}).values()
        for row_seed in row.get("per_seed", {}).values()
        if row_seed.get("canary_p") is not None
    }
    count = next(iter(counts)) if len(counts) == 1 else None
    size = "" if count is None else f"{count:g} in-canaries and as many kept out; "
    return (
        f"The departing client's canary test ({size}one-sided permutation test; detected "
        f"when p < {ALPHA:g}):"
    )
