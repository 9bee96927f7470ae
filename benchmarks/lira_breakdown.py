"""Per-sample breakdown of the per-example attack (LiRA) on a comparison's saved models.

For every seed folder of one scenario of a ``python -m not_flower.experiments.compare`` output, this
script loads the harness's own cached reference models (``<out>/mia-reference``), attacks
the Original (``checkpoint-original.pt`` of the shared-original, NoT or FT run) and the
final model of every other run, and prints, per group of samples, what the attack sees:

* groups: the forget set split into its poisoned samples (trigger + flipped label), its
  mislabelled ones (``mislabel`` scenario) and its clean ones; the held-out set (the
  attack's non-members: the clean test split and the test images altered the way the
  clients altered theirs); the retained clients' training data;
* the reference models' side: the "out" mean, the gap between the "in" and the "out" mean
  before the clamp, the share of samples whose "in" mean was raised to the "out" mean
  (they score exactly 0), the pooled standard deviation;
* the attacked model's side: its confidence relative to the "out" mean (in standard
  deviations), the mean and median score, and the group's AUC and TPR at 1 % FPR against
  the held-out samples (the threshold set on them).

    python benchmarks/lira_breakdown.py outputs/lira-diag [--scenario backdoor] \\
        [--json breakdown.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from common import write_json  # benchmarks/common.py

#: Rows of the table: group name -> what it is.
GROUPS = {
    "forget": "the forgotten client's training data (what lira_auc scores)",
    "forget-poisoned": "its samples with the trigger and the flipped label",
    "forget-mislabelled": "its samples with a wrong label (mislabel scenario)",
    "forget-clean": "its other samples",
    "forget-styled": "its inverted images (style scenario)",
    "forget-styled-mislabelled": "its inverted images with a wrong label (memorise)",
    "heldout": "the clean test split",
    "heldout-poisoned": "test images with the trigger and the backdoor label (matched)",
    "heldout-mislabelled": "test images with a wrong label (matched)",
    "heldout-styled": "inverted test images (matched)",
    "heldout-styled-mislabelled": "inverted test images with a wrong label (matched)",
    "retained": "the retained clients' training data",
}


def group_masks(universe, forget: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of :data:`GROUPS` over the universe (empty groups left out)."""
    from not_flower.evaluation.reference_models import (  # noqa: E501
        MISLABELLED,
        POISONED,
        STYLED,
        STYLED_MISLABELLED,
    )

    heldout = np.zeros(len(universe.y), dtype=bool)
    heldout[universe.heldout] = True
    kind = np.zeros(len(universe.y)) if universe.kind is None else universe.kind
    poisoned, wrong = kind == POISONED, kind == MISLABELLED
    masks = {
        "forget": forget,
        "forget-poisoned": forget & poisoned,
        "forget-mislabelled": forget & wrong,
        "forget-styled": forget & (kind == STYLED),
        "forget-styled-mislabelled": forget & (kind == STYLED_MISLABELLED),
        "forget-clean": forget & (kind == 0),
        "heldout": heldout & (kind == 0),
        "heldout-poisoned": heldout & poisoned,
        "heldout-mislabelled": heldout & wrong,
        "heldout-styled": heldout & (kind == STYLED),
        "heldout-styled-mislabelled": heldout & (kind == STYLED_MISLABELLED),
        "retained": ~forget & ~heldout,
    }
    return {k: v for k, v in masks.items() if v.any()}


