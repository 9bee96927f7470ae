"""Markdown of the comparison report: the tables and text of ``report.md``.

Pure functions over what :func:`not_flower.experiments.report_summary.build_report` returns: per
scenario the table in the paper's layout (:func:`render_table`), the requirements table
(:func:`render_requirements`), the membership evidence
(:mod:`not_flower.experiments.report_membership`), the seed-noise floor, the stopping rule's
choices and the failed runs (:func:`render_markdown`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from not_flower.experiments.report_cells import (
    _cell,
    _cost_cell,
    _md_row,
    _rounds_cell,
    present_columns,
    table_head,
)
from not_flower.experiments.report_membership import (
    canary_intro,
    render_canary_table,
    render_lira_table,
)
from not_flower.experiments.report_rows import _finite

TABLE_HEADER = (
    "| method | retain | forget | test | MIA | ASR | Avg Gap | rounds | MB | "
    "client-s | cost vs Retrain |"
)
#: Columns added to a scenario's table when any of its rows has the number (class-wise).
EXTRA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("forgotten classes (test)", "forgotten_classes"),
    ("other classes (test)", "other_classes"),
)


def render_table(summary: Mapping) -> list[str]:
    """Markdown table lines of one scenario (see :func:`summarize_scenario`).

    Parameters
    ----------
    summary : Mapping
        One scenario's summary.

    Returns
    -------
    list[str]
        Header, separator and one line per row.
    """
    rows = summary["methods"]
    extra = present_columns(rows, EXTRA_COLUMNS)
    lines = table_head(TABLE_HEADER, extra)
    for label, row in rows.items():
        st = row["stats"]
        lines.append(
            _md_row(
                [
                    label,
                    _cell(st["retain"]),
                    _cell(st["forget"]),
                    _cell(st["test"]),
                    _cell(st["mia"]),
                    _cell(st["asr"]),
                    _cell(st["avg_gap"]),
                    _rounds_cell(st["rounds"]),
                    _cell(st["mb"]),
                    _cell(st["client_seconds"], 1),
                    _cost_cell(st),
                    *(_cell(st.get(key)) for _, key in extra),
                ]
            )
        )
    return lines


REQUIREMENTS_HEADER = (
    "| method | storage kept (MB) | target data | target participation | "
    "server-side data | server-s |"
)


def _or_none(value):
    """The value, or ``"none"`` for None."""
    return "none" if value is None else value


def _yes_no(value) -> str:
    return "–" if value is None else ("yes" if value else "no")


def render_requirements(requirements_: Mapping) -> list[str]:
    """Markdown lines of the requirements table (see :func:`requirements`).

    Parameters
    ----------
    requirements_ : Mapping
        One scenario's ``requirements``.

    Returns
    -------
    list[str]
        Header, separator and one line per method.
    """
    lines = table_head(REQUIREMENTS_HEADER)
    for name, req in requirements_.items():
        mb = req.get("storage_mb") or {}
        storage = "–" if mb.get("mean") is None else (_cell(mb, 3) if mb["mean"] else "0")
        if mb.get("mean") and req.get("storage") not in (None, "none"):
            storage += f" ({req['storage']})"
        lines.append(
            _md_row(
                [
                    name,
                    storage,
                    _yes_no(req.get("target_data")),
                    _yes_no(req.get("target_participation")),
                    _yes_no(req.get("server_data")),
                    _cell(req.get("server_seconds"), 1),
                ]
            )
        )
    return lines


#: What each comparison scenario is (printed under its heading in report.md).
SCENARIO_TEXT: dict[str, str] = {
    "iid": "Client-wise: IID partition; the target client is forgotten.",
    "dirichlet": "Client-wise: Dirichlet label-skewed partition; the target client is forgotten.",
    "backdoor": "Client-wise: IID; the target client planted a backdoor trigger on part of "
    "its samples; the target client is forgotten. ASR = share of triggered "
    "test images (true label not the backdoor's) classified as the backdoor "
    "label.",
    "backdoor-dirichlet": "Client-wise: Dirichlet label-skewed partition; the target client "
    "planted a backdoor trigger on part of its samples; the target client is forgotten. ASR "
    "as in the backdoor scenario.",
    "mislabel": "Client-wise: IID; 30 % of the target client's samples carry a wrong label "
    "drawn at random among the other classes (data no other client covers, which a model "
    "fits only by memorising it); the target client is forgotten. forget = accuracy on "
    "its samples with their labels as it holds them.",
    "style": "Client-wise: IID; every image of the target client is inverted (1 - pixel "
    "value, labels kept), a style no other client has; the target client is forgotten. "
    "forget = accuracy on its inverted images.",
    "memorise": "Client-wise: IID; every image of the target client is inverted (a style "
    "no other client has) and 30 % of them carry a wrong label drawn among the other "
    "classes: samples a model fits only by memorising them, where nothing else in the "
    "federation contradicts them; the target client is forgotten. forget = accuracy on "
    "its samples as it holds them.",
    "canary": "Client-wise: IID; the target client adds canaries to its training data "
    "(`canary.count`, 32 unless set: images of random black-and-white pixels, each with a "
    "random label), samples nothing else in the federation resembles, which a model fits "
    "only by memorising them; the target client is forgotten. LiRA is also reported on "
    "the canaries alone, against held-out canaries drawn the same way (canary LiRA).",
    "class": "Class-wise: the forgotten class(es) are removed from the clients' data "
    "after the request (every client keeps training on its other classes); "
    "forget = accuracy on the forgotten classes' training samples; Retrain = "
    "FedAvg from scratch without them.",
    "instance": "Instance-wise: the backdoor client asks to forget exactly its poisoned "
    "samples and keeps training on its clean ones; forget = accuracy on the "
    "forgotten samples with their poisoned labels; Retrain = FedAvg from "
    "scratch without them.",
}


#: The paragraph under the title of report.md: what the cells, rows and columns mean.
LEGEND = (
    "Cells: mean ± std over seeds (sample std), in % except Avg Gap (points), rounds, "
    "MB (1e6 bytes down + up) and client-s (client CPU seconds) of the unlearning "
    "phase. Avg Gap = mean |x − Retrain| over retain/forget/test/MIA, per seed against "
    "the same seed's Retrain. Cost vs Retrain = rounds / MB / client-seconds as % of the "
    "same seed's Retrain. Original = the global model before unlearning (no "
    "unlearning cost). X@K = method X after K recovery rounds; X@stop = the round the "
    "stopping rule chose (retained clients' validation accuracy only). For the "
    "baselines (PGD, FedEraser, FUKD), X@0 = the model right after the method's own "
    "unlearning step (PGD's ascent, FedEraser's calibrated rebuild, FUKD's subtraction "
    "and distillation), and rounds include the step's communication rounds. "
    "Requirements table: storage kept = peak MB of history the method kept beyond the "
    "global model (measured on the arrays or files it kept; mean over seeds); target "
    "data / target participation / server-side data = whether the method needs the "
    "forgotten client's data, its work, or data held by the server; server-s = server "
    "compute seconds of the whole unlearning phase."
)


def render_noise_floor(summary: Mapping) -> str:
    """The sentence on the seed-noise floor of one scenario (Retrain vs Retrain).

    Parameters
    ----------
    summary : Mapping
        One scenario's summary.

    Returns
    -------
    str
        The Avg Gap between Retrain seeds, or why it is not available.
    """
    nf = summary.get("noise_floor", {})
    if nf.get("mean") is not None:
        return (
            f"Retrain vs Retrain (seed noise): Avg Gap {_cell(nf)} points over "
            f"{nf['n']} pair(s) of seeds. An Avg Gap at or below this is "
            "indistinguishable from retraining."
        )
    return (
        "Retrain vs Retrain (seed noise): needs Retrain runs of at least two seeds; not available."
    )


def render_stopping(summary: Mapping) -> list[str]:
    """Lines on the rounds the stopping rule chose, per method of one scenario.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary.

    Returns
    -------
    list[str]
        For each method with a stopping rule, an empty line then its sentence.
    """
    out = []
    for name, per_seed in summary.get("stopping", {}).items():
        first = next(iter(per_seed.values()))
        chosen = ", ".join(
            f"seed {s}: {_or_none(v.get('chosen_recovery_rounds'))}" for s, v in per_seed.items()
        )
        out.append("")
        tol = _finite(first.get("tolerance"))
        tol_text = "?" if tol is None else f"{100 * tol:g} points"
        out.append(
            f"Stopping rule for {name} ({first.get('rule', '?')}; tolerance {tol_text}, "
            f"cap {first.get('cap', '?')} rounds): recovery rounds chosen: {chosen} "
            "(none = never within tolerance, the cap applies)."
        )
    return out


#: The Original's ASR must exceed Retrain's by this many points for ASR to show forgetting.
BACKDOOR_LEARNED_MARGIN = 20.0


def backdoor_not_learned(summary: Mapping, margin: float = BACKDOOR_LEARNED_MARGIN) -> list[str]:
    """A warning for the seeds whose Original never learned the backdoor.

    Where the model trained with the target client has an attack success rate within
    ``margin`` points of Retrain's (which never saw the trigger), ASR cannot show that
    anything was forgotten in that seed.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary (rows ``Original`` and ``Retrain`` with ``per_seed``).
    margin : float (default: BACKDOOR_LEARNED_MARGIN)
        Points of ASR by which the Original must lead Retrain.

    Returns
    -------
    list[str]
        One warning paragraph (then an empty line), or nothing.
    """
    rows = summary.get("methods", {})
    original = (rows.get("Original") or {}).get("per_seed", {})
    retrain = (rows.get("Retrain") or {}).get("per_seed", {})
    weak = []
    for seed, row in original.items():
        asr, ref = row.get("asr"), (retrain.get(seed) or {}).get("asr")
        if asr is not None and asr - (ref if ref is not None else 0.0) < margin:
            ref_text = f", Retrain {ref:.2f} %" if ref is not None else ""
            weak.append(f"seed {seed} (Original {asr:.2f} %{ref_text})")
    if not weak:
        return []
    return [
        f"**Warning: the Original never learned the backdoor** in {'; '.join(weak)}: "
        f"its ASR is less than {margin:g} points above Retrain's, so ASR cannot show "
        "forgetting there (train longer, or use a larger trigger or poisoned "
        "fraction).",
        "",
    ]


def _failed_runs(report: Mapping, scenario: str) -> list[str]:
    """Lines listing the failed runs of a scenario; empty without any."""
    missing = [
        r
        for r in report.get("runs", [])
        if r["scenario"] == scenario and r.get("status") == "failed"
    ]
    if not missing:
        return []
    return ["", "Failed runs (left out of the table):", ""] + [
        f"- seed {r['seed']} {r['method']}: {r.get('error') or 'unknown error'}" for r in missing
    ]


def render_scenario(
    report: Mapping,
    scenario: str,
    plots: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """The section of ``report.md`` for one scenario.

    Parameters
    ----------
    report : Mapping
        What :func:`not_flower.experiments.report_summary.build_report` returned.
    scenario : str
        One of ``report["scenarios"]``.
    plots : Mapping[str, sequence of str], optional
        Scenario -> plot file names (relative to ``report.md``) to link.

    Returns
    -------
    list[str]
        Heading, description, seeds, tables, noise floor, stopping rule, failed runs and
        plot links, ending with an empty line.
    """
    summary = report["scenarios"][scenario]
    seeds = summary.get("seeds", [])
    out = [f"## {scenario}", ""]
    if scenario in SCENARIO_TEXT:
        out += [SCENARIO_TEXT[scenario], ""]
    out += [f"Seeds: {', '.join(map(str, seeds)) or 'none'}", ""]
    if summary["methods"]:
        out += render_table(summary)
    else:
        out.append("No successful runs.")
    out.append("")
    out += backdoor_not_learned(summary)
    if summary.get("requirements"):
        out += render_requirements(summary["requirements"]) + [""]
    lira = render_lira_table(summary)
    if lira:
        out += (
            [
                "Per-example membership inference (LiRA, online, against the forget set; "
                "non-members = the held-out set, weighted to the forget set's make-up):",
                "",
            ]
            + lira
            + [""]
        )
    canary = render_canary_table(summary)
    if canary:
        out += [canary_intro(summary), ""] + canary + [""]
    out.append(render_noise_floor(summary))
    out += render_stopping(summary)
    out += _failed_runs(report, scenario)
    for name in (plots or {}).get(scenario, []):
        out += ["", f"![{name}]({name})"]
    out.append("")
    return out


def render_markdown(report: Mapping, plots: Mapping[str, Sequence[str]] | None = None) -> str:
    """``report.md``: the command, then a table, noise floor and notes per scenario.

    Parameters
    ----------
    report : Mapping
        What :func:`not_flower.experiments.report_summary.build_report` returned.
    plots : Mapping[str, sequence of str], optional
        Scenario -> plot file names (relative to ``report.md``) to link.

    Returns
    -------
    str
        The Markdown text.
    """
    out = ["# not-flower comparison", ""]
    if report.get("command"):
        out += ["Produced by:", "", "```", report["command"], "```", ""]
    out += [LEGEND, ""]
    for scenario in report.get("scenarios", {}):
        out += render_scenario(report, scenario, plots)
    return "\n".join(out).rstrip() + "\n"
