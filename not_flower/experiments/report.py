"""Comparison report: tables, summary statistics and plots from per-run results.

Pure functions over the ``results.json`` dicts the ServerApp writes (no Flower, no torch).
:mod:`not_flower.experiments.compare` runs the simulations and hands this module a list of *run
records*, one per (scenario, seed, method)::

    {"scenario": "backdoor", "seed": 0, "method": "not",          # see METHODS
     "status": "ok" | "resumed" | "failed", "error": str | None,
     "path": "/abs/.../results.json", "seconds": float | None,
     "results": dict | None}                                       # results.json, None if failed

From them this module builds

* ``report.json`` (:func:`build_report`): per scenario, one row per reported method
  ("Original", "Retrain", "FT@K", "NoT@K", and "FT@stop"/"NoT@stop" when the stopping rule
  chose a round; for the baselines PGD, FedEraser and FUKD also "X@0", the model right
  after the method's unlearning step), each metric as mean and std over seeds plus the
  per-seed raw numbers, and per method what it needs (``requirements``: storage kept,
  target data, target participation, server-side data);
* ``report.md`` (:func:`render_markdown`): per scenario, one table in the paper's layout
  and one table of requirements, and, when the runs measured it (``mia.reference-models``),
  a table of the per-example membership attack (LiRA) with its seed-noise floor and
  whether it separates Original from Retrain (:func:`render_lira_table`), and, when a
  target client planted canaries (``canary.clients``), the departing client's canary test
  per row with whether it separates Original from Retrain (:func:`render_canary_table`);
* PNG plots (:func:`plot_scenario`): test accuracy, forget accuracy and (backdoor) ASR per
  round, mean over seeds with a shaded std band.

Units in ``report.json`` and ``report.md``: accuracies, MIA-efficacy, ASR and Avg Gap are
in points (percent); ``mb`` is megabytes (1e6 bytes) sent down plus up during the
unlearning phase; ``client_seconds`` is client compute time of the unlearning phase;
``cost_*_pct`` are percentages of the same seed's Retrain. ``std`` is the sample standard
deviation (``ddof=1``) over seeds; it is ``None`` with fewer than two seeds.

Definitions (as in :mod:`not_flower.evaluation.metrics`): Avg Gap is computed per seed
against the SAME seed's Retrain with :func:`not_flower.evaluation.metrics.avg_gap`, then
averaged over seeds. The noise floor
is the Avg Gap between Retrain runs of different seeds, averaged over all pairs.

This module is the entry point (:func:`write_report`) and keeps the whole public API; the
work is done, one concern each, in :mod:`not_flower.experiments.report_rows` (method lists, units,
one seed's row and its cost), :mod:`not_flower.experiments.report_summary` (rows over seeds, noise
floor, requirements, ``report.json``),
:mod:`not_flower.experiments.report_markdown` (``report.md``),
:mod:`not_flower.experiments.report_membership` (its membership tables)
and :mod:`not_flower.experiments.report_plots` (the PNG plots).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from not_flower.experiments.report_markdown import (
    EXTRA_COLUMNS,
    LEGEND,
    REQUIREMENTS_HEADER,
    SCENARIO_TEXT,
    TABLE_HEADER,
    render_markdown,
    render_noise_floor,
    render_requirements,
    render_scenario,
    render_stopping,
    render_table,
)
from not_flower.experiments.report_membership import (
    CANARY_HEADER,
    CANARY_LIRA_COLUMNS,
    LIRA_HEADER,
    canary_intro,
    canary_separation,
    lira_separation,
    render_canary_table,
    render_lira_table,
)
from not_flower.experiments.report_plots import PLOTS, plot_scenario, round_series
from not_flower.experiments.report_rows import (
    DEFAULT_REQUIREMENTS,
    METHOD_NAMES,
    METHODS,
    RECOVERY_METHODS,
    ROW_KEYS,
    STEP_METHODS,
    UNITS,
    _finite,
    mean_std,
    recovery_ks,
    row_label,
    seed_row,
    unlearning_cost,
)
from not_flower.experiments.report_summary import (
    build_report,
    noise_floor,
    requirements,
    summarize_scenario,
)

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "RECOVERY_METHODS",
    "STEP_METHODS",
    "DEFAULT_REQUIREMENTS",
    "requirements",
    "render_requirements",
    "ROW_KEYS",
    "UNITS",
    "mean_std",
    "row_label",
    "recovery_ks",
    "unlearning_cost",
    "seed_row",
    "summarize_scenario",
    "noise_floor",
    "build_report",
    "render_markdown",
    "round_series",
    "plot_scenario",
    "write_report",
    "EXTRA_COLUMNS",
    "LEGEND",
    "LIRA_HEADER",
    "PLOTS",
    "REQUIREMENTS_HEADER",
    "SCENARIO_TEXT",
    "TABLE_HEADER",
    "lira_separation",
    "render_lira_table",
    "CANARY_HEADER",
    "CANARY_LIRA_COLUMNS",
    "canary_intro",
    "canary_separation",
    "render_canary_table",
    "render_noise_floor",
    "render_scenario",
    "render_stopping",
    "render_table",
]


def write_report(
    runs: Sequence[Mapping],
    out_dir: str | Path,
    *,
    command: str = "",
    settings: Mapping | None = None,
    ks: Sequence[int] | None = None,
) -> dict:
    """Write ``report.json``, ``report.md`` and the plots to ``out_dir``.

    Parameters
    ----------
    runs : sequence of Mapping
        Run records (see the module docstring).
    out_dir : str or Path
        Output folder.
    command : str
        Command line recorded in both reports.
    settings : Mapping, optional
        Settings recorded in ``report.json``.
    ks : sequence of int, optional
        Recovery lengths reported for FT and NoT.

    Returns
    -------
    dict
        The report (as in ``report.json``), with ``"plots"``: scenario -> file names.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(runs, command=command, settings=settings, ks=ks)
    plots = {s: [p.name for p in plot_scenario(runs, s, out_dir)] for s in report["scenarios"]}
    report["plots"] = plots
    _atomic_write(out_dir / "report.json", json.dumps(_jsonable(report), indent=2) + "\n")
    _atomic_write(out_dir / "report.md", render_markdown(report, plots))
    return report


def _jsonable(value):
    """JSON-safe copy: NaN/inf become ``None``, numpy scalars plain numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite(value)
    return value


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (mode 0o666 less umask)."""
    from not_flower.common.store import (
        atomic_write_bytes,  # here: importing report needs no torch or Flower
    )

    atomic_write_bytes(path, text.encode("utf-8"), mode=0o666)
