"""Benchmark for a GPU machine: Fashion-MNIST with ResNet-18 and the small ViT, one command.

For each model (``--models``, default ``resnet18 vit``), the backdoor scenario of
``benchmarks/faster_recovery.py`` on Fashion-MNIST (10 clients IID, client 0 poisons 40 %
of its samples with a 4x4 trigger, label 0): the original (trained once), Retrain from
scratch, then FT, NoT (the paper's) and the recommended recovery setting, each from the
original's checkpoint, with the ClientApps on the GPU. The rounds to Retrain's level,
MB and client CPU seconds come from the same rule as on the CPU; wall seconds per model
and the device are recorded next to them.

A time budget (``--budget-s``, default 480 s = 8 minutes, for the whole command): each
model gets an equal share; a model whose share is spent starts no further setting (the
run in progress finishes), and what was not started is listed in the JSON.

The device machine has no internet: the data travel with the working tree, in an ignored
folder (31 MB, under the 64 MiB that travel)::

    mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
    python benchmarks/gpu.py --out /tmp/gpu-bench [--budget-s 480] [--models resnet18 vit]

It refuses to run without CUDA (``--allow-cpu`` runs the same plan on the CPU, to check
the command; its numbers are not GPU numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faster_recovery  # benchmarks/faster_recovery.py
from common import write_json  # benchmarks/common.py

MODELS = ("resnet18", "vit")
#: FT, NoT as in the paper, and the recovery setting BENCHMARKS.md recommends.
SETTINGS = ("ft", "paper", "weights-only+local-epochs-2")
DATA_DIR = "data/fashion-mnist"
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def check_data(folder: Path) -> str | None:
    """Why ``folder`` cannot serve as Fashion-MNIST's ``data-dir`` (None: it can)."""
    missing = [
        f
        for f in FILES
        if not (folder / f).is_file() and not (folder / f.removesuffix(".gz")).is_file()
    ]
    if not missing:
        return None
    return (
        f"Fashion-MNIST not found in {folder} (missing {', '.join(missing)}); copy it "
        f"there first: mkdir -p {DATA_DIR} && cp /usr/share/datasets/fashion-mnist/*.gz "
        f"{DATA_DIR}/ (Debian package dataset-fashion-mnist)"
    )


def base_config(model: str, data_dir: Path, train_subset: int) -> dict:
    """Run-config keys of every run of one model."""
    return {
        "dataset": "fashion-mnist",
        "data-dir": str(data_dir),
        "model": model,
        "train-subset": train_subset,
        "test-subset": 2000,
        "local-epochs": 1,
        "backdoor.trigger-size": 4,
    }


def run_model(out: Path, model: str, args: argparse.Namespace, deadline: float) -> dict:
    """Original, Retrain and :data:`SETTINGS` for one model within ``deadline``."""
    t0 = time.perf_counter()
    rows = faster_recovery.run_seed(
        out / model,
        args.seed,
        list(args.settings),
        args.recovery_rounds,
        base_config(model, args.data_dir, args.train_subset),
        args.train_rounds,
        deadline=deadline,
    )
    done = {r["setting"] for r in rows}
    return {
        "model": model,
        "wall_s": time.perf_counter() - t0,
        "rows": rows,
        "not_started": [s for s in args.settings if s not in done],
        "table": faster_recovery.table(
            rows, args.recovery_rounds, args.train_rounds, {"local-epochs": 1}
        ),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument(
        "--settings", nargs="+", choices=list(faster_recovery.SETTINGS), default=list(SETTINGS)
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=480.0,
        help="seconds for the whole command, shared equally by the models",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-rounds", type=int, default=10)
    p.add_argument("--recovery-rounds", type=int, default=8)
    p.add_argument("--train-subset", type=int, default=12000)
    p.add_argument("--data-dir", type=Path, default=Path(DATA_DIR))
    p.add_argument("--gpus-per-client", type=float, default=0.2)
    p.add_argument(
        "--allow-cpu",
        action="store_true",
        help="run on the CPU (checks the command; no GPU numbers)",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.budget_s <= 0:
        print(f"--budget-s must be > 0, got {args.budget_s}", file=sys.stderr)
        return 2
    args.data_dir = args.data_dir.expanduser().resolve()
    why = check_data(args.data_dir)
    if why:
        print(why, file=sys.stderr)
        return 2
    import torch  # pylint: disable=import-outside-toplevel

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print(
            "no CUDA device: this benchmark needs a GPU (--allow-cpu to check the "
            "command on the CPU)",
            file=sys.stderr,
        )
        return 2
    if cuda:
        faster_recovery.SIM_RESOURCES.update(
            num_cpus=max(2, torch.get_num_threads()),
            cpus_per_client=2,
            gpus_per_client=args.gpus_per_client,
        )
    out = args.out.expanduser().resolve()
    start = time.monotonic()
    share = args.budget_s / len(args.models)
    results = []
    for i, model in enumerate(args.models):
        results.append(run_model(out, model, args, start + (i + 1) * share))
        print("\n".join(results[-1]["table"]), flush=True)
    info = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "budget_s": args.budget_s,
        "wall_s": time.monotonic() - start,
        "models": results,
    }
    write_json(out / "gpu-benchmark.json", info)
    print(json.dumps({k: v for k, v in info.items() if k != "models"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
