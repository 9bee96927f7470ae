"""Per-seed rows of the comparison report: method lists, units, costs and one run's numbers.

Pure functions over one ``results.json`` dict (and the same seed's Retrain): which model a
report row reads (:func:`seed_row`), what the unlearning phase cost
(:func:`unlearning_cost`), and the row labels ("NoT@10", "Retrain"). The summaries over
seeds are in :mod:`not_flower.experiments.report_summary`;
:mod:`not_flower.experiments.report` is the entry point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from not_flower.common.methods import REGISTRY, REPORT_ORDER
from not_flower.evaluation.metrics import GAP_KEYS, GAP_KEYS_LIRA, avg_gap

#: Methods a run can use, in the order the report lists them (from the method registry,
#: :mod:`not_flower.common.methods`).
METHODS: tuple[str, ...] = REPORT_ORDER
#: Display names of the methods.
METHOD_NAMES: dict[str, str] = {m: REGISTRY[m].label for m in METHODS}
#: Methods that train, unlearn, then recover (rows "X@K"; "Original" comes from them).
RECOVERY_METHODS: tuple[str, ...] = tuple(m for m in METHODS if REGISTRY[m].recovers)
#: Baselines with an unlearning step whose output is reported on its own ("X@0").
STEP_METHODS: tuple[str, ...] = tuple(m for m in METHODS if REGISTRY[m].baseline)
#: What each method needs, for results.json files that do not say (older runs).
DEFAULT_REQUIREMENTS: dict[str, dict] = {m: REGISTRY[m].requirements.to_dict() for m in METHODS}
#: Per-seed numbers of a report row, in table order.
ROW_KEYS: tuple[str, ...] = (
    "retain",
    "forget",
    "test",
    "mia",
    "asr",
    "avg_gap",
    "rounds",
    "mb",
    "client_seconds",
    "cost_rounds_pct",
    "cost_mb_pct",
    "cost_client_seconds_pct",
    "mia_loss_auc",
    "stopping_round",
    "forgotten_classes",
    "other_classes",
    "lira_auc",
    "lira_tpr1",
    "lira_tpr01",
    "lira_retain_tpr1",
    "lira_canary_auc",
    "lira_canary_tpr1",
    "avg_gap_lira",
    "canary_p",
    "canary_auc",
    "canary_n",
)
UNITS: dict[str, str] = {
    "retain": "% retain-set accuracy",
    "forget": "% forget-set accuracy",
    "test": "% test accuracy",
    "mia": "% MIA-efficacy (share of forget samples predicted non-member)",
    "asr": "% attack success rate of the backdoor (backdoor scenario only)",
    "avg_gap": (
        "points: mean |x - Retrain| over retain/forget/test/MIA, per seed vs the same seed's "
        "Retrain"
    ),
    "rounds": "communication rounds of the unlearning phase (recovery for FT/NoT and the "
    "baselines, retraining for Retrain, plus the rounds of a baseline's unlearning "
    "step: PGD's ascent, FedEraser's calibration)",
    "mb": "MB (1e6 bytes) sent down + up during the unlearning phase",
    "client_seconds": (
        "client CPU seconds (process time of local training) during the unlearning phase"
    ),
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
    "lira_canary_auc": "% ROC AUC of LiRA on the departing client's canaries against held-out "
    "canaries drawn the same way (canary scenario, or canary.clients)",
    "lira_canary_tpr1": "% of the departing client's canaries LiRA calls members at the "
    "threshold that calls 1 % of the held-out canaries members",
    "avg_gap_lira": "points: mean |x - Retrain| over retain/forget/test accuracy and LiRA "
    "AUC, per seed vs the same seed's Retrain",
    "canary_p": "p-value (0 to 1, not %) of the one-sided permutation test that the "
    "departing client's in-canaries fit the model better than its out-canaries; detected "
    "when p < 0.05",
    "canary_auc": "% ROC AUC separating the departing client's in-canaries from its "
    "out-canaries (50: no trace of them)",
    "canary_n": "number of in-canaries the departing client planted (as many kept out)",
}
_SCALE_TO_POINTS = {
    "retain": "retain_acc",
    "forget": "forget_acc",
    "test": "test_acc",
    "mia": "mia_efficacy",
    "asr": "asr",
    "mia_loss_auc": "mia_loss_auc",
    "forgotten_classes": "forgotten_classes_test_acc",
    "other_classes": "other_classes_test_acc",
    "lira_auc": "lira_auc",
    "lira_tpr1": "lira_tpr_fpr1",
    "lira_tpr01": "lira_tpr_fpr01",
    "lira_retain_tpr1": "lira_retain_tpr_fpr1",
    "lira_canary_auc": "lira_canary_auc",
    "lira_canary_tpr1": "lira_canary_tpr_fpr1",
    "canary_auc": "canary_auc",
}
#: Row keys copied from the model's metrics as they are (not scaled to %).
_AS_IS = {"canary_p": "canary_p", "canary_n": "canary_n"}


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
        raise ValueError(
            f"unknown method {method!r}; choose one of: original, {', '.join(METHODS)}"
        )
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
    total = {
        "rounds": len(rows),
        "bytes_down": 0.0,
        "bytes_up": 0.0,
        "client_seconds": 0.0,
        "extra_rounds": float(sum(_finite(r.get("extra_rounds")) or 0 for r in rows)),
    }
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
        out = {
            "rounds": 0.0,
            "extra_rounds": _finite(step.get("rounds")) or 0.0,
            **{key: _finite(step.get(key)) for key in ("bytes_down", "bytes_up", "client_seconds")},
        }
        return out if all(v is not None for v in out.values()) else None
    costs = (results.get("costs") or {}).get("unlearning")
    if costs is not None and (k is None or _finite(costs.get("rounds")) == k):
        out = {
            key: _finite(costs.get(key))
            for key in ("rounds", "bytes_down", "bytes_up", "client_seconds")
        }
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
    rounds = _finite((results.get("config") or {}).get("recovery.rounds"))
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
    for key, src in _AS_IS.items():
        row[key] = _finite(m.get(src))
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
        for key, mine, theirs in (
            (
                "cost_rounds_pct",
                row["rounds"],
                ref_cost["rounds"] + ref_cost.get("extra_rounds", 0.0),
            ),
            ("cost_mb_pct", row["mb"], ref_mb),
            ("cost_client_seconds_pct", row["client_seconds"], ref_cost["client_seconds"]),
        ):
            if mine is not None and theirs:
                row[key] = 100.0 * mine / theirs
    return row