def breakdown(
    target_conf: np.ndarray,
    reference_conf: np.ndarray,
    reference_in: np.ndarray,
    masks: dict[str, np.ndarray],
) -> dict[str, dict[str, float]]:
    """What LiRA sees per group of samples (see the module docstring).

    Parameters
    ----------
    target_conf : np.ndarray
        ``(N,)`` logit-scaled confidence of the attacked model.
    reference_conf, reference_in : np.ndarray
        ``(M, N)`` the reference models' confidences and membership.
    masks : dict[str, np.ndarray]
        Group -> ``(N,)`` bool; needs ``"heldout"`` (the negatives of AUC and TPR).

    Returns
    -------
    dict[str, dict[str, float]]
        Group -> ``n``, ``clamped`` (share), ``gap`` (mean "in" minus "out" mean before
        the clamp), ``mu_out``, ``sd``, ``z_out`` (mean ``(c - mu_out) / sd``),
        ``score_mean``, ``score_median``, ``auc`` and ``tpr_fpr1`` against the held-out
        samples (fractions).
    """
    from not_flower.evaluation.membership import (  # pylint: disable=import-outside-toplevel
        lira_gaussians,
        lira_scores,
        membership_auc,
        tpr_at_fpr,
    )

    fit = lira_gaussians(target_conf, reference_conf, reference_in)
    scores = lira_scores(target_conf, reference_conf, reference_in)
    neg = scores[masks["heldout"]]
    out = {}
    for name, mask in masks.items():
        s = scores[mask]
        out[name] = {
            "n": int(mask.sum()),
            "clamped": float(fit["clamped"][mask].mean()),
            "gap": float((fit["mu_in_raw"] - fit["mu_out"])[mask].mean()),
            "mu_out": float(fit["mu_out"][mask].mean()),
            "sd": float(fit["sd_out"][mask].mean()),
            "z_out": float(((target_conf - fit["mu_out"]) / fit["sd_out"])[mask].mean()),
            "score_mean": float(s.mean()),
            "score_median": float(np.median(s)),
            "auc": membership_auc(s, neg),
            "tpr_fpr1": tpr_at_fpr(s, neg, 0.01),
        }
    return out


def _models(seed_dir: Path) -> dict[str, Path]:
    """Model name -> checkpoint: the Original, then every run's final model."""
    found = {}
    for run in ("original", "not", "ft"):
        path = seed_dir / run / ("checkpoint-final.pt" if run == "original" else "")
        path = path if run == "original" else seed_dir / run / "checkpoint-original.pt"
        if path.is_file():
            found["original"] = path
            break
    for path in sorted(seed_dir.glob("*/checkpoint-final.pt")):
        if path.parent.name != "original":
            found[path.parent.name] = path
    return found


def attack_seed(
    seed_dir: Path, cache: Path, *, as_reported: bool = False, epochs: int = 0
) -> dict[str, dict]:
    """:func:`breakdown` of every model of one seed folder (``model -> group -> stats``).

    Each model also gets ``"_metrics"``: the harness's numbers (``lira_*``) and, under
    ``"_unmatched"``, the forget set's AUC and TPR against the clean held-out samples,
    unweighted (the comparison the attack made before the matched held-out set).
    """
    # pylint: disable=import-outside-toplevel
    from not_flower.app.specs import data_spec, reference_spec
    from not_flower.common.config import parse_run_config
    from not_flower.common.store import load_checkpoint
    from not_flower.evaluation.membership import (
        logit_confidence,
        matching_weights,
        membership_auc,
        membership_metrics,
        tpr_at_fpr,
    )
    from not_flower.evaluation.metrics import predict_logits
    from not_flower.evaluation.reference_models import build_universe, forget_mask, reference_set
    from not_flower.task.models import build_model
    from not_flower.task.training import dataset_for

    res = json.loads((seed_dir / "retrain" / "results.json").read_text())
    keys = {k: v for k, v in res["config"].items() if k != "out-dir"}
    if epochs:
        keys["mia.reference-epochs"] = epochs
    cfg = parse_run_config({**keys, "mia.cache-dir": str(cache)})
    n_parts = int(res["num_partitions"])
    spec = data_spec(cfg)
    u = build_universe(spec, n_parts, altered_heldout=not as_reported)
    ref = _version1_reference(cache, cfg, u) if as_reported else None
    ref = ref or reference_set(spec, reference_spec(cfg), u, n_parts)
    forget = forget_mask(u, {int(c) for c in cfg.unlearn_clients})
    masks = group_masks(u, forget)
    heldout = np.zeros(len(u.y), dtype=bool)
    heldout[u.heldout] = True
    strata = u.strata()
    weights = matching_weights(strata[forget], strata[heldout])
    data = dataset_for(spec)
    model = build_model(cfg.model, tuple(data.x_train.shape[1:]), data.num_classes)
    out = {}
    for name, path in _models(seed_dir).items():
        state, _ = load_checkpoint(path)
        model.load_state_dict(state)
        conf = logit_confidence(predict_logits(model, u.x), u.y)
        out[name] = breakdown(conf, ref.confidences, ref.membership, masks)
        scores = lira_scores_of(conf, ref)
        neg = scores[masks["heldout"]]
        metrics = membership_metrics(scores[forget], scores[heldout], nonmember_weights=weights)
        metrics["_unmatched"] = {
            "lira_auc": membership_auc(scores[forget], neg),
            "lira_tpr_fpr1": tpr_at_fpr(scores[forget], neg, 0.01),
        }
        out[name]["_metrics"] = metrics
    return out


