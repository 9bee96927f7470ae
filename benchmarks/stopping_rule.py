"""Benchmark: the stopping rule replayed on recorded recovery curves, for a grid of settings.

The stopping rule (:mod:`strategies.stopping`) sees only the retained clients' federated
validation accuracy per round. This script replays it, for every (``window``,
``min_delta``, ``min_rounds``) of a grid, on the per-round rows of comparison runs that
ran to the cap (``python -m not_flower.experiments.compare`` sets ``recovery.run-to-cap = true``)
and sets each stop next to the round at which the run first reached Retrain's level (the
level and the tolerances of ``benchmarks/cost_to_forget.py``: Retrain's mean over its last
``--reference-window`` rounds; test within 1 point, forget accuracy and ASR within 2).

Per run and setting: the recovery round it stops at (or none), the branch that fired,
the recovery round the level is first reached at, and test accuracy, forget accuracy and
ASR at the stop with their gaps to the level (points; ``gap`` = mean |x - level| over
them: the per-round rows hold no retain accuracy or MIA). Per setting: how many runs it
stopped at all, stopped at the level (every metric within its tolerance there), stopped
before the level was reached, and the mean stop round, gap and test shortfall.

    python benchmarks/stopping_rule.py outputs/stop-digits [more compare outs ...] \\
        [--json stopping-rule.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from common import write_json  # benchmarks/common.py
from cost_to_forget import FORGET_TOL, REFERENCE_WINDOW, TEST_TOL, first_reach, reference_level
from strategies.stopping import StopSettings, first_stop

#: The grid replayed when none is given (window 0: the tolerance test alone).
WINDOWS = (0, 2, 3, 4, 5)
MIN_DELTAS = (0.0, 0.0025, 0.005, 0.01)
MIN_ROUNDS = (0, 3, 5, 8, 10)
#: Run folders replayed: every method that recovers (Retrain is the reference).
SKIP = ("retrain", "retrain-recipe", "original")


def load_runs(roots: list[Path]) -> list[dict]:
    """Every recovery run under ``<root>/runs/<scenario>/seed<s>/<method>/`` with its level.

    Returns
    -------
    list of dict
        ``root``, ``scenario``, ``seed``, ``method``, ``results`` and ``level`` (Retrain's,
        :func:`cost_to_forget.reference_level`), ``backdoor``.
    """
    runs = []
    for root in roots:
        for seed_dir in sorted(p for p in (root / "runs").glob("*/seed*") if p.is_dir()):
            retrain_file = seed_dir / "retrain" / "results.json"
            if not retrain_file.is_file():
                continue
            retrain = json.loads(retrain_file.read_text())
            for method_dir in sorted(p for p in seed_dir.iterdir() if p.name not in SKIP):
                f = method_dir / "results.json"
                if not f.is_file():
                    continue
                runs.append(
                    {
                        "root": str(root),
                        "scenario": seed_dir.parent.name,
                        "seed": seed_dir.name,
                        "method": method_dir.name,
                        "results": json.loads(f.read_text()),
                        "retrain": retrain,
                        "backdoor": "asr" in retrain["models"].get("retrained", {}),
                    }
                )
    return runs


def replay(run: dict, settings: StopSettings, window: int = REFERENCE_WINDOW) -> dict:
    """The rule's stop on one run's recorded recovery, next to where the level is reached.

    Parameters
    ----------
    run : dict
        :func:`load_runs`'s entry.
    settings : StopSettings
        The rule's settings.
    window : int
        Retrain's last rounds whose mean is the level.

    Returns
    -------
    dict
        ``stop`` and ``level_round`` (recovery rounds, counted from 1; ``None``: never),
        ``branch``, ``cap``, the metrics at the stop (points) and their gaps to the level.
    """
    res = run["results"]
    rows = [r for r in res["rounds"] if r["phase"] == "recovery"]
    level = reference_level(run["retrain"], window)
    stop = (res.get("stopping") or {}).get("per_request") or [res.get("stopping") or {}]
    reference = stop[0].get("reference_val_acc")
    fired = first_stop([r.get("val_acc") for r in rows], reference, settings)
    hit = first_reach(res["rounds"], "recovery", level, run["backdoor"])
    first = rows[0]["round"] if rows else 0
    out = {
        "scenario": run["scenario"],
        "seed": run["seed"],
        "method": run["method"],
        "cap": len(rows),
        "stop": None if fired is None else fired[0],
        "branch": None if fired is None else fired[1],
        "level_round": None if hit is None else hit["round"] - first + 1,
    }
    if fired is None:
        return out
    row = rows[fired[0] - 1]
    gaps = []
    for key, src, tol in (
        ("test", "test_acc", TEST_TOL),
        ("forget", "forget_acc", FORGET_TOL),
        ("asr", "asr", FORGET_TOL),
    ):
        if row.get(src) is None or level.get(key) is None or (key == "asr" and not run["backdoor"]):
            continue
        out[key] = 100 * row[src]
        out[f"{key}_gap"] = out[key] - level[key]
        out[f"{key}_ok"] = abs(out[f"{key}_gap"]) <= tol
        gaps.append(abs(out[f"{key}_gap"]))
    out["gap"] = statistics.mean(gaps) if gaps else None
    out["at_level"] = all(out[k] for k in out if k.endswith("_ok"))
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def summarize(rows: list[dict]) -> dict:
    """One setting over every run: counts and means (see the module docstring)."""
    stopped = [r for r in rows if r["stop"] is not None]
    return {
        "runs": len(rows),
        "stopped": len(stopped),
        "at_level": sum(bool(r.get("at_level")) for r in stopped),
        "before_level": sum(
            r["level_round"] is None or r["stop"] < r["level_round"] for r in stopped
        ),
        "stop_mean": _mean(r["stop"] for r in stopped),
        "level_round_mean": _mean(r["level_round"] for r in rows),
        "gap_mean": _mean(r.get("gap") for r in stopped),
        "test_gap_mean": _mean(r.get("test_gap") for r in stopped),
        "asr_gap_max": max((r["asr_gap"] for r in stopped if "asr_gap" in r), default=None),
        "rounds_run_mean": _mean(r["stop"] if r["stop"] is not None else r["cap"] for r in rows),
    }


def run_grid(runs: list[dict], grid, tolerance: float, window: int) -> list[dict]:
    """Every setting of ``grid`` (``(window, min_delta, min_rounds)``) replayed on ``runs``."""
    out = []
    for w, delta, least in grid:
        settings = StopSettings(tolerance=tolerance, window=w, min_delta=delta, min_rounds=least)
        rows = [replay(run, settings, window) for run in runs]
        out.append(
            {
                "window": w,
                "min_delta": delta,
                "min_rounds": least,
                **summarize(rows),
                "per_run": rows,
            }
        )
    return out


def _f(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[dict]) -> None:
    """The grid as a Markdown table, best first (most stops at the level, then closest)."""
    print(
        "| window | min_delta | min_rounds | stopped | at level | before level | stop round "
        "| level round | gap (pts) | test gap | max ASR gap | rounds run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    order = sorted(
        results,
        key=lambda r: (-r["at_level"], r["gap_mean"] or 99, r["rounds_run_mean"] or 0),
    )
    for r in order:
        n = r["runs"]
        print(
            f"| {r['window']} | {r['min_delta']} | {r['min_rounds']} | {r['stopped']}/{n} "
            f"| {r['at_level']}/{n} | {r['before_level']}/{n} | {_f(r['stop_mean'])} "
            f"| {_f(r['level_round_mean'])} | {_f(r['gap_mean'], '.2f')} "
            f"| {_f(r['test_gap_mean'], '+.2f')} | {_f(r['asr_gap_max'], '+.1f')} "
            f"| {_f(r['rounds_run_mean'])} |"
        )


def print_runs(result: dict) -> None:
    """Per run of one setting: stop vs level round and the metrics at the stop."""
    print(
        f"\nwindow {result['window']}, min_delta {result['min_delta']}, min_rounds "
        f"{result['min_rounds']}, per run:"
    )
    print("| scenario | seed | method | stop (branch) | level round | test | forget | ASR | gap |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["per_run"]:
        stop = "none" if r["stop"] is None else f"{r['stop']} ({r['branch']})"
        print(
            f"| {r['scenario']} | {r['seed']} | {r['method']} | {stop} "
            f"| {_f(r['level_round'], 'd') if r['level_round'] else 'not reached'} "
            f"| {_f(r.get('test'))} | {_f(r.get('forget'))} | {_f(r.get('asr'))} "
            f"| {_f(r.get('gap'), '.2f')} |"
        )


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_out", nargs="+", help="comparison output folders")
    parser.add_argument("--json", default="", help="write every setting's rows here")
    parser.add_argument("--tolerance", type=float, default=0.02, help="stop.tolerance")
    parser.add_argument("--windows", type=int, nargs="+", default=list(WINDOWS))
    parser.add_argument("--min-deltas", type=float, nargs="+", default=list(MIN_DELTAS))
    parser.add_argument("--min-rounds", type=int, nargs="+", default=list(MIN_ROUNDS))
    parser.add_argument("--reference-window", type=int, default=REFERENCE_WINDOW)
    parser.add_argument("--methods", nargs="+", default=[], help="only these run folders")
    parser.add_argument(
        "--show",
        nargs=3,
        type=float,
        metavar=("WINDOW", "MIN_DELTA", "MIN_ROUNDS"),
        action="append",
        default=[],
        help="also print every run of this setting (repeatable)",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    runs = load_runs([Path(p) for p in args.compare_out])
    runs = [r for r in runs if not args.methods or r["method"] in args.methods]
    if not runs:
        parser.error(f"no comparison runs with a Retrain under {args.compare_out}")
    grid = sorted(
        {
            (w, 0.0 if w == 0 else d, 0 if w == 0 else m)
            for w, d, m in itertools.product(args.windows, args.min_deltas, args.min_rounds)
        }
    )
    results = run_grid(runs, grid, args.tolerance, args.reference_window)
    print(f"{len(runs)} recovery runs; tolerance {args.tolerance}")
    print_table(results)
    for w, d, m in args.show:
        for r in results:
            if (r["window"], r["min_delta"], r["min_rounds"]) == (int(w), d, int(m)):
                print_runs(r)
    if args.json:
        write_json(args.json, {"tolerance": args.tolerance, "settings": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
