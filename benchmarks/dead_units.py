"""Benchmark: how many ReLU units of a saved model still fire, layer by layer.

Loads each checkpoint (``checkpoint-*.pt`` of a run: the model's ``state_dict`` and what
model and data set it is), builds the model, runs the data set's first ``--images`` test images
through it and counts, for every ``Conv2d`` and ``Linear`` layer but the last (in the
default CNN each is followed by a ReLU), the units (channels, neurons) whose output is
positive for at least one image: a unit that is never positive passes no gradient back
through its ReLU and does not come back by training ("dead"). Also the share of positive
outputs and the spread of the logits. ``--negate`` adds, for each checkpoint, the model
with the given layers negated as NoT negates them (weights and bias, and weights only),
so an original checkpoint shows what negation does before any recovery round:

    python benchmarks/dead_units.py RUN/checkpoint-final.pt ... [--negate conv1] \\
        [--images 2000] [--json out.json]

Counts are exact for the given checkpoints and images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import write_json  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from not_flower.task.data import load_dataset  # noqa: E402
from not_flower.task.models import build_model  # noqa: E402
from strategies.negation import NegationError, negate_model_, plan_negation  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint-*.pt files of runs")
    parser.add_argument("--negate", nargs="*", default=[], help="also these layers negated")
    parser.add_argument("--images", type=int, default=2000, help="test images (from the first)")
    parser.add_argument("--json", help="write the results here")
    return parser


def alive_units(model: nn.Module, x: torch.Tensor) -> dict[str, dict]:
    """Per hidden ``Conv2d``/``Linear`` layer (all but the last): units positive on at
    least one input, their number, and the share of positive outputs.

    Parameters
    ----------
    model : nn.Module
        The model (evaluated in ``eval`` mode, without gradients).
    x : torch.Tensor
        Inputs, ``(N, C, H, W)``.

    Returns
    -------
    dict
        Layer name -> ``{"alive": int, "units": int, "positive": float}``, in forward order;
        and ``"logit_std"``: the mean over inputs of the logits' standard deviation.
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
        for name, module in layers[:-1]
    ]
    model.eval()
    with torch.no_grad():
        logits = model(x)
    for hook in hooks:
        hook.remove()
    found: dict[str, dict] = {}
    for name, _ in layers[:-1]:
        positive = outputs[name] > 0
        dims = (0, 2, 3) if positive.dim() == 4 else (0,)
        per_unit = positive.any(dim=dims)
        found[name] = {
            "alive": int(per_unit.sum()),
            "units": int(per_unit.numel()),
            "positive": round(float(positive.float().mean()), 4),
        }
    found["logit_std"] = round(float(logits.std(dim=1).mean()), 4)
    return found


def negated(
    model: nn.Module, state: dict, layers: list[str], example: torch.Tensor, *, bias: bool
) -> dict:
    """``state`` with ``layers`` negated as NoT negates them: the library's own plan
    (:func:`strategies.negation.plan_negation`: selectors such as ``first``, aliases, the
    checks) applied by :func:`strategies.negation.negate_model_` to ``model`` loaded with
    ``state``; weights and bias, or weights only."""
    model.load_state_dict(state)
    try:
        plan = plan_negation(model, example, layers, include_bias=bias)
    except NegationError as err:
        raise SystemExit(f"dead_units: --negate {' '.join(layers)}: {err}") from None
    negate_model_(model, plan)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.images < 1:
        print(f"dead_units: --images must be >= 1, got {args.images}", file=sys.stderr)
        return 2
    missing = [p for p in args.checkpoints if not Path(p).is_file()]
    if missing:
        print(f"dead_units: no such checkpoint: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = []
    data: dict[str, torch.Tensor] = {}
    for path in args.checkpoints:
        saved = torch.load(path, weights_only=False, map_location="cpu")
        meta = saved["meta"]
        name = meta["dataset"]
        if name not in data:
            # the run's test split (a data set in a data-dir other than the default or
            # Debian's is not found here: give it a default place)
            ds = load_dataset(name, download=False)
            data[name] = torch.tensor(np.asarray(ds.x_test[: args.images]))
        x = data[name]
        model = build_model(meta["model"], tuple(meta["input_shape"]), int(meta["num_classes"]))
        variants = {"as saved": saved["state_dict"]}
        if args.negate:
            state, example = saved["state_dict"], x[:1]
            variants["negated (weights and bias)"] = negated(
                model, state, args.negate, example, bias=True
            )
            variants["negated (weights only)"] = negated(
                model, state, args.negate, example, bias=False
            )
        for variant, state in variants.items():
            model.load_state_dict(state)
            rows.append({"checkpoint": str(path), "variant": variant, **alive_units(model, x)})
    for row in rows:
        layers = [k for k in row if isinstance(row[k], dict)]
        cells = "  ".join(f"{k} {row[k]['alive']}/{row[k]['units']}" for k in layers)
        print(
            f"{row['checkpoint']}  [{row['variant']}]  alive: {cells}  logit std {row['logit_std']}"
        )
    if args.json:
        command = "python benchmarks/dead_units.py " + " ".join(argv or sys.argv[1:])
        write_json(args.json, {"command": command.strip(), "images": args.images, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
