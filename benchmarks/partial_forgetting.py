"""Class-wise and instance-wise forgetting on digits: NoT and FT against their own Retrain.

* class-wise, federation-wide: forget class 3 everywhere (`unlearn-mode=class
  unlearn-classes=3 unlearn-clients=*`); Retrain = FedAvg from scratch with class 3
  removed from every client from round 1;
* instance-wise backdoor: client 0 poisons 40 % of its samples (2x2 trigger, label 0) and
  asks to forget exactly its poisoned samples (`unlearn-mode=instance
  unlearn-samples=poisoned unlearn-clients=0`); Retrain = FedAvg from scratch without
  those samples.

    python benchmarks/partial_forgetting.py --out outputs/partial [--seeds 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from not_flower.simulation import simulate

CASES = {
    "class": {"unlearn-mode": "class", "unlearn-classes": "3", "unlearn-clients": "*"},
    "instance": {"unlearn-mode": "instance", "unlearn-samples": "poisoned",
                 "unlearn-clients": "0", "backdoor-clients": "0"},
}
KEYS = ("test_acc", "forgotten_classes_test_acc", "other_classes_test_acc", "forget_acc",
        "retain_acc", "asr")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--methods", nargs="+", default=["retrain", "not", "ft"])
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    rows = []
    for case, extra in CASES.items():
        for seed in args.seeds:
            for method in args.methods:
                out = Path(args.out, case, f"seed{seed}", method).resolve()
                res = simulate({**extra, "method": method, "seed": seed, "out-dir": str(out)},
                               num_supernodes=10)
                model = res["models"][res["final"]]
                rows.append({"case": case, "seed": seed, "method": method,
                             **{k: model[k] for k in KEYS if k in model}})
                print(json.dumps(rows[-1]), flush=True)
    print()
    print(f"{'case':<9} {'seed':>4} {'method':<8} " + " ".join(f"{k:>27}" for k in KEYS))
    for r in rows:
        cells = " ".join(f"{100 * r[k]:27.2f}" if k in r else f"{'-':>27}" for k in KEYS)
        print(f"{r['case']:<9} {r['seed']:>4} {r['method']:<8} {cells}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
