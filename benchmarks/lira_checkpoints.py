"""Benchmark: the per-example attack (LiRA) on the final models of a faster-recovery run.

``benchmarks/faster_recovery.py`` keeps every run's ``checkpoint-final.pt``. This script
attacks each of them with the harness's own LiRA (:class:`not_flower.evaluation.reference_models.
MembershipHarness`: K reference models per seed, trained once and cached) and prints, per
setting, LiRA's AUC and TPR at 1 % FPR on the forgotten client's data (non-members: the
held-out test split), mean ± std over seeds, next to Retrain's and the Retrain-vs-Retrain
(other seed) noise floor. A sanity line says whether the attack separates the original
from Retrain at all (Original's TPR@1%FPR above Retrain's by more than 2 points in every
seed); where it does not, there is nothing per-example to detect.

    python benchmarks/lira_checkpoints.py outputs/faster-recovery-fmnist \\
        [--reference-models 8] [--reference-epochs 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from common import write_json  # benchmarks/common.py


def attack_seed(seed_dir: Path, models: int, epochs: int, cache: Path) -> dict[str, dict]:
    """LiRA numbers of every run of one seed folder (``setting -> metrics``)."""
    from not_flower.app.specs import data_spec, reference_spec  # pylint: disable=import-outside-toplevel
    from not_flower.common.config import parse_run_config  # pylint: disable=import-outside-toplevel
    from not_flower.common.store import load_checkpoint  # pylint: disable=import-outside-toplevel
    from not_flower.evaluation.reference_models import MembershipHarness  # pylint: disable=import-outside-toplevel
    from not_flower.task.models import build_model  # pylint: disable=import-outside-toplevel
    from not_flower.task.training import dataset_for  # pylint: disable=import-outside-toplevel

    retrain = json.loads((seed_dir / "retrain" / "results.json").read_text())
    keys = {k: v for k, v in retrain["config"].items() if k not in ("out-dir",)}
    cfg = parse_run_config(
        {
            **keys,
            "mia.reference-models": models,
            "mia.reference-epochs": epochs,
            "mia.cache-dir": str(cache),
        }
    )
    harness = MembershipHarness(data_spec(cfg), reference_spec(cfg))
    harness.set_forget(int(retrain["num_partitions"]), {int(c) for c in cfg.unlearn_clients})
    data = dataset_for(data_spec(cfg))
    model = build_model(cfg.model, tuple(data.x_train.shape[1:]), data.num_classes)
    out = {}
    for run in sorted(p.parent for p in seed_dir.glob("*/checkpoint-final.pt")):
        state, _ = load_checkpoint(run / "checkpoint-final.pt")
        model.load_state_dict(state)
        out[run.name] = harness.metrics(model)
        print(
            f"{seed_dir.name} {run.name}: LiRA AUC {100 * out[run.name]['lira_auc']:.2f} "
            f"TPR@1%FPR {100 * out[run.name]['lira_tpr_fpr1']:.2f}",
            flush=True,
        )
    out["_reference_train_seconds"] = harness.info()["train_seconds"]
    return out


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def table(per_seed: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown table (one row per setting) and the noise-floor and sanity lines."""
    settings = sorted(
        {s for runs in per_seed.values() for s in runs if not s.startswith("_")},
        key=lambda s: (s not in ("original", "retrain"), s),
    )
    lines = [
        "| setting | seeds | LiRA AUC | TPR@1%FPR | TPR@0.1%FPR | retain TPR@1%FPR |",
        "|---|---|---|---|---|---|",
    ]
    for name in settings:
        got = [runs[name] for runs in per_seed.values() if name in runs]
        lines.append(
            "| "
            + " | ".join(
                [name, str(len(got))]
                + [
                    _ms([100 * g[k] for g in got])
                    for k in ("lira_auc", "lira_tpr_fpr1", "lira_tpr_fpr01", "lira_retain_tpr_fpr1")
                ]
            )
            + " |"
        )
    retrains = [runs["retrain"] for runs in per_seed.values() if "retrain" in runs]
    if len(retrains) > 1:
        pairs = list(itertools.combinations(retrains, 2))
        lines.append("")
        lines.append(
            "Retrain vs Retrain (seed noise): |LiRA AUC difference| "
            + _ms([100 * abs(a["lira_auc"] - b["lira_auc"]) for a, b in pairs])
            + ", |TPR@1%FPR "
            "difference| "
            + _ms([100 * abs(a["lira_tpr_fpr1"] - b["lira_tpr_fpr1"]) for a, b in pairs])
            + " points."
        )
    both = [
        (runs["original"], runs["retrain"])
        for runs in per_seed.values()
        if "original" in runs and "retrain" in runs
    ]
    if both:
        separates = all(o["lira_tpr_fpr1"] - r["lira_tpr_fpr1"] > 0.02 for o, r in both)
        detail = ", ".join(
            f"{100 * o['lira_tpr_fpr1']:.1f} vs {100 * r['lira_tpr_fpr1']:.1f}" for o, r in both
        )
        lines.append("")
        lines.append(
            f"Sanity check: LiRA {'separates' if separates else 'does NOT separate'} "
            f"Original from Retrain on the forget set (TPR@1%FPR, Original vs "
            f"Retrain per seed: {detail} %)."
        )
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the --out folder of faster_recovery.py")
    parser.add_argument("--reference-models", type=int, default=8)
    parser.add_argument("--reference-epochs", type=int, default=20)
    parser.add_argument("--json", default="")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.reference_models < 2 or args.reference_models % 2:
        parser.error(f"--reference-models must be even and >= 2, got {args.reference_models}")
    seeds = sorted(p for p in args.out.glob("seed*") if (p / "retrain" / "results.json").is_file())
    if not seeds:
        parser.error(f"no seed*/retrain/results.json under {args.out}")
    cache = args.out / "mia-reference"
    per_seed = {
        p.name: attack_seed(p, args.reference_models, args.reference_epochs, cache) for p in seeds
    }
    print()
    print("\n".join(table(per_seed)))
    if args.json:
        write_json(args.json, per_seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
