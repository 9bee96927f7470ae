"""Benchmark: time and peak memory of negation on an ArrayRecord, against one copy.

For ResNet-18, the small ViT and the CNN (not-flower's models on CIFAR-shaped input),
negate (a) the first layer (what NoT does by default) and (b) every parametrised layer
except the output layer (the "all layers" ablation; not an antichain, so it bypasses
``plan_negation``'s check and calls ``negate`` on the keys directly), on a
``flwr.app.ArrayRecord`` as the strategy holds it. Reference: the time and memory of ONE
copy of the bytes negated (``np.copy`` of those tensors), the memory-bandwidth bound.

Peak memory is measured with ``tracemalloc`` (numpy reports its buffers to it): the
extra bytes allocated while negating, above what was live before. The full model's size
is printed beside it, so a full-model copy would show.

    python benchmarks/negation.py [--repeat 20] [--json benchmarks/results/negation.json]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc

import numpy as np
import torch
from flwr.app import ArrayRecord

from common import write_json  # benchmarks/common.py
from not_flower.task.models import build_model, example_input
from strategies.negation import forward_layers, negate, plan_negation

SHAPE = (3, 32, 32)


def timed(fn, repeat: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_extra_bytes(fn) -> int:
    """Peak bytes allocated by ``fn()`` above what was live when it started."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del out
    return peak - base


def bench_model(name: str, repeat: int) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(name, SHAPE, 10)
    arrays = ArrayRecord(model.state_dict())
    model_bytes = sum(a.numpy().nbytes for a in arrays.values())
    layers = forward_layers(model, example_input(SHAPE))
    first = plan_negation(model, example_input(SHAPE), "first").keys
    all_keys = [k for layer in layers[:-1] for k in layer.param_keys]
    rows = []
    for label, keys in (("first layer", list(first)), ("all but output", all_keys)):
        negated_bytes = sum(arrays[k].numpy().nbytes for k in keys)
        sources = [arrays[k].numpy() for k in keys]
        t_neg = timed(lambda keys=keys: negate(arrays, keys), repeat)
        t_copy = timed(lambda sources=sources: [np.copy(a) for a in sources], repeat)
        m_neg = peak_extra_bytes(lambda keys=keys: negate(arrays, keys))
        m_copy = peak_extra_bytes(lambda sources=sources: [np.copy(a) for a in sources])
        rows.append(
            {
                "model": name,
                "negated": label,
                "tensors": len(keys),
                "model_MB": model_bytes / 1e6,
                "negated_MB": negated_bytes / 1e6,
                "negate_ms": 1e3 * t_neg,
                "copy_ms": 1e3 * t_copy,
                "time_ratio": t_neg / t_copy if t_copy else float("nan"),
                "negate_peak_MB": m_neg / 1e6,
                "copy_peak_MB": m_copy / 1e6,
                "memory_ratio": m_neg / m_copy if m_copy else float("nan"),
                "full_model_copy": m_neg >= model_bytes,
            }
        )
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["cnn", "vit", "resnet18"])
    parser.add_argument("--json", default="")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rows = [r for m in args.models for r in bench_model(m, args.repeat)]
    head = (
        f"{'model':<9} {'negated':<15} {'tensors':>7} {'model MB':>9} {'neg MB':>8} "
        f"{'neg ms':>8} {'copy ms':>8} {'t ratio':>7} {'peak MB':>8} {'copy MB':>8} "
        f"{'m ratio':>7}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['model']:<9} {r['negated']:<15} {r['tensors']:>7} {r['model_MB']:>9.2f} "
            f"{r['negated_MB']:>8.3f} {r['negate_ms']:>8.3f} {r['copy_ms']:>8.3f} "
            f"{r['time_ratio']:>7.2f} {r['negate_peak_MB']:>8.3f} {r['copy_peak_MB']:>8.3f} "
            f"{r['memory_ratio']:>7.2f}"
        )
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
