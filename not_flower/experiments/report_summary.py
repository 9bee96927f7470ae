"""Summaries of the comparison report: per scenario, each row's mean and std over seeds.

From the run records (see :mod:`not_flower.experiments.report`) this module builds the content of
``report.json`` (:func:`build_report`): per scenario the table rows over seeds
(:func:`summarize_scenario`), the seed-noise floor between Retrain runs
(:func:`noise_floor`) and what each method needs (:func:`requirements`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from not_flower.common.methods import REGISTRY
from not_flower.evaluation.metrics import GAP_KEYS, GAP_KEYS_LIRA, avg_gap
from not_flower.experiments.report_rows import (
    DEFAULT_REQUIREMENTS,
    METHOD_NAMES,
    METHODS,
    RECOVERY_METHODS,
    ROW_KEYS,
    STEP_METHODS,
    UNITS,
    _finite,
    _metrics_for,
    mean_std,
    recovery_ks,
    row_label,
    seed_row,
)


def _ok(run: Mapping) -> bool:
    return run.get("status") in ("ok", "resumed") and run.get("results") is not None


def _by_seed(runs: Iterable[Mapping], scenario: str, method: str) -> dict[int, Mapping]:
    return {
        int(r["seed"]): r["results"]
        for r in runs
        if r["scenario"] == scenario and r["method"] == method and _ok(r)
    }


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
        out["lira"] = {
            key: mean_std(p[key] for p in lira)
            for key in ("avg_gap_lira", "lira_auc_diff", "lira_tpr1_diff")
        }
    return out


def _stats(per_seed: Mapping[int, Mapping]) -> dict:
    return {key: mean_std(row[key] for row in per_seed.values()) for key in ROW_KEYS}


def _table_rows(
    retrains: Mapping[int, Mapping],
    unlearners: Mapping[str, Mapping[int, Mapping]],
    ks: Sequence[int],
    retrain_variants: Mapping[str, Mapping[int, Mapping]] | None = None,
) -> list[tuple[str, str, int | str | None, Mapping[int, Mapping]]]:
    """The rows of a scenario's table, in order: ``(label, method, k, seed -> results)``.

    ``retrain_variants`` (method -> seed -> results: the variants that run as Retrain, such
    as ``retrain-recipe``) get a row each after Retrain's, compared with Retrain.
    """
    rows: list[tuple[str, str, int | str | None, Mapping[int, Mapping]]] = []
    # Original: the pre-unlearning model of the first recovery method that ran for the
    # seed, in RECOVERY_METHODS order (FT's, else NoT's, ...). Their training is the same
    # FedAvg training, but two runs of it in Ray's simulation can differ slightly (measured;
    # the cause is not pinned down), so the row is one run's, not an average of several.
    originals = {}
    for method in reversed(RECOVERY_METHODS):
        originals.update(unlearners[method])
    rows.append(("Original", "original", "original", originals))
    rows.append(("Retrain", "retrain", None, retrains))
    for method, by_seed in (retrain_variants or {}).items():
        if by_seed:
            rows.append((METHOD_NAMES[method], method, None, by_seed))
    for method in RECOVERY_METHODS:
        by_seed = unlearners[method]
        if not by_seed:
            continue
        if method in STEP_METHODS and any(
            "unlearned" in res.get("models", {}) for res in by_seed.values()
        ):
            rows.append((row_label(method, 0), method, 0, by_seed))
        for k in ks:
            rows.append((row_label(method, k), method, k, by_seed))
        if any(
            (res.get("stopping") or {}).get("chosen_recovery_rounds") is not None
            for res in by_seed.values()
        ):
            rows.append((row_label(method, "stop"), method, "stop", by_seed))
    return rows


def _summarize_row(
    method: str,
    k: int | str | None,
    by_seed: Mapping[int, Mapping],
    retrains: Mapping[int, Mapping],
) -> dict | None:
    """One row of :func:`summarize_scenario`'s ``methods``; ``None`` if no seed has it."""
    per_seed = {}
    for seed, res in sorted(by_seed.items()):
        row = seed_row(res, retrains.get(seed), k)
        if row is not None:
            per_seed[seed] = row
    if not per_seed:
        return None
    return {
        "method": method,
        "k": k if k is not None and k != "original" else None,
        "seeds": sorted(per_seed),
        "stats": _stats(per_seed),
        "per_seed": {str(s): r for s, r in per_seed.items()},
    }


def summarize_scenario(
    runs: Sequence[Mapping],
    scenario: str,
    ks: Sequence[int] | None = None,
) -> dict:
    """Rows of one scenario's table.

    Parameters
    ----------
    runs : sequence of Mapping
        Run records (see :mod:`not_flower.experiments.report`); failed runs are skipped.
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
        ks = sorted(
            {
                k
                for res in itertools.chain(*(u.values() for u in unlearners.values()))
                for k in recovery_ks(res)
            }
        )
    ks = sorted(set(int(k) for k in ks))

    methods: dict = {}
    variants = {
        m: _by_seed(runs, scenario, m)
        for m in METHODS
        if m != "retrain" and REGISTRY[m].app_method == "retrain"
    }
    for label, method, k, by_seed in _table_rows(retrains, unlearners, ks, variants):
        entry = _summarize_row(method, k, by_seed, retrains)
        if entry is not None:
            methods[label] = entry
    stopping: dict = {}
    for method in RECOVERY_METHODS:
        info = {
            str(s): res["stopping"]
            for s, res in sorted(unlearners[method].items())
            if res.get("stopping")
        }
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
        declared = next(
            (
                res["requirements"]
                for res in by_seed.values()
                if isinstance(res.get("requirements"), Mapping)
            ),
            DEFAULT_REQUIREMENTS[method],
        )
        storage, seconds = [], []
        for res in by_seed.values():
            costs = res.get("costs") or {}
            b = _finite(costs.get("storage_bytes"))
            storage.append(None if b is None else b / 1e6)
            phase = costs.get("unlearning_fixed_length") or costs.get("unlearning") or {}
            seconds.append(_finite(phase.get("server_seconds")))
        out[METHOD_NAMES[method]] = {
            "method": method,
            **{
                key: declared.get(key)
                for key in ("storage", "target_data", "target_participation", "server_data")
            },
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
        Run records (see :mod:`not_flower.experiments.report`).
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
        "runs": [
            {
                key: r.get(key)
                for key in ("scenario", "seed", "method", "status", "error", "path", "seconds")
            }
            for r in runs
        ],
        "failed": sum(1 for r in runs if r.get("status") == "failed"),
        "scenarios": {s: summarize_scenario(runs, s, ks) for s in scenarios},
    }
