"""Benchmark: cost to forget, read from a comparison's per-round results.

**The level.** Per (scenario, seed), Retrain's level is the mean of Retrain's per-round
test accuracy, forget accuracy and ASR (backdoor) over its last ``--reference-window``
rounds (default 5), not one round's values: a single round moves by about 0.5-1 point,
so a first crossing of it is a noisy target. Run Retrain until its curve is flat
(``python -m not_flower.experiments.compare --retrain-rounds N``; ``--retrain-plot`` draws the
curves and the table gives each seed's slope over its last 20 rounds), and this is the
converged Retrain's level. ``--reference-window 0`` takes the final model's values
(``models.retrained``) instead: the reference of the tables made before this option.

For every method's unlearning phase (NoT/FT recovery, Retrain's retraining, baselines),
find the first round at which the global model is
* within 1 point of that level's test accuracy, and
* within 2 points of its forget accuracy (and of its ASR in the backdoor scenario),
and report the rounds, MB (bytes down + up of the actual messages) and client CPU
seconds spent up to that round, per seed and as mean ± std over seeds. Each cost is also
given as a share of the same seed's Retrain's cost to its own level ("% Retrain") and,
when the comparison ran the variant ``retrain-recipe`` (Retrain with a recovery's
recipe: clients per round, local epochs), as a share of that run's cost to the same
level ("% recipe"): the part of a saving that is the method's own. A method that never
gets there within its rounds is reported as "not reached".

The goal check (``--goal``, default 30 %): for NoT and its variants, per seed, whether
its rounds, MB and client seconds to the level are at most that share of Retrain's and
below ``retrain-recipe``'s, and by how many points each is met or missed. The rounds
here are the first round at the level, i.e. the best any stopping rule could do.

It reads the ``results.json`` files that ``python -m not_flower.experiments.compare`` wrote under
``<compare-out>/runs/<scenario>/seed<s>/<method>/``:

    python benchmarks/cost_to_forget.py outputs/compare [--json out.json] \\
        [--retrain-plot retrain.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import write_json  # benchmarks/common.py

TEST_TOL, FORGET_TOL = 1.0, 2.0  # points
#: Retrain's last rounds whose mean is the level (0: the final model's values).
REFERENCE_WINDOW = 5
#: Run folders of the references: Retrain, and Retrain with a recovery's recipe.
RETRAIN, RECIPE = "retrain", "retrain-recipe"
#: Methods the goal check is made for (NoT and its variants).
GOAL_METHODS = ("not", "not-weights-only")
#: The goal: at most this share (%) of converged Retrain's rounds, bytes and compute.
GOAL_SHARE = 30.0
COST_KEYS = ("rounds", "MB", "client_s")
#: Rounds at the end of Retrain's curve over which its slope is measured (flatness).
SLOPE_ROUNDS = 20


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
        if backdoor and "asr" in row and target.get("asr") is not None:
            ok &= abs(100 * row["asr"] - target["asr"]) <= FORGET_TOL
        if ok:
            return {**spent, "round": row["round"]}
    return None


def reference_level(retrain: dict, window: int = REFERENCE_WINDOW) -> dict:
    """Retrain's level in points: ``test``, ``forget``, ``asr`` (``None`` where absent).

    The mean over the last ``window`` retraining rounds' values; ``window = 0``: the
    final model's values (``models.retrained``).
    """
    if window <= 0:
        final = retrain["models"]["retrained"]
        return {
            "test": 100 * final["test_acc"],
            "forget": 100 * final["forget_acc"] if "forget_acc" in final else None,
            "asr": 100 * final["asr"] if "asr" in final else None,
            "window": 0,
        }
    rows = [r for r in retrain["rounds"] if r["phase"] == "retrain"][-window:]
    out: dict = {"window": len(rows)}
    for key, src in (("test", "test_acc"), ("forget", "forget_acc"), ("asr", "asr")):
        values = [100 * r[src] for r in rows if r.get(src) is not None]
        out[key] = statistics.mean(values) if values else None
    return out


def slope(retrain: dict, last: int = SLOPE_ROUNDS) -> float | None:
    """Least-squares slope of Retrain's test accuracy over its last ``last`` rounds, in
    points per 10 rounds (about 0 when its curve is flat)."""
    pts = [
        (float(r["round"]), 100 * r["test_acc"])
        for r in retrain["rounds"]
        if r["phase"] == "retrain"
    ][-last:]
    if len(pts) < 3:
        return None
    mx = statistics.mean(x for x, _ in pts)
    my = statistics.mean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return 10 * sum((x - mx) * (y - my) for x, y in pts) / sxx


#: Run folders under ``runs/<scenario>/seed<s>/`` that are not an unlearning method's run
#: (``--share-original``'s shared original: training only, no unlearning phase).
NOT_A_METHOD = ("original",)


def analyse(root: Path, window: int = REFERENCE_WINDOW) -> list[dict]:
    """One row per (scenario, seed, method run): reached or not, and its costs to it."""
    out = []
    for scenario_dir in sorted((root / "runs").iterdir()):
        for seed_dir in sorted(scenario_dir.iterdir()):
            retrain_file = seed_dir / RETRAIN / "results.json"
            if not retrain_file.exists():
                continue
            retrain = json.loads(retrain_file.read_text())
            target = reference_level(retrain, window)
            backdoor = "asr" in retrain["models"].get("retrained", {})
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
                        "phase_rounds": sum(1 for r in res["rounds"] if r["phase"] == phase),
                        "storage_bytes": res.get("costs", {}).get("storage_bytes", 0),
                        "reference": target,
                        **({"slope_per_10_rounds": slope(res)} if phase == "retrain" else {}),
                    }
                )
    add_shares(out)
    return out


def add_shares(rows: list[dict]) -> None:
    """Give each reached row ``pct_<key>`` (of the seed's Retrain) and ``recipe_pct_<key>``
    (of its ``retrain-recipe``), where that reference reached the level too."""
    refs = {
        (r["scenario"], r["seed"], r["method"]): r
        for r in rows
        if r["method"] in (RETRAIN, RECIPE) and r["reached"]
    }
    for row in rows:
        for prefix, ref_name in (("pct_", RETRAIN), ("recipe_pct_", RECIPE)):
            ref = refs.get((row["scenario"], row["seed"], ref_name))
            for key in COST_KEYS:
                ok = row["reached"] and ref is not None and ref[key]
                row[prefix + key] = 100 * row[key] / ref[key] if ok else None


def _mean_std(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None}
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Per (scenario, method): seeds reached, mean ± std costs, shares of the references'.

    Parameters
    ----------
    rows : list of dict
        :func:`analyse`'s rows.

    Returns
    -------
    list of dict
        ``scenario``, ``method``, ``reached`` / ``runs`` (counts), ``rounds``, ``MB``,
        ``client_s`` (mean/std over the runs that reached the level); ``pct_rounds``,
        ``pct_MB``, ``pct_client_s``: the mean over seeds of the method's cost as a share
        of the same seed's Retrain's (seeds where both reached it; None when there is
        none), with ``pct_<key>_std``; ``recipe_pct_<key>`` and ``recipe_pct_<key>_std``:
        the same against ``retrain-recipe``; and ``storage_bytes``.
    """
    out = []
    for scenario in sorted({r["scenario"] for r in rows}):
        per = [r for r in rows if r["scenario"] == scenario]
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
            for key in COST_KEYS:
                row[key] = _mean_std([r[key] for r in hit])
                for prefix in ("pct_", "recipe_pct_"):
                    stat = _mean_std([r[prefix + key] for r in hit if r[prefix + key] is not None])
                    row[prefix + key] = stat["mean"]
                    row[prefix + key + "_std"] = stat["std"]
            out.append(row)
    return out


def goal_check(rows: list[dict], share: float = GOAL_SHARE) -> list[dict]:
    """Per seed and NoT method: each cost's share of Retrain's against ``share`` and of
    ``retrain-recipe``'s against 100 %, with the margin in points (negative: met)."""
    out = []
    for row in rows:
        if row["method"] not in GOAL_METHODS:
            continue
        check = {k: row[k] for k in ("scenario", "seed", "method", "reached")}
        for key in COST_KEYS:
            pct, recipe = row.get("pct_" + key), row.get("recipe_pct_" + key)
            check[key] = {
                "pct_retrain": pct,
                "margin_retrain": None if pct is None else pct - share,
                "pct_recipe": recipe,
                "margin_recipe": None if recipe is None else recipe - 100.0,
            }
        parts = [check[k][m] for k in COST_KEYS for m in ("margin_retrain", "margin_recipe")]
        check["met"] = row["reached"] and all(p is not None and p <= 0 for p in parts[::2])
        check["met"] = check["met"] and all(p is None or p < 0 for p in parts[1::2])
        out.append(check)
    return out


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "not reached"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}"


