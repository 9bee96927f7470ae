"""Benchmark: what a ClientApp process costs to start on digits, with and without
scikit-learn.

In a deployment Flower's SuperNode starts one ``flwr-clientapp`` process per message (a
train or evaluate message of every round), and each imports the app and loads its data
before it trains. This times, in fresh Python processes started alternately, the app's
ClientApp import plus the digits load as the app does them now (no scikit-learn), and the
same with the scikit-learn modules the digits load and the metrics imported before
(``sklearn.datasets``, ``sklearn.model_selection``, ``sklearn.metrics``); prints the
median CPU seconds (user + system) and wall seconds of each, and writes JSON:

    python benchmarks/clientapp_start.py --repeats 10 --json out.json

CPU and wall seconds measure the machine; the difference between the two rows is the point.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import write_json  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
APP = (
    "import not_flower.app.client_app\n"
    "from not_flower.task.data import load_dataset\n"
    "load_dataset('digits')\n"
)
#: What a ClientApp process imported on digits before the pinned split and the lazy imports.
SKLEARN = "import sklearn.datasets, sklearn.model_selection, sklearn.metrics\n"
VARIANTS = {"app (now)": APP, "app + scikit-learn (before)": APP + SKLEARN}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="processes per variant")
    parser.add_argument("--json", help="write the results here")
    return parser


def one(code: str) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one fresh Python running ``code``."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"clientapp_start: the child failed ({proc.returncode}): {code!r}")
    return usage.ru_utime + usage.ru_stime, wall


def measure(repeats: int) -> dict:
    """Alternate the variants ``repeats`` times; the median of each."""
    seen: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in VARIANTS}
    for i in range(repeats):
        for name, code in VARIANTS.items():
            cpu, wall = one(code)
            seen[name]["cpu"].append(cpu)
            seen[name]["wall"].append(wall)
        print(f"clientapp_start: {i + 1}/{repeats}", file=sys.stderr, flush=True)
    return {
        name: {
            "cpu_s": round(statistics.median(v["cpu"]), 3),
            "wall_s": round(statistics.median(v["wall"]), 3),
            "n": repeats,
        }
        for name, v in seen.items()
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeats < 1:
        print(f"clientapp_start: --repeats must be >= 1, got {args.repeats}", file=sys.stderr)
        return 2
    rows = measure(args.repeats)
    now, before = rows["app (now)"], rows["app + scikit-learn (before)"]
    print(f"{'ClientApp start on digits':<30} {'CPU s':>7} {'wall s':>7}")
    for name, row in rows.items():
        print(f"{name:<30} {row['cpu_s']:>7.2f} {row['wall_s']:>7.2f}")
    saved = before["cpu_s"] - now["cpu_s"]
    print(f"saved per ClientApp process: {saved:.2f} CPU s ({saved / before['cpu_s']:.0%})")
    if args.json:
        command = "python benchmarks/clientapp_start.py " + " ".join(argv or sys.argv[1:])
        write_json(args.json, {"command": command.strip(), "median": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
