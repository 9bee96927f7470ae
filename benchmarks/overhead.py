"""Benchmark: the plugin's overhead. NoT without a request against stock Flower FedAvg.

Both run the same simulation (not-flower's ClientApp, digits, CNN, same seed, same
clients and rounds) through ``flwr.simulation.run_simulation``; runs are interleaved
(FedAvg, NoT, FedAvg, NoT, ...) so that drift in machine load hits both alike.

Measured per run:
* ``strategy_ms_per_round``: time spent inside the strategy's own code
  (configure_train/aggregate_train/configure_evaluate/aggregate_evaluate), per round;
  this is what the plugin adds to, and it does not include client training;
* ``wall_s``: the strategy's ``start()`` from first to last round.

NoT's strategy time also counts what it does beyond FedAvg without a request: reply
validation (finite values, shapes), identity bookkeeping, per-round cost accounting.

    python benchmarks/overhead.py [--pairs 3] [--clients 10] [--rounds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from common import instrument, write_json  # benchmarks/common.py
from not_flower.common.config import parse_run_config
from not_flower.experiments.simulation import build_apps
from not_flower.task.models import build_model, example_input
from strategies import NoT, plan_negation


def one_run(kind: str, clients: int, rounds: int, seed: int) -> dict:
    run_config = {
        "out-dir": "/tmp/not-flower-overhead",
        "unlearn.clients": "",
        "seed": seed,
        "recovery.rounds": 0,
        "num-train-rounds": rounds,
    }
    _, client = build_apps(run_config)
    cfg = parse_run_config(run_config)
    server = ServerApp()
    measured: dict = {}

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        random.seed(seed)
        torch.manual_seed(seed)
        model = build_model(cfg.model, (1, 8, 8), 10)
        kwargs = dict(min_train_nodes=2, min_evaluate_nodes=2, min_available_nodes=clients)
        if kind == "fedavg":
            strategy = FedAvg(**kwargs)
        else:
            strategy = NoT(plan_negation(model, example_input((1, 8, 8))), keep_rounds=2, **kwargs)
        spent = instrument(strategy)
        t0 = time.perf_counter()
        strategy.start(
            grid,
            ArrayRecord(model.state_dict()),
            num_rounds=rounds,
            train_config=ConfigRecord({"lr": cfg.lr}),
        )
        measured["wall_s"] = time.perf_counter() - t0
        measured["strategy_ms_per_round"] = 1e3 * spent["seconds"] / rounds

    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "logging_level": "ERROR"},
        },
    )
    return {"kind": kind, **measured}


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    runs = []
    for pair in range(args.pairs):
        for kind in ("fedavg", "not") if pair % 2 == 0 else ("not", "fedavg"):
            runs.append(one_run(kind, args.clients, args.rounds, args.seed))
            print(
                f"pair {pair}: {kind:<6} strategy {runs[-1]['strategy_ms_per_round']:8.2f} "
                f"ms/round, wall {runs[-1]['wall_s']:7.2f} s",
                flush=True,
            )
    summary = {}
    for kind in ("fedavg", "not"):
        rows = [r for r in runs if r["kind"] == kind]
        summary[kind] = {
            k: statistics.median(r[k] for r in rows) for k in ("strategy_ms_per_round", "wall_s")
        }
    ratio_wall = summary["not"]["wall_s"] / summary["fedavg"]["wall_s"]
    ratio_strategy = (
        summary["not"]["strategy_ms_per_round"] / summary["fedavg"]["strategy_ms_per_round"]
    )
    print()
    print(f"{'':<8} {'strategy ms/round':>18} {'wall s':>8}   (medians of {args.pairs} runs)")
    for kind in ("fedavg", "not"):
        print(
            f"{kind:<8} {summary[kind]['strategy_ms_per_round']:>18.2f} "
            f"{summary[kind]['wall_s']:>8.2f}"
        )
    print(f"{'NoT/FedAvg':<8} {ratio_strategy:>18.3f} {ratio_wall:>8.3f}")
    if args.json:
        write_json(
            args.json,
            {
                "runs": runs,
                "summary": summary,
                "ratio_wall": ratio_wall,
                "ratio_strategy": ratio_strategy,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
