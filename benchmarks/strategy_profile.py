"""Benchmark: the strategy's own time per round, in process (no training, no network).

NoT without a request against stock Flower FedAvg over the same in-process grid
(``tests/fakegrid.py``: real ``flwr`` ClientApps called in this process; each client
returns the global model scaled by 1.001 without training), so that only the strategies'
``configure_*``/``aggregate_*`` code is timed. Interleaved runs, medians. With
``--profile`` it prints NoT's cProfile (cumulative) for one run.

    python benchmarks/strategy_profile.py [--model cnn] [--clients 10] [--rounds 10]
        [--repeat 5] [--profile] [--json out.json]

This isolates what ``benchmarks/overhead.py`` measures inside a real simulation.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from not_flower.models import build_model, example_input  # noqa: E402
from strategies import NoT, plan_negation  # noqa: E402
from strategies.identity import identity_mod  # noqa: E402
from tests.fakegrid import FakeGrid, FakeNode  # noqa: E402

from common import instrument, write_json  # noqa: E402  # benchmarks/common.py

SHAPES = {"cnn": (1, 8, 8), "resnet18": (3, 32, 32), "vit": (3, 32, 32)}


def client_app() -> ClientApp:
    """A ClientApp that answers instantly (with not-flower's identity mod, as the real one)."""
    app = ClientApp(mods=[identity_mod])

    @app.train()
    def _train(msg, context):  # pylint: disable=unused-argument
        new = ArrayRecord({k: Array(v.numpy() * 1.001) if v.dtype.startswith("float") else v
                           for k, v in msg.content["arrays"].items()})
        metrics = MetricRecord({"num-examples": 10, "train-seconds": 0.0})
        return Message(RecordDict({"arrays": new, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def _evaluate(msg, context):  # pylint: disable=unused-argument
        metrics = MetricRecord({"val-acc": 0.5, "num-examples": 5})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def one_run(kind: str, model, shape, grid: FakeGrid, clients: int, rounds: int) -> float:
    """Strategy milliseconds per round."""
    random.seed(0)
    if kind == "fedavg":
        strategy = FedAvg(min_available_nodes=clients)
    else:
        strategy = NoT(plan_negation(model, example_input(shape)), min_available_nodes=clients,
                       keep_rounds=2)
    spent = instrument(strategy)
    strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=rounds,
                   train_config=ConfigRecord({"lr": 0.1}))
    return 1e3 * spent["seconds"] / rounds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(SHAPES), default="cnn")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.manual_seed(0)
    shape = SHAPES[args.model]
    model = build_model(args.model, shape, 10)
    app = client_app()
    grid = FakeGrid({1000 + i: FakeNode(app, {"partition-id": i, "num-partitions": args.clients})
                     for i in range(args.clients)})
    times: dict[str, list[float]] = {"fedavg": [], "not": []}
    for rep in range(args.repeat):
        for kind in (("fedavg", "not") if rep % 2 == 0 else ("not", "fedavg")):
            times[kind].append(one_run(kind, model, shape, grid, args.clients, args.rounds))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.model}, {args.clients} clients, {args.rounds} rounds, medians of "
          f"{args.repeat} interleaved runs: FedAvg {med['fedavg']:.2f} ms/round, NoT "
          f"{med['not']:.2f} ms/round (+{med['not'] - med['fedavg']:.2f} ms, "
          f"x{med['not'] / med['fedavg']:.2f})")
    if args.profile:
        random.seed(0)
        strategy = NoT(plan_negation(model, example_input(shape)),
                       min_available_nodes=args.clients, keep_rounds=2)
        prof = cProfile.Profile()
        prof.runcall(strategy.start, grid, ArrayRecord(model.state_dict()),
                     num_rounds=args.rounds, train_config=ConfigRecord({"lr": 0.1}))
        pstats.Stats(prof).sort_stats("cumulative").print_stats(r"strategies|fedavg|strategy_utils", 25)
    if args.json:
        write_json(args.json, {"args": vars(args), "ms_per_round": times,
                                               "median": med})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
