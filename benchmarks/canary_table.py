"""Benchmark: the departing client's canary check on every model of a comparison.

Reads the ``results.json`` files that ``python -m not_flower.experiments.compare --set
canary.clients=<target>`` wrote under ``<compare-out>/runs/<scenario>/seed<s>/<method>/``
and prints, per scenario, method and model, the canary p-value and AUC of every seed and
how many seeds detect the canaries (p < 0.05), next to the backdoor's ASR; writes JSON:

    python benchmarks/canary_table.py outputs/compare-canary [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import write_json  # benchmarks/common.py

ALPHA = 0.05
#: Models in the order of the table (those a run does not have are left out).
MODELS = ("original", "negated", "recovered@10", "recovered@20", "stopped", "retrained")


def collect(root: Path) -> list[dict]:
    """One row per (scenario, method, model) with each seed's canary p-value, AUC, ASR."""
    rows: dict[tuple, dict] = {}
    for path in sorted((root / "runs").glob("*/seed*/*/results.json")):
        scenario, seed, method = path.parts[-4], path.parts[-3], path.parts[-2]
        models = json.loads(path.read_text()).get("models", {})
        for name in MODELS:
            model = models.get(name)
            if not isinstance(model, dict) or "canary_p" not in model:
                continue
            if name == "original" and method != "not":
                continue  # the shared original: report it once
            label = "Original" if name == "original" else method
            row = rows.setdefault(
                (scenario, label, name),
                {"scenario": scenario, "method": label, "model": name, "seeds": {}},
            )
            row["seeds"][seed] = {
                "p": model["canary_p"],
                "auc": model.get("canary_auc"),
                "asr": model.get("asr"),
            }
    rank = {"Original": 0, "retrain": 1, "ft": 2, "not": 3}
    out = sorted(
        rows.values(),
        key=lambda r: (
            r["scenario"],
            rank.get(r["method"], 9),
            r["method"],
            MODELS.index(r["model"]),
        ),
    )
    for row in out:
        row["detected"] = sum(s["p"] < ALPHA for s in row["seeds"].values())
    return out


def table(rows: list[dict]) -> str:
    """Markdown table: p-values and AUCs per seed, seeds detected, ASR range."""
    lines = [
        "| scenario | method | model | canary p per seed | canary AUC per seed "
        f"| detected (p < {ALPHA}) | ASR % per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seeds = [row["seeds"][k] for k in sorted(row["seeds"])]
        p_values = ", ".join(f"{s['p']:.4f}" for s in seeds)
        aucs = ", ".join(f"{s['auc']:.3f}" for s in seeds)
        asrs = ", ".join("-" if s["asr"] is None else f"{100 * s['asr']:.1f}" for s in seeds)
        lines.append(
            f"| {row['scenario']} | {row['method']} | {row['model']} | {p_values} | {aucs} "
            f"| {row['detected']} of {len(seeds)} | {asrs} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the comparison's --out folder")
    parser.add_argument("--json", type=Path, help="write the rows here")
    return parser


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.root / "runs").is_dir():
        parser.error(f"{args.root} has no runs/ folder: give a comparison's --out folder")
    rows = collect(args.root)
    if not rows:
        parser.error(f"no run under {args.root} measured canaries (--set canary.clients=...)")
    print(table(rows))
    if args.json:
        write_json(args.json, {"alpha": ALPHA, "rows": rows})


if __name__ == "__main__":
    main()