def _pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.0f} %" if not std else f"{mean:.0f} ± {std:.0f} %"


def _print_summary(summary: list[dict]) -> None:
    print(
        f"{'scenario':<10} {'method':<16} {'reached':>8} {'rounds':>12} {'MB':>14} "
        f"{'client-s':>13} | {'% Retrain: rounds':>17} {'MB':>10} {'client-s':>10} | "
        f"{'% recipe: rounds':>16} {'MB':>10} {'client-s':>10}"
    )
    for row in summary:
        cells = [
            _pct(row[f"{p}{k}"], row[f"{p}{k}_std"])
            for p in ("pct_", "recipe_pct_")
            for k in COST_KEYS
        ]
        print(
            f"{row['scenario']:<10} {row['method']:<16} {row['reached']:>4}/{row['runs']:<3} "
            f"{_cell(row['rounds']):>12} {_cell(row['MB']):>14} {_cell(row['client_s']):>13} | "
            f"{cells[0]:>17} {cells[1]:>10} {cells[2]:>10} | "
            f"{cells[3]:>16} {cells[4]:>10} {cells[5]:>10}"
        )


def _print_per_seed(rows: list[dict]) -> None:
    print(
        f"\n{'scenario':<10} {'seed':<6} {'method':<16} {'level: test':>11} {'forget':>7} "
        f"{'ASR':>6} {'round':>6} {'MB':>7} {'client-s':>9} | {'% Retrain r/MB/cs':>19} | "
        f"{'% recipe r/MB/cs':>18}"
    )
    for r in rows:
        ref = r["reference"]
        level = " ".join(
            f"{ref[k]:>{w}.2f}" if ref.get(k) is not None else f"{'-':>{w}}"
            for k, w in (("test", 11), ("forget", 7), ("asr", 6))
        )
        if r["reached"]:
            got = f"{r['rounds']:>6} {r['MB']:>7.1f} {r['client_s']:>9.1f}"
        else:
            got = f"{'not reached in ' + str(r['phase_rounds']):>24}"
        shares = [
            "/".join(_pct(r.get(p + k)).replace(" %", "") for k in COST_KEYS)
            for p in ("pct_", "recipe_pct_")
        ]
        print(
            f"{r['scenario']:<10} {r['seed']:<6} {r['method']:<16} {level} {got} | "
            f"{shares[0]:>19} | {shares[1]:>18}"
        )