def _version1_reference(cache: Path, cfg, universe):
    """The reference models the comparison cached before the held-out set was matched
    (cache version 1), when their labels are the universe's: the attack as reported."""
    import hashlib  # pylint: disable=import-outside-toplevel

    from not_flower.evaluation.reference_models import ReferenceSet  # pylint: disable=C0415

    labels = hashlib.sha256(universe.y.tobytes()).hexdigest()
    for path in sorted(cache.glob(f"reference-{cfg.dataset}-seed{cfg.seed}-*.npz")):
        with np.load(path) as f:
            key = json.loads(str(f["key"]))
            if key["version"] == 1 and key["labels_sha256"] == labels:
                print(f"{path.name}: the version-1 reference models, as reported", flush=True)
                return ReferenceSet(
                    f["confidences"], f["membership"].astype(bool), 0.0, path, loaded=True
                )
    return None


def lira_scores_of(conf: np.ndarray, ref) -> np.ndarray:
    """LiRA scores of a model's confidences against a :class:`ReferenceSet`."""
    from not_flower.evaluation.membership import lira_scores  # pylint: disable=import-outside-toplevel

    return lira_scores(conf, ref.confidences, ref.membership)


def _ms(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [scale * v for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def _models(per_seed: dict[str, dict[str, dict]]) -> list[str]:
    """The models of every seed: Original, then Retrain, then the others by name."""
    return sorted(
        {m for runs in per_seed.values() for m in runs},
        key=lambda m: (m not in ("original", "retrain"), m != "original", m),
    )


def table(per_seed: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown table: one row per (model, group), mean ± std over seeds."""
    lines = [
        "| model | group | n | clamped % | in-out gap | z of target vs out | "
        "score mean | score median | AUC vs held-out | TPR@1%FPR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    models = _models(per_seed)
    for model in models:
        for group in GROUPS:
            got = [runs[model][group] for runs in per_seed.values() if group in runs.get(model, {})]
            if not got:
                continue
            cells = [
                _ms([g["n"] for g in got], digits=0),
                _ms([g["clamped"] for g in got], 100, 1),
                _ms([g["gap"] for g in got]),
                _ms([g["z_out"] for g in got]),
                _ms([g["score_mean"] for g in got]),
                _ms([g["score_median"] for g in got]),
                _ms([g["auc"] for g in got], 100),
                _ms([g["tpr_fpr1"] for g in got], 100),
            ]
            lines.append(f"| {model} | {group} | " + " | ".join(cells) + " |")
    return lines


def metric_table(per_seed: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown table: the forget set's AUC and TPR, unmatched and matched, per model."""
    lines = [
        "| model | AUC vs clean held-out | TPR@1%FPR vs clean held-out | "
        "AUC vs matched held-out | TPR@1%FPR vs matched held-out |",
        "|---|---|---|---|---|",
    ]
    models = _models(per_seed)
    for model in models:
        got = [runs[model]["_metrics"] for runs in per_seed.values() if model in runs]
        cells = [
            _ms([g["_unmatched"]["lira_auc"] for g in got], 100),
            _ms([g["_unmatched"]["lira_tpr_fpr1"] for g in got], 100),
            _ms([g["lira_auc"] for g in got], 100),
            _ms([g["lira_tpr_fpr1"] for g in got], 100),
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the --out folder of not_flower.experiments.compare")
    parser.add_argument("--scenario", default="backdoor")
    parser.add_argument("--json", default="")
    parser.add_argument(
        "--as-reported",
        action="store_true",
        help="the universe without held-out poisoned samples (the attack as it was)",
    )
    parser.add_argument(
        "--reference-epochs",
        type=int,
        default=0,
        help="train the reference models this many epochs (0: as the comparison did)",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    root = args.out / "runs" / args.scenario
    seeds = sorted(p for p in root.glob("seed*") if (p / "retrain" / "results.json").is_file())
    if not seeds:
        parser.error(f"no seed*/retrain/results.json under {root}")
    cache = args.out / "mia-reference"
    per_seed = {
        p.name: attack_seed(p, cache, as_reported=args.as_reported, epochs=args.reference_epochs)
        for p in seeds
    }
    print("\n".join(table(per_seed)))
    print()
    print("\n".join(metric_table(per_seed)))
    if args.json:
        write_json(args.json, per_seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
