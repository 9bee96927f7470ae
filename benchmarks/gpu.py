"""Benchmark for a GPU machine: ResNet-18 on CUDA, Retrain vs FT vs NoT, one command.

Runs the comparison command with ResNet-18 (digits, 10 clients, backdoor scenario, one
seed by default) with the ClientApps on the GPU (``--gpus-per-client``), records wall
times per run next to the report, and prints the device. Meant to run as one short
scripted command on a lent GPU machine:

    python benchmarks/gpu.py --out /tmp/gpu-bench [--seeds 0] [--train-rounds 10]

It refuses to run without CUDA (the CPU numbers are in BENCHMARKS.md already).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", nargs="+", default=["0"])
    parser.add_argument("--train-rounds", default="10")
    parser.add_argument("--recovery-rounds", nargs="+", default=["5", "10"])
    parser.add_argument("--gpus-per-client", default="0.25")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    from not_flower import compare

    t0 = time.perf_counter()
    code = compare.main([
        "--out", args.out, "--seeds", *args.seeds, "--scenarios", "backdoor",
        "--methods", "retrain", "ft", "not", "--train-rounds", args.train_rounds,
        "--recovery-rounds", *args.recovery_rounds, "--set", "model=resnet18",
        "--gpus-per-client", args.gpus_per_client, "--cpus-per-client", "2",
        "--num-cpus", str(max(2, torch.get_num_threads())),
    ])
    info = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "wall_s": time.perf_counter() - t0, "exit_code": code}
    Path(args.out, "gpu-benchmark.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