def _print_goal(checks: list[dict], share: float) -> None:
    print(
        f"\ngoal: NoT at the level in at most {share:.0f} % of Retrain's rounds, MB and "
        "client-s, and below retrain-recipe's (first round at the level: the best any "
        "stopping rule could do); margin in points, negative = met"
    )
    for c in checks:
        head = f"{c['scenario']} {c['seed']} {c['method']}:"
        if not c["reached"]:
            print(f"{head} MISSED (never at the level)")
            continue
        parts = []
        for key in COST_KEYS:
            d = c[key]
            text = f"{key} {_pct(d['pct_retrain'])} of Retrain ({d['margin_retrain']:+.0f})"
            if d["pct_recipe"] is not None:
                text += f", {_pct(d['pct_recipe'])} of recipe ({d['margin_recipe']:+.0f})"
            parts.append(text)
        print(f"{head} {'MET' if c['met'] else 'MISSED'}: " + "; ".join(parts))


def plot_retrain(root: Path, path: Path, window: int = REFERENCE_WINDOW, earlier: int = 0) -> None:
    """Retrain's (solid) and retrain-recipe's (dashed) test accuracy per round, every
    seed, one panel per scenario; the last ``window`` rounds are shaded and their mean
    (the level) drawn dotted; ``earlier`` > 0 marks that round (an earlier, shorter
    reference)."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    scenarios = sorted(d for d in (root / "runs").iterdir() if d.is_dir())
    fig, axes = plt.subplots(1, len(scenarios), figsize=(6.5 * len(scenarios), 4.2), squeeze=False)
    for ax, scenario_dir in zip(axes[0], scenarios):
        for i, seed_dir in enumerate(sorted(scenario_dir.iterdir())):
            for name, style in ((RETRAIN, "-"), (RECIPE, "--")):
                f = seed_dir / name / "results.json"
                if not f.exists():
                    continue
                rows = [r for r in json.loads(f.read_text())["rounds"] if r["phase"] == "retrain"]
                x = [r["round"] for r in rows]
                ax.plot(
                    x,
                    [100 * r["test_acc"] for r in rows],
                    linestyle=style,
                    color=f"C{i}",
                    label=f"{name} {seed_dir.name}",
                )
                if name == RETRAIN and window > 0 and len(x) >= window:
                    ax.axvspan(x[-window] - 0.5, x[-1] + 0.5, color="grey", alpha=0.15)
                    level = statistics.mean(100 * r["test_acc"] for r in rows[-window:])
                    ax.axhline(level, color=f"C{i}", linestyle=":", linewidth=0.8)
        if earlier:
            ax.axvline(earlier, color="grey", linestyle="-.", linewidth=0.8)
            ax.text(
                earlier,
                0.02,
                f" round {earlier}: the earlier reference",
                fontsize=7,
                color="grey",
                transform=ax.get_xaxis_transform(),
            )
        ax.set_title(
            f"{scenario_dir.name}: test accuracy per round from scratch "
            f"(shaded: the last {window} rounds = the level)",
            fontsize=9,
        )
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_out")
    parser.add_argument("--json", default="")
    parser.add_argument(
        "--reference-window",
        type=int,
        default=REFERENCE_WINDOW,
        help="Retrain's last rounds whose mean is the level (0: its final model's values)",
    )
    parser.add_argument("--goal", type=float, default=GOAL_SHARE, help="goal share (%%)")
    parser.add_argument("--retrain-plot", default="", help="PNG of Retrain's curves")
    parser.add_argument(
        "--mark-round", type=int, default=0, help="--retrain-plot: mark this round (0: none)"
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    root = Path(args.compare_out)
    rows = analyse(root, args.reference_window)
    summary = summarize(rows)
    checks = goal_check(rows, args.goal)
    where = (
        f"the mean of Retrain's last {args.reference_window} rounds"
        if args.reference_window > 0
        else "Retrain's final model"
    )
    print(
        f"level: {where}; test acc within {TEST_TOL} point, forget acc (and ASR) within "
        f"{FORGET_TOL} points"
    )
    _print_summary(summary)
    _print_per_seed(rows)
    slopes = [r for r in rows if r.get("slope_per_10_rounds") is not None]
    if slopes:
        print(
            f"\nslope of the test accuracy over the last {SLOPE_ROUNDS} rounds (points/10 rounds):"
        )
        for r in slopes:
            print(
                f"  {r['scenario']} {r['seed']} {r['method']}: {r['slope_per_10_rounds']:+.2f} "
                f"({r['phase_rounds']} rounds)"
            )
    if checks:
        _print_goal(checks, args.goal)
    if args.retrain_plot:
        plot_retrain(root, Path(args.retrain_plot), args.reference_window, args.mark_round)
    if args.json:
        write_json(args.json, {"rows": rows, "summary": summary, "goal": checks})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
