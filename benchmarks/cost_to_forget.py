"""Benchmark: cost to forget, read from a comparison's per-round results.

For every method's unlearning phase (NoT/FT recovery, Retrain's retraining, baselines),
find the first round at which the global model is
* within 1 point of Retrain's final test accuracy, and
* within 2 points of Retrain's final forget accuracy (and of its ASR in the backdoor
  scenario),
and report the rounds, MB (bytes down + up of the actual messages) and client CPU
seconds spent up to that round, per seed, and every method's cost as a share of the same
seed's Retrain's (mean over seeds). A method that
never gets there within its rounds is reported as "not reached".

It reads the ``results.json`` files that ``python -m not_flower.compare`` wrote under
``<compare-out>/runs/<scenario>/seed<s>/<method>/``:

    python benchmarks/cost_to_forget.py outputs/compare [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import write_json  # benchmarks/common.py

TEST_TOL, FORGET_TOL = 1.0, 2.0  # points


def first_reach(rows: list[dict], phase: str, target: dict, backdoor: bool) -> dict | None:
    """First round of ``phase`` meeting the targets, with the costs summed up to it."""
    spent = {"rounds": 0, "MB": 0.0, "client_s": 0.0}
    for row in rows:
        if row["phase"] != phase:
            continue
        spent["rounds"] += 1 + int(row.get("extra_rounds", 0) or 0)  # + a step's own rounds
        spent["MB"] += (row.get("bytes_down", 0) + row.get("bytes_up", 0)) / 1e6
        spent["client_s"] += row.get("client_seconds", 0.0)
        ok = abs(100 * row["test_acc"] - target["test"]) <= TEST_TOL
        if "forget_acc" in row and target.get("forget") is not None:
            ok &= abs(100 * row["forget_acc"] - target["forget"]) <= FORGET_TOL
        if backdoor and "asr" in row:
            ok &= abs(100 * row["asr"] - target["asr"]) <= FORGET_TOL
        if ok:
            return {**spent, "round": row["round"]}
    return None


#: Run folders under ``runs/<scenario>/seed<s>/`` that are not an unlearning method's run
#: (``--share-original``'s shared original: training only, no unlearning phase).
NOT_A_METHOD = ("original",)


def analyse(root: Path) -> list[dict]:
    """One row per (scenario, seed, method run): reached or not, and its costs to it."""
    out = []
    for scenario_dir in sorted((root / "runs").iterdir()):
        for seed_dir in sorted(scenario_dir.iterdir()):
            retrain_file = seed_dir / "retrain" / "results.json"
            if not retrain_file.exists():
                continue
            retrain = json.loads(retrain_file.read_text())
            final = retrain["models"]["retrained"]
            backdoor = "asr" in final
            target = {
                "test": 100 * final["test_acc"],
                "forget": 100 * final.get("forget_acc", 0),
                "asr": 100 * final.get("asr", 0),
            }
            for method_dir in sorted(seed_dir.iterdir()):
                f = method_dir / "results.json"
                if method_dir.name in NOT_A_METHOD or not f.exists():
                    continue
                res = json.loads(f.read_text())
                phase = "retrain" if res["method"] == "retrain" else "recovery"
                hit = first_reach(res["rounds"], phase, target, backdoor)
                out.append(
                    {  # the folder names the comparison's method (or variant)
                        "scenario": scenario_dir.name,
                        "seed": seed_dir.name,
                        "method": method_dir.name,
                        "reached": hit is not None,
                        **(hit or {}),
                        "storage_bytes": res.get("costs", {}).get("storage_bytes", 0),
                    }
                )
    return out


def _mean_std(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None}
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Per (scenario, method): seeds reached, mean ± std costs, shares of Retrain's.

    Parameters
    ----------
    rows : list of dict
        :func:`analyse`'s rows.

    Returns
    -------
    list of dict
        ``scenario``, ``method``, ``reached`` / ``runs`` (counts), ``rounds``, ``MB``,
        ``client_s`` (mean/std over the runs that reached the level) and ``pct_rounds``,
        ``pct_MB``, ``pct_client_s``: the mean over seeds of the method's cost as a share
        of the same seed's Retrain's (seeds where both reached it; None when there is
        none), and ``storage_bytes``.
    """
    out = []
    for scenario in sorted({r["scenario"] for r in rows}):
        per = [r for r in rows if r["scenario"] == scenario]
        base = {r["seed"]: r for r in per if r["method"] == "retrain" and r["reached"]}
        for method in sorted({r["method"] for r in per}):
            mine = [r for r in per if r["method"] == method]
            hit = [r for r in mine if r["reached"]]
            row = {
                "scenario": scenario,
                "method": method,
                "reached": len(hit),
                "runs": len(mine),
                "storage_bytes": mine[0]["storage_bytes"],
            }
            for key in ("rounds", "MB", "client_s"):
                row[key] = _mean_std([r[key] for r in hit])
                shares = [
                    100 * r[key] / base[r["seed"]][key]
                    for r in hit
                    if r["seed"] in base and base[r["seed"]][key]
                ]
                row[f"pct_{key}"] = statistics.mean(shares) if shares else None
            out.append(row)
    return out


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "not reached"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_out")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    rows = analyse(Path(args.compare_out))
    summary = summarize(rows)
    print(
        f"targets: test acc within {TEST_TOL} point of Retrain's final, forget acc (and ASR) "
        f"within {FORGET_TOL} points"
    )
    print(
        f"{'scenario':<10} {'method':<16} {'reached':>8} {'rounds':>12} {'MB':>14} "
        f"{'client-s':>12} {'% rounds':>9} {'% MB':>6} {'% client-s':>11} {'storage B':>10}"
    )
    for row in summary:
        print(
            f"{row['scenario']:<10} {row['method']:<16} {row['reached']:>4}/{row['runs']:<3} "
            f"{_cell(row['rounds']):>12} {_cell(row['MB']):>14} {_cell(row['client_s']):>12} "
            f"{_pct(row['pct_rounds']):>9} {_pct(row['pct_MB']):>6} "
            f"{_pct(row['pct_client_s']):>11} {row['storage_bytes']:>10}"
        )
    if args.json:
        write_json(args.json, {"rows": rows, "summary": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
