"""Comparison report: tables, summary statistics and plots from per-run results.

Pure functions over the ``results.json`` dicts the ServerApp writes (no Flower, no torch).
:mod:`not_flower.compare` runs the simulations and hands this module a list of *run
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
  and one table of requirements, and, when the runs measured it (``mia-reference-models``),
  a table of the per-example membership attack (LiRA) with its seed-noise floor and
  whether it separates Original from Retrain (:func:`render_lira_table`);
* PNG plots (:func:`plot_scenario`): test accuracy, forget accuracy and (backdoor) ASR per
  round, mean over seeds with a shaded std band.

Units in ``report.json`` and ``report.md``: accuracies, MIA-efficacy, ASR and Avg Gap are
in points (percent); ``mb`` is megabytes (1e6 bytes) sent down plus up during the
unlearning phase; ``client_seconds`` is client compute time of the unlearning phase;
``cost_*_pct`` are percentages of the same seed's Retrain. ``std`` is the sample standard
deviation (``ddof=1``) over seeds; it is ``None`` with fewer than two seeds.

Definitions (as in :mod:`not_flower.metrics`): Avg Gap is computed per seed against the SAME seed's
Retrain with :func:`not_flower.metrics.avg_gap`, then averaged over seeds. The noise floor
is the Avg Gap between Retrain runs of different seeds, averaged over all pairs.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .methods import REGISTRY, REPORT_ORDER
from .metrics import GAP_KEYS, GAP_KEYS_LIRA, avg_gap

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
]

#: Methods a run can use, in the order the report lists them (from the method registry,
#: :mod:`not_flower.methods`).
METHODS: tuple[str, ...] = REPORT_ORDER
#: Display names of the methods.
METHOD_NAMES: dict[str, str] = {m: REGISTRY[m].label for m in METHODS}
#: Methods that train, unlearn, then recover (rows "X@K"; "Original" comes from them).
RECOVERY_METHODS: tuple[str, ...] = tuple(m for m in METHODS if REGISTRY[m].recovers)
#: Baselines with an unlearning step whose output is reported on its own ("X@0").
STEP_METHODS: tuple[str, ...] = tuple(m for m in METHODS if REGISTRY[m].baseline)
#: What each method needs, for results.json files that do not say (older runs).
DEFAULT_REQUIREMENTS: dict[str, dict] = {m: dict(REGISTRY[m].requirements) for m in METHODS}
#: Per-seed numbers of a report row, in table order.
ROW_KEYS: tuple[str, ...] = (
    "retain", "forget", "test", "mia", "asr", "avg_gap",
    "rounds", "mb", "client_seconds",
    "cost_rounds_pct", "cost_mb_pct", "cost_client_seconds_pct",
    "mia_loss_auc", "stopping_round", "forgotten_classes", "other_classes",
    "lira_auc", "lira_tpr1", "lira_tpr01", "lira_retain_tpr1", "avg_gap_lira",
)
UNITS: dict[str, str] = {
    "retain": "% retain-set accuracy",
    "forget": "% forget-set accuracy",
    "test": "% test accuracy",
    "mia": "% MIA-efficacy (share of forget samples predicted non-member)",
    "asr": "% attack success rate of the backdoor (backdoor scenario only)",
    "avg_gap": "points: mean |x - Retrain| over retain/forget/test/MIA, per seed vs the same seed's Retrain",
    "rounds": "communication rounds of the unlearning phase (recovery for FT/NoT and the "
              "baselines, retraining for Retrain, plus the rounds of a baseline's unlearning "
              "step: PGD's ascent, FedEraser's calibration)",
    "mb": "MB (1e6 bytes) sent down + up during the unlearning phase",
    "client_seconds": "client CPU seconds (process time of local training) during the unlearning phase",
    "cost_rounds_pct": "% of the same seed's Retrain rounds",
    "cost_mb_pct": "% of the same seed's Retrain MB",
    "cost_client_seconds_pct": "% of the same seed's Retrain client-seconds",
    "mia_loss_auc": "% ROC AUC of the loss-threshold membership attack on the forget set",
    "stopping_round": "recovery round the stopping rule chose (None: never within tolerance)",
    "forgotten_classes": "% test accuracy on the forgotten class(es) (class scenario only)",
    "other_classes": "% test accuracy on the other classes (class scenario only)",
    "lira_auc": "% ROC AUC of the per-example attack (LiRA) on the forget set against the "
                "held-out test samples",
    "lira_tpr1": "% of forget samples LiRA calls members at the threshold that calls 1 % of "
                 "the held-out samples members (TPR at 1 % FPR)",
    "lira_tpr01": "% TPR at 0.1 % FPR (resolved to 1/N held-out samples)",
    "lira_retain_tpr1": "% of retain samples (trained on by every model but Original's "
                        "target) LiRA calls members at the 1 % FPR threshold",
    "avg_gap_lira": "points: mean |x - Retrain| over retain/forget/test accuracy and LiRA "
                    "AUC, per seed vs the same seed's Retrain",
}
_SCALE_TO_POINTS = {
    "retain": "retain_acc", "forget": "forget_acc", "test": "test_acc",
    "mia": "mia_efficacy", "asr": "asr", "mia_loss_auc": "mia_loss_auc",
    "forgotten_classes": "forgotten_classes_test_acc", "other_classes": "other_classes_test_acc",
    "lira_auc": "lira_auc", "lira_tpr1": "lira_tpr_fpr1", "lira_tpr01": "lira_tpr_fpr01",
    "lira_retain_tpr1": "lira_retain_tpr_fpr1",
}


# --------------------------------------------------------------------------- #
# small helpers
# --------------------------------------------------------------------------- #
def _finite(value) -> float | None:
    """``float(value)`` if it is a finite number, else ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def mean_std(values: Iterable) -> dict:
    """Mean and sample standard deviation of the finite values.

    Parameters
    ----------
    values : iterable
        Numbers; ``None`` and NaN/inf are ignored.

    Returns
    -------
    dict
        ``{"mean": float | None, "std": float | None, "n": int}``: ``mean`` is ``None``
        without values, ``std`` (``ddof=1``) is ``None`` with fewer than two.
    """
    vals = [v for v in (_finite(x) for x in values) if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    arr = np.asarray(vals, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size >= 2 else None
    return {"mean": float(arr.mean()), "std": std, "n": int(arr.size)}


def row_label(method: str, k: int | str | None = None) -> str:
    """Report name of a row: ``"Retrain"``, ``"NoT@10"``, ``"FT@stop"``, ``"Original"``.

    Parameters
    ----------
    method : str
        ``"original"`` or one of :data:`METHODS`.
    k : int or str, optional
        Recovery rounds (or ``"stop"``) for :data:`RECOVERY_METHODS` (``0``: the model
        right after a baseline's unlearning step); must be ``None`` otherwise.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For an unknown method, or ``k`` missing for FT/NoT or given for the others.
    """
    if method == "original":
        name = "Original"
    elif method in METHOD_NAMES:
        name = METHOD_NAMES[method]
    else:
        raise ValueError(f"unknown method {method!r}; choose one of: original, {', '.join(METHODS)}")
    if method in RECOVERY_METHODS:
        if k is None:
            raise ValueError(f"method {method!r} needs k (recovery rounds or 'stop')")
        return f"{name}@{k}"
    if k is not None:
        raise ValueError(f"method {method!r} takes no k, got {k!r}")
    return name


def recovery_ks(results: Mapping) -> list[int]:
    """Recovery lengths K with metrics ``models["recovered@K"]`` in a results dict.

    Parameters
    ----------
    results : Mapping
        A ``results.json`` dict.

    Returns
    -------
    list[int]
        Sorted K values.
    """
    ks = set()
    for name in results.get("models", {}):
        if name.startswith("recovered@"):
            try:
                ks.add(int(name.split("@", 1)[1]))
            except ValueError:
                continue
    return sorted(ks)


def _phase_rounds(results: Mapping, phases: Sequence[str]) -> list[dict]:
    rows = [r for r in results.get("rounds", []) if r.get("phase") in phases]
    return sorted(rows, key=lambda r: r.get("round", 0))


def _sum_rows(rows: Sequence[Mapping]) -> dict | None:
    """Rounds, bytes and client-seconds summed over round rows (None if any is missing)."""
    total = {"rounds": len(rows), "bytes_down": 0.0, "bytes_up": 0.0, "client_seconds": 0.0,
             "extra_rounds": float(sum(_finite(r.get("extra_rounds")) or 0 for r in rows))}
    for r in rows:
        for key in ("bytes_down", "bytes_up", "client_seconds"):
            v = _finite(r.get(key))
            if v is None:
                return None
            total[key] += v
    return total


def unlearning_cost(results: Mapping, k: int | None = None) -> dict | None:
    """Cost of the unlearning phase of a run, optionally of its first ``k`` recovery rounds.

    ``results["costs"]["unlearning"]`` is used when it covers exactly the rounds asked for
    (``k`` is ``None``, or equal to its ``rounds``); otherwise the per-round rows of phase
    ``"recovery"`` are summed over the first ``k`` of them.

    Parameters
    ----------
    results : Mapping
        A ``results.json`` dict.
    k : int, optional
        Number of recovery rounds (FT/NoT at K); ``None`` for the method's own phase.

    Returns
    -------
    dict or None
        ``{"rounds", "bytes_down", "bytes_up", "client_seconds", "extra_rounds"}``
        (``extra_rounds``: communication rounds of a baseline's unlearning step), or
        ``None`` when the results do not hold the numbers (an older results.json, or
        fewer than ``k`` recovery rounds recorded). ``k = 0``: the unlearning step alone
        (``costs["unlearning_step"]``).
    """
    if k == 0:
        step = (results.get("costs") or {}).get("unlearning_step")
        if step is None:
            return None
        out = {"rounds": 0.0, "extra_rounds": _finite(step.get("rounds")) or 0.0,
               **{key: _finite(step.get(key)) for key in ("bytes_down", "bytes_up",
                                                          "client_seconds")}}
        return out if all(v is not None for v in out.values()) else None
    costs = (results.get("costs") or {}).get("unlearning")
    if costs is not None and (k is None or _finite(costs.get("rounds")) == k):
        out = {key: _finite(costs.get(key)) for key in ("rounds", "bytes_down", "bytes_up", "client_seconds")}
        if all(v is not None for v in out.values()):
            out["extra_rounds"] = _finite(costs.get("extra_rounds")) or 0.0
            return out
    if k is None:
        phase = ("retrain",) if results.get("method") == "retrain" else ("recovery",)
        return _sum_rows(_phase_rounds(results, phase)) if _phase_rounds(results, phase) else None
    rows = _phase_rounds(results, ("recovery",))
    if len(rows) < k:
        return None
    return _sum_rows(rows[:k])


def _metrics_for(results: Mapping, k: int | str | None) -> Mapping | None:
    """The model metrics a row reports (see :func:`seed_row`)."""
    models = results.get("models", {})
    if k is None:  # Retrain
        name = results.get("final") or ("retrained" if "retrained" in models else "recovered")
        return models.get(name)
    if k == "original":
        return models.get("original")
    if k == 0:  # a baseline's model right after its unlearning step
        return models.get("unlearned")
    if k == "stop":
        # the model the stopping rule chose; the fixed-length model if it never fired
        if (results.get("stopping") or {}).get("chosen_round") is not None:
            return models.get("stopped")
        return models.get(results.get("final") or "recovered")
    key = f"recovered@{k}"
    if key in models:
        return models[key]
    # older results.json without per-K metrics: the final model, if it is K rounds long
    stop = (results.get("stopping") or {}).get("chosen_recovery_rounds")
    rounds = _finite((results.get("config") or {}).get("recovery-rounds"))
    if "recovered" in models and rounds == k and (stop is None or stop == k):
        return models["recovered"]
    return None


def seed_row(
    results: Mapping,
    retrain: Mapping | None,
    k: int | str | None = None,
) -> dict | None:
    """Per-seed numbers of one report row.

    Parameters
    ----------
    results : Mapping
        The run's ``results.json`` dict.
    retrain : Mapping or None
        The same seed's Retrain ``results.json`` (for Avg Gap and cost shares); ``None``
        leaves those ``None``.
    k : int, "stop", "original" or None
        Which model of the run: ``None`` the method's output (Retrain), an int ``K`` the
        model after ``K`` recovery rounds (``models["recovered@K"]``), ``"stop"`` the model
        the stopping rule chose (``models["stopped"]``, or the final fixed-length model
        when the rule never fired), ``"original"`` the pre-unlearning model.

    Returns
    -------
    dict or None
        Keys :data:`ROW_KEYS` (values in the units of :data:`UNITS`, ``None`` where not
        available), or ``None`` if the run has no such model.
    """
    m = _metrics_for(results, k)
    if m is None:
        return None
    row: dict = {key: None for key in ROW_KEYS}
    for key, src in _SCALE_TO_POINTS.items():
        v = _finite(m.get(src))
        row[key] = None if v is None else 100.0 * v
    ref = _metrics_for(retrain, None) if retrain is not None else None
    if ref is not None:
        try:
            row["avg_gap"] = avg_gap(m, ref, GAP_KEYS)
        except ValueError:
            row["avg_gap"] = None
        if "lira_auc" in m and "lira_auc" in ref:
            row["avg_gap_lira"] = avg_gap(m, ref, GAP_KEYS_LIRA)
    if k == "original":
        return row  # no unlearning: no unlearning cost
    if k == "stop":
        cost = unlearning_cost(results, None)
        stopping = results.get("stopping") or {}
        row["stopping_round"] = stopping.get("chosen_recovery_rounds")
    else:
        cost = unlearning_cost(results, k if isinstance(k, int) else None)
    if cost is not None:
        row["rounds"] = cost["rounds"] + cost.get("extra_rounds", 0.0)
        row["mb"] = (cost["bytes_down"] + cost["bytes_up"]) / 1e6
        row["client_seconds"] = cost["client_seconds"]
    elif isinstance(k, int):
        row["rounds"] = float(k)
    ref_cost = unlearning_cost(retrain, None) if retrain is not None else None
    if ref_cost is not None:
        ref_mb = (ref_cost["bytes_down"] + ref_cost["bytes_up"]) / 1e6
        for key, mine, theirs in (("cost_rounds_pct", row["rounds"],
                                   ref_cost["rounds"] + ref_cost.get("extra_rounds", 0.0)),
                                  ("cost_mb_pct", row["mb"], ref_mb),
                                  ("cost_client_seconds_pct", row["client_seconds"],
                                   ref_cost["client_seconds"])):
            if mine is not None and theirs:
                row[key] = 100.0 * mine / theirs
    return row


# --------------------------------------------------------------------------- #
# summaries
# --------------------------------------------------------------------------- #
def _ok(run: Mapping) -> bool:
    return run.get("status") in ("ok", "resumed") and run.get("results") is not None


def _by_seed(runs: Iterable[Mapping], scenario: str, method: str) -> dict[int, Mapping]:
    return {int(r["seed"]): r["results"] for r in runs
            if r["scenario"] == scenario and r["method"] == method and _ok(r)}


def noise_floor(retrains: Mapping[int, Mapping]) -> dict:
    """Avg Gap between Retrain runs of different seeds (the seed-noise floor).

    Parameters
    ----------
    retrains : Mapping[int, Mapping]
        Seed -> Retrain ``results.json`` dict.

    Returns
    -------
    dict
        ``{"mean", "std", "n"}`` over all pairs of seeds plus ``"pairs"``: a list of
        ``{"seeds": [a, b], "avg_gap": float}``. ``mean`` is ``None`` with fewer than two
        Retrain runs.
    """
    pairs = []
    for a, b in itertools.combinations(sorted(retrains), 2):
        ma, mb = _metrics_for(retrains[a], None), _metrics_for(retrains[b], None)
        if ma is None or mb is None:
            continue
        try:
            pair = {"seeds": [a, b], "avg_gap": avg_gap(ma, mb, GAP_KEYS)}
        except ValueError:
            continue
        if "lira_auc" in ma and "lira_auc" in mb:
            pair["avg_gap_lira"] = avg_gap(ma, mb, GAP_KEYS_LIRA)
            for key, src in (("lira_auc", "lira_auc"), ("lira_tpr1", "lira_tpr_fpr1")):
                pair[f"{key}_diff"] = 100.0 * abs(float(ma[src]) - float(mb[src]))
        pairs.append(pair)
    out = {**mean_std(p["avg_gap"] for p in pairs), "pairs": pairs}
    lira = [p for p in pairs if "avg_gap_lira" in p]
    if lira:  # the per-example attack's own seed noise, and the second gap's
        out["lira"] = {key: mean_std(p[key] for p in lira)
                       for key in ("avg_gap_lira", "lira_auc_diff", "lira_tpr1_diff")}
    return out


def _stats(per_seed: Mapping[int, Mapping]) -> dict:
    return {key: mean_std(row[key] for row in per_seed.values()) for key in ROW_KEYS}


def summarize_scenario(
    runs: Sequence[Mapping],
    scenario: str,
    ks: Sequence[int] | None = None,
) -> dict:
    """Rows of one scenario's table.

    Parameters
    ----------
    runs : sequence of Mapping
        Run records (see the module docstring); failed runs are skipped.
    scenario : str
        Scenario to summarize.
    ks : sequence of int, optional
        Recovery lengths to report for FT and NoT; by default every ``recovered@K`` found.

    Returns
    -------
    dict
        ``{"seeds": [...], "methods": {label: {"method", "k", "seeds", "stats",
        "per_seed"}}, "noise_floor": {...}, "stopping": {label: {...}}}``: ``stats`` maps
        each of :data:`ROW_KEYS` to :func:`mean_std`, ``per_seed`` maps the seed (as a
        string) to the raw numbers.
    """
    retrains = _by_seed(runs, scenario, "retrain")
    seeds = sorted({int(r["seed"]) for r in runs if r["scenario"] == scenario})
    unlearners = {m: _by_seed(runs, scenario, m) for m in RECOVERY_METHODS}
    if ks is None:
        ks = sorted({k for res in itertools.chain(*(u.values() for u in unlearners.values()))
                     for k in recovery_ks(res)})
    ks = sorted(set(int(k) for k in ks))

    rows: list[tuple[str, str, int | str | None, dict[int, Mapping]]] = []
    # Original: the pre-unlearning model of the first recovery method that ran for the
    # seed, in RECOVERY_METHODS order (FT's, else NoT's, ...). Their training is the same
    # FedAvg training, but two runs of it in Ray's simulation can differ slightly (measured;
    # the cause is not pinned down), so the row is one run's, not an average of several.
    originals = {}
    for method in reversed(RECOVERY_METHODS):
        originals.update(unlearners[method])
    rows.append(("Original", "original", "original", originals))
    rows.append(("Retrain", "retrain", None, retrains))
    for method in RECOVERY_METHODS:
        by_seed = unlearners[method]
        if not by_seed:
            continue
        if method in STEP_METHODS and any("unlearned" in res.get("models", {})
                                          for res in by_seed.values()):
            rows.append((row_label(method, 0), method, 0, by_seed))
        for k in ks:
            rows.append((row_label(method, k), method, k, by_seed))
        if any((res.get("stopping") or {}).get("chosen_recovery_rounds") is not None
               for res in by_seed.values()):
            rows.append((row_label(method, "stop"), method, "stop", by_seed))

    methods: dict = {}
    stopping: dict = {}
    for label, method, k, by_seed in rows:
        per_seed = {}
        for seed, res in sorted(by_seed.items()):
            row = seed_row(res, retrains.get(seed), k)
            if row is not None:
                per_seed[seed] = row
        if not per_seed:
            continue
        methods[label] = {
            "method": method,
            "k": k if k is not None and k != "original" else None,
            "seeds": sorted(per_seed),
            "stats": _stats(per_seed),
            "per_seed": {str(s): r for s, r in per_seed.items()},
        }
    for method in RECOVERY_METHODS:
        info = {str(s): res["stopping"] for s, res in sorted(unlearners[method].items())
                if res.get("stopping")}
        if info:
            stopping[METHOD_NAMES[method]] = info
    return {
        "seeds": seeds,
        "methods": methods,
        "noise_floor": noise_floor(retrains),
        "stopping": stopping,
        "requirements": requirements(runs, scenario),
    }


def requirements(runs: Sequence[Mapping], scenario: str) -> dict:
    """What each method of a scenario needs, with the storage it actually kept.

    Parameters
    ----------
    runs : sequence of Mapping
        Run records; failed runs are skipped.
    scenario : str
        Scenario to summarize.

    Returns
    -------
    dict
        Display name -> ``{"method", "storage", "target_data", "target_participation",
        "server_data", "storage_mb": mean_std, "server_seconds": mean_std}``:
        ``storage_mb`` is ``costs["storage_bytes"]`` (the peak bytes of history the run
        kept, measured) in MB, ``server_seconds`` the server compute of the whole
        unlearning phase (``costs["unlearning_fixed_length"]``, else ``["unlearning"]``).
    """
    out: dict = {}
    for method in METHODS:
        by_seed = _by_seed(runs, scenario, method)
        if not by_seed:
            continue
        declared = next((res["requirements"] for res in by_seed.values()
                         if isinstance(res.get("requirements"), Mapping)),
                        DEFAULT_REQUIREMENTS[method])
        storage, seconds = [], []
        for res in by_seed.values():
            costs = res.get("costs") or {}
            b = _finite(costs.get("storage_bytes"))
            storage.append(None if b is None else b / 1e6)
            phase = costs.get("unlearning_fixed_length") or costs.get("unlearning") or {}
            seconds.append(_finite(phase.get("server_seconds")))
        out[METHOD_NAMES[method]] = {
            "method": method,
            **{key: declared.get(key) for key in ("storage", "target_data",
                                                   "target_participation", "server_data")},
            "storage_mb": mean_std(storage),
            "server_seconds": mean_std(seconds),
        }
    return out


def build_report(
    runs: Sequence[Mapping],
    *,
    command: str = "",
    settings: Mapping | None = None,
    ks: Sequence[int] | None = None,
) -> dict:
    """The content of ``report.json``.

    Parameters
    ----------
    runs : sequence of Mapping
        Run records (see the module docstring).
    command : str
        The command line that produced the runs.
    settings : Mapping, optional
        The comparison's settings (recorded as given).
    ks : sequence of int, optional
        Recovery lengths reported for FT and NoT (default: all found).

    Returns
    -------
    dict
        ``{"command", "settings", "units", "runs": [...], "scenarios": {name:
        summarize_scenario(...)}}``; ``runs`` lists every run's scenario, seed, method,
        status, error, path and seconds (not its results).
    """
    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    return {
        "command": command,
        "settings": dict(settings or {}),
        "units": dict(UNITS),
        "runs": [{key: r.get(key) for key in ("scenario", "seed", "method", "status", "error",
                                               "path", "seconds")} for r in runs],
        "failed": sum(1 for r in runs if r.get("status") == "failed"),
        "scenarios": {s: summarize_scenario(runs, s, ks) for s in scenarios},
    }


# --------------------------------------------------------------------------- #
# markdown
# --------------------------------------------------------------------------- #
TABLE_HEADER = ("| method | retain | forget | test | MIA | ASR | Avg Gap | rounds | MB | "
                "client-s | cost vs Retrain |")
#: Columns added to a scenario's table when any of its rows has the number (class-wise).
EXTRA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("forgotten classes (test)", "forgotten_classes"),
    ("other classes (test)", "other_classes"),
)


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
    parts = [stats[k].get("mean") for k in ("cost_rounds_pct", "cost_mb_pct",
                                            "cost_client_seconds_pct")]
    if all(p is None for p in parts):
        return "–"
    return " / ".join("–" if p is None else f"{p:.0f}%" for p in parts)


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
    extra = [(title, key) for title, key in EXTRA_COLUMNS
             if any((row["stats"].get(key) or {}).get("mean") is not None
                    for row in rows.values())]
    header = TABLE_HEADER + "".join(f" {title} |" for title, _ in extra)
    lines = [header, "|" + "---|" * (11 + len(extra))]
    for label, row in rows.items():
        st = row["stats"]
        lines.append(_md_row([
            label,
            _cell(st["retain"]), _cell(st["forget"]), _cell(st["test"]), _cell(st["mia"]),
            _cell(st["asr"]), _cell(st["avg_gap"]),
            _rounds_cell(st["rounds"]), _cell(st["mb"]), _cell(st["client_seconds"], 1),
            _cost_cell(st), *(_cell(st.get(key)) for _, key in extra),
        ]))
    return lines


LIRA_HEADER = ("| method | LiRA AUC | TPR@1%FPR | TPR@0.1%FPR | retain TPR@1%FPR | MIA-efficacy | "
               "Avg Gap | Avg Gap (LiRA) |")


def render_lira_table(summary: Mapping) -> list[str]:
    """The per-example membership table of one scenario; empty when no row has LiRA numbers.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary (:func:`summarize_scenario`).

    Returns
    -------
    list[str]
        Header, separator, one line per row with LiRA numbers, then the noise floor and
        whether the attack separates Original from Retrain (:func:`lira_separation`).
    """
    rows = {label: row for label, row in summary["methods"].items()
            if (row["stats"].get("lira_auc") or {}).get("mean") is not None}
    if not rows:
        return []
    lines = [LIRA_HEADER, "|" + "---|" * 8]
    for label, row in rows.items():
        st = row["stats"]
        lines.append(_md_row([label, _cell(st["lira_auc"]), _cell(st["lira_tpr1"]),
                              _cell(st["lira_tpr01"]), _cell(st["lira_retain_tpr1"]),
                              _cell(st["mia"]), _cell(st["avg_gap"]), _cell(st["avg_gap_lira"])]))
    lira_nf = (summary.get("noise_floor") or {}).get("lira")
    lines.append("")
    if lira_nf:
        lines.append(
            f"Retrain vs Retrain (seed noise): Avg Gap (LiRA) {_cell(lira_nf['avg_gap_lira'])} "
            f"points; |LiRA AUC difference| {_cell(lira_nf['lira_auc_diff'])}, |TPR@1%FPR "
            f"difference| {_cell(lira_nf['lira_tpr1_diff'])} points.")
    verdict = lira_separation(summary)
    if verdict:
        lines.append(verdict)
    return lines


def lira_separation(summary: Mapping) -> str | None:
    """Whether the attack tells Original from Retrain on the forget set, in one sentence.

    It separates them when, in every seed with both, Original's TPR at 1 % FPR exceeds
    Retrain's by more than 2 points (Retrain's expected value is about 1 %, the FPR).
    When it does not, there is nothing for the attack to detect in that scenario: a
    method's low TPR there is no evidence that it forgot.

    Parameters
    ----------
    summary : Mapping
        One scenario's summary.

    Returns
    -------
    str or None
        The sentence, or ``None`` without both Original and Retrain LiRA numbers.
    """
    methods = summary.get("methods", {})
    orig = (methods.get("Original") or {}).get("per_seed", {})
    ret = (methods.get("Retrain") or {}).get("per_seed", {})
    seeds = [s for s in orig if s in ret and orig[s].get("lira_tpr1") is not None
             and ret[s].get("lira_tpr1") is not None]
    if not seeds:
        return None
    pairs = ", ".join(f"seed {s}: {orig[s]['lira_tpr1']:.1f} vs {ret[s]['lira_tpr1']:.1f}"
                      for s in seeds)
    if all(orig[s]["lira_tpr1"] > ret[s]["lira_tpr1"] + 2.0 for s in seeds):
        return (f"Sanity check: LiRA separates Original from Retrain on the forget set "
                f"(TPR@1%FPR, Original vs Retrain: {pairs} %).")
    return (f"Sanity check: LiRA does NOT separate Original from Retrain on the forget set "
            f"(TPR@1%FPR, Original vs Retrain: {pairs} %): in this scenario there is nothing "
            f"for the attack to detect, so a method's low TPR here says nothing about how well "
            f"it forgot.")


REQUIREMENTS_HEADER = ("| method | storage kept (MB) | target data | target participation | "
                       "server-side data | server-s |")


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
    lines = [REQUIREMENTS_HEADER, "|" + "---|" * 6]
    for name, req in requirements_.items():
        mb = req.get("storage_mb") or {}
        storage = "–" if mb.get("mean") is None else (_cell(mb, 3) if mb["mean"] else "0")
        if mb.get("mean") and req.get("storage") not in (None, "none"):
            storage += f" ({req['storage']})"
        lines.append(_md_row([
            name, storage, _yes_no(req.get("target_data")),
            _yes_no(req.get("target_participation")), _yes_no(req.get("server_data")),
            _cell(req.get("server_seconds"), 1),
        ]))
    return lines


#: What each comparison scenario is (printed under its heading in report.md).
SCENARIO_TEXT: dict[str, str] = {
    "iid": "Client-wise: IID partition; the target client is forgotten.",
    "dirichlet": "Client-wise: Dirichlet label-skewed partition; the target client is "
                 "forgotten.",
    "backdoor": "Client-wise: IID; the target client planted a backdoor trigger on part of "
                "its samples; the target client is forgotten. ASR = share of triggered "
                "test images (true label not the backdoor's) classified as the backdoor "
                "label.",
    "class": "Class-wise: the forgotten class(es) are removed from the clients' data "
             "after the request (every client keeps training on its other classes); "
             "forget = accuracy on the forgotten classes' training samples; Retrain = "
             "FedAvg from scratch without them.",
    "instance": "Instance-wise: the backdoor client asks to forget exactly its poisoned "
                "samples and keeps training on its clean ones; forget = accuracy on the "
                "forgotten samples with their poisoned labels; Retrain = FedAvg from "
                "scratch without them.",
}


def render_markdown(report: Mapping, plots: Mapping[str, Sequence[str]] | None = None) -> str:
    """``report.md``: the command, then a table, noise floor and notes per scenario.

    Parameters
    ----------
    report : Mapping
        What :func:`build_report` returned.
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
    out += [
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
        "compute seconds of the whole unlearning phase.",
        "",
    ]
    for scenario, summary in report.get("scenarios", {}).items():
        seeds = summary.get("seeds", [])
        out += [f"## {scenario}", ""]
        if scenario in SCENARIO_TEXT:
            out += [SCENARIO_TEXT[scenario], ""]
        out += [f"Seeds: {', '.join(map(str, seeds)) or 'none'}", ""]
        if summary["methods"]:
            out += render_table(summary)
        else:
            out.append("No successful runs.")
        out.append("")
        if summary.get("requirements"):
            out += render_requirements(summary["requirements"]) + [""]
        lira = render_lira_table(summary)
        if lira:
            out += ["Per-example membership inference (LiRA, online, against the forget set; "
                    "non-members = the held-out test split):", ""] + lira + [""]
        nf = summary.get("noise_floor", {})
        if nf.get("mean") is not None:
            out.append(
                f"Retrain vs Retrain (seed noise): Avg Gap {_cell(nf)} points over "
                f"{nf['n']} pair(s) of seeds. An Avg Gap at or below this is "
                "indistinguishable from retraining."
            )
        else:
            out.append("Retrain vs Retrain (seed noise): needs Retrain runs of at least two "
                       "seeds; not available.")
        for name, per_seed in summary.get("stopping", {}).items():
            first = next(iter(per_seed.values()))
            chosen = ", ".join(
                f"seed {s}: {'none' if v.get('chosen_recovery_rounds') is None else v['chosen_recovery_rounds']}"
                for s, v in per_seed.items())
            out.append("")
            tol = _finite(first.get("tolerance"))
            tol_text = "?" if tol is None else f"{100 * tol:g} points"
            out.append(
                f"Stopping rule for {name} ({first.get('rule', '?')}; tolerance {tol_text}, "
                f"cap {first.get('cap', '?')} rounds): recovery rounds chosen: {chosen} "
                "(none = never within tolerance, the cap applies)."
            )
        missing = [r for r in report.get("runs", [])
                   if r["scenario"] == scenario and r.get("status") == "failed"]
        if missing:
            out += ["", "Failed runs (left out of the table):", ""]
            out += [f"- seed {r['seed']} {r['method']}: {r.get('error') or 'unknown error'}"
                    for r in missing]
        for name in (plots or {}).get(scenario, []):
            out += ["", f"![{name}]({name})"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- #
# plots
# --------------------------------------------------------------------------- #
def round_series(
    results_by_seed: Mapping[int, Mapping], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over seeds of a per-round metric, aligned by round number.

    Parameters
    ----------
    results_by_seed : Mapping[int, Mapping]
        Seed -> ``results.json`` dict.
    key : str
        Per-round key such as ``"test_acc"``, ``"forget_acc"`` or ``"asr"`` (fractions).

    Returns
    -------
    tuple of np.ndarray
        ``(rounds, mean, std)`` in points; ``std`` is 0 where one seed has the value, rounds
        where no seed has it are dropped.
    """
    values: dict[int, list[float]] = {}
    for res in results_by_seed.values():
        for row in res.get("rounds", []):
            v = _finite(row.get(key))
            if v is not None and "round" in row:
                values.setdefault(int(row["round"]), []).append(100.0 * v)
    rounds = np.array(sorted(values), dtype=np.int64)
    mean = np.array([np.mean(values[r]) for r in rounds], dtype=np.float64)
    std = np.array([np.std(values[r], ddof=1) if len(values[r]) > 1 else 0.0 for r in rounds],
                   dtype=np.float64)
    return rounds, mean, std


PLOTS: dict[str, tuple[str, str]] = {
    "test_acc": ("test-acc", "test accuracy (%)"),
    "forget_acc": ("forget-acc", "forget accuracy (%)"),
    "asr": ("asr", "attack success rate (%)"),
    "forgotten_classes_test_acc": ("forgotten-classes-acc",
                                   "test accuracy on the forgotten class(es) (%)"),
}


def plot_scenario(runs: Sequence[Mapping], scenario: str, out_dir: str | Path) -> list[Path]:
    """Write the per-round plots of one scenario.

    ``<scenario>-test-acc.png`` and ``<scenario>-forget-acc.png`` always (when any run has
    the numbers), ``<scenario>-asr.png`` when the runs report ASR (backdoor scenario). One
    curve per method (Retrain, FT, NoT; FT and NoT share the original training), mean over
    seeds with a shaded band of +- one std; a dotted line marks the unlearning request, a
    cross NoT's negated model and a plus each baseline's unlearned model (before any
    recovery round) there.

    Parameters
    ----------
    runs : sequence of Mapping
        Run records; failed runs are skipped.
    scenario : str
        Scenario to plot.
    out_dir : str or Path
        Folder for the PNG files (created if needed).

    Returns
    -------
    list[Path]
        The files written.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_method = {m: _by_seed(runs, scenario, m) for m in METHODS}
    boundary = None
    for m in RECOVERY_METHODS:
        for res in by_method[m].values():
            rec = _phase_rounds(res, ("recovery",))
            if rec:
                boundary = int(rec[0]["round"]) - 0.5
                break
    written = []
    colors = {m: REGISTRY[m].color for m in METHODS}
    styles = {m: REGISTRY[m].linestyle for m in METHODS}
    for key, (suffix, ylabel) in PLOTS.items():
        series = {m: round_series(by, key) for m, by in by_method.items() if by}
        series = {m: s for m, s in series.items() if s[0].size}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for m, (x, mean, std) in series.items():
            n = len(by_method[m])
            ax.plot(x, mean, label=f"{METHOD_NAMES[m]} (n={n})", color=colors[m],
                    linestyle=styles[m], marker="." if x.size < 40 else None)
            ax.fill_between(x, mean - std, mean + std, color=colors[m], alpha=0.2, linewidth=0)
        negated = [100.0 * v for res in by_method["not"].values()
                   if (v := _finite((res.get("models", {}).get("negated") or {}).get(key)))
                   is not None]
        if boundary is not None and negated:
            ax.errorbar([boundary], [float(np.mean(negated))],
                        yerr=[float(np.std(negated, ddof=1)) if len(negated) > 1 else 0.0],
                        fmt="x", color=colors["not"], markersize=8, capsize=3,
                        label="NoT negated (before recovery)")
        for m in STEP_METHODS:  # the baselines' models right after their unlearning step
            unlearned = [100.0 * v for res in by_method[m].values()
                         if (v := _finite((res.get("models", {}).get("unlearned") or {}).get(key)))
                         is not None]
            if boundary is not None and unlearned:
                ax.errorbar([boundary], [float(np.mean(unlearned))],
                            yerr=[float(np.std(unlearned, ddof=1)) if len(unlearned) > 1 else 0.0],
                            fmt="+", color=colors[m], markersize=9, capsize=3,
                            label=f"{METHOD_NAMES[m]} unlearned (before recovery)")
        if boundary is not None:
            ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
            ax.text(boundary, 1.0, " unlearning request", transform=ax.get_xaxis_transform(),
                    va="top", ha="left", fontsize=8, color="grey")
        ax.set_xlabel("round (FT/NoT: training then recovery; Retrain: from scratch)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(-2, 102)
        ax.set_title(f"{scenario}: {ylabel} per round (mean ± std over seeds)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{scenario}-{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


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
    from .store import atomic_write_bytes  # here: importing report needs no torch or Flower

    atomic_write_bytes(path, text.encode("utf-8"), mode=0o666)
