"""Benchmark: the strategy's own time per round, in process (no training, no network).

NoT without a request against stock Flower FedAvg over the same in-process grid
(``tests/fakegrid.py``: real ``flwr`` ClientApps called in this process; each client
returns the global model scaled by 1.001 without training, in the model's own dtypes as a
real client that loads it into torch does: FedAvg turns BatchNorm's int64
``num_batches_tracked`` into float64, a client sends int64 back), so that only the
strategies' ``configure_*``/``aggregate_*`` code is timed. Interleaved runs, medians. A
run in which any client's reply is an error stops the script: both strategies aggregate
every client in every round, so the ratio compares the same work. With ``--profile`` it
prints NoT's cProfile (cumulative) for one run.

``--resolve-nodes 10 50 100`` also times target resolution: a request for
``partition-id=0`` at round 2 of a NoT that has not asked anyone yet, so the request
asks every node for its identity (``query.identity``) once; the milliseconds of those
queries, and of a second request at round 3 (answered from the cache), are printed.

    python benchmarks/strategy_profile.py [--model cnn] [--clients 10] [--rounds 10]
        [--repeat 5] [--profile] [--resolve-nodes N ...] [--json out.json]

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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from common import instrument, write_json  # noqa: E402  # benchmarks/common.py
from not_flower.task.models import build_model, example_input  # noqa: E402
from strategies import NoT, plan_negation  # noqa: E402
from strategies.identity import answer_identity, identity_mod  # noqa: E402
from tests.fakegrid import FakeGrid, FakeNode  # noqa: E402

SHAPES = {"cnn": (1, 8, 8), "resnet18": (3, 32, 32), "vit": (3, 32, 32)}


def client_app(dtypes: dict[str, np.dtype]) -> ClientApp:
    """A ClientApp that answers instantly (with not-flower's identity mod, as the real one).

    Parameters
    ----------
    dtypes : dict
        The model's ``state_dict`` key -> numpy dtype: replies come back in these, as from
        a client that loads the global model into its torch model.
    """
    app = ClientApp(mods=[identity_mod])

    @app.train()
    def _train(msg, context):  # pylint: disable=unused-argument
        new = ArrayRecord(
            {k: Array(_updated(v.numpy(), dtypes[k])) for k, v in msg.content["arrays"].items()}
        )
        metrics = MetricRecord({"num-examples": 10, "train-seconds": 0.0})
        return Message(RecordDict({"arrays": new, "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def _evaluate(msg, context):  # pylint: disable=unused-argument
        metrics = MetricRecord({"val-acc": 0.5, "num-examples": 5})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    app.query("identity")(answer_identity)  # as not-flower's ClientApp
    return app


def _updated(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A client's "trained" tensor: floats scaled by 1.001, in the model's dtype."""
    if np.issubdtype(dtype, np.floating):
        value = value * 1.001
    return np.asarray(value).astype(dtype)


def count_errors(grid: FakeGrid) -> dict:
    """Count error replies (``{"errors": n, "first": reason}``) as the grid sends."""
    seen = {"errors": 0, "first": ""}
    send = grid.send_and_receive

    def counted(messages, *, timeout=None):
        replies = send(messages, timeout=timeout)
        for reply in replies:
            if reply.has_error():
                seen["errors"] += 1
                seen["first"] = seen["first"] or reply.error.reason
        return replies

    grid.send_and_receive = counted
    return seen


def one_run(kind: str, model, shape, grid: FakeGrid, clients: int, rounds: int) -> float:
    """Strategy milliseconds per round."""
    random.seed(0)
    if kind == "fedavg":
        strategy = FedAvg(min_available_nodes=clients)
    else:
        strategy = NoT(
            plan_negation(model, example_input(shape)), min_available_nodes=clients, keep_rounds=2
        )
    spent = instrument(strategy)
    strategy.start(
        grid,
        ArrayRecord(model.state_dict()),
        num_rounds=rounds,
        train_config=ConfigRecord({"lr": 0.1}),
    )
    return 1e3 * spent["seconds"] / rounds


def resolve_targets(model, shape, app: ClientApp, nodes: int) -> dict:
    """Milliseconds NoT spends asking nodes for their identity at two requests.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    shape : tuple
        Its input shape.
    app : ClientApp
        The instant ClientApp.
    nodes : int
        Nodes of the in-process grid.

    Returns
    -------
    dict
        ``nodes``, ``first_ms`` / ``asked`` (the request at round 2), ``second_ms`` /
        ``second_asked`` (the request at round 3).
    """
    grid = FakeGrid(
        {
            1000 + i: FakeNode(app, {"partition-id": i, "num-partitions": nodes})
            for i in range(nodes)
        }
    )
    random.seed(0)
    strategy = NoT(
        plan_negation(model, example_input(shape)),
        min_available_nodes=nodes - 2,
        fraction_train=min(1.0, 10 / nodes),
        fraction_evaluate=0.0,
        keep_rounds=2,
    )
    strategy.request_unlearning("0", at_round=2)
    strategy.request_unlearning("1", at_round=3)
    spent: list[tuple[float, int]] = []
    query = strategy.book.query_identities

    def timed(grid_, node_ids):
        before, t0 = len(strategy.identities), time.perf_counter()
        query(grid_, node_ids)
        spent.append((time.perf_counter() - t0, len(strategy.identities) - before))

    strategy.book.query_identities = timed
    strategy.start(
        grid, ArrayRecord(model.state_dict()), num_rounds=3, train_config=ConfigRecord({"lr": 0.1})
    )
    first = spent[0] if spent else (0.0, 0)
    return {
        "nodes": nodes,
        "first_ms": 1e3 * first[0],
        "asked": first[1],
        "second_ms": 1e3 * sum(s for s, _ in spent[1:]),
        "second_asked": sum(n for _, n in spent[1:]),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(SHAPES), default="cnn")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--resolve-nodes",
        type=int,
        nargs="*",
        default=[],
        help="time target resolution with these numbers of nodes",
    )
    parser.add_argument("--json", default="")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.manual_seed(0)
    shape = SHAPES[args.model]
    model = build_model(args.model, shape, 10)
    app = client_app({k: v.numpy().dtype for k, v in model.state_dict().items()})
    grid = FakeGrid(
        {
            1000 + i: FakeNode(app, {"partition-id": i, "num-partitions": args.clients})
            for i in range(args.clients)
        }
    )
    errors = count_errors(grid)
    times: dict[str, list[float]] = {"fedavg": [], "not": []}
    for rep in range(args.repeat):
        for kind in ("fedavg", "not") if rep % 2 == 0 else ("not", "fedavg"):
            times[kind].append(one_run(kind, model, shape, grid, args.clients, args.rounds))
            if errors["errors"]:
                raise SystemExit(
                    f"{kind}: {errors['errors']} client replies were errors "
                    f"(first: {errors['first']}); the timing would compare "
                    "different work"
                )
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.model}, {args.clients} clients, {args.rounds} rounds, medians of "
        f"{args.repeat} interleaved runs: FedAvg {med['fedavg']:.2f} ms/round, NoT "
        f"{med['not']:.2f} ms/round (+{med['not'] - med['fedavg']:.2f} ms, "
        f"x{med['not'] / med['fedavg']:.2f})"
    )
    if args.profile:
        random.seed(0)
        strategy = NoT(
            plan_negation(model, example_input(shape)),
            min_available_nodes=args.clients,
            keep_rounds=2,
        )
        prof = cProfile.Profile()
        prof.runcall(
            strategy.start,
            grid,
            ArrayRecord(model.state_dict()),
            num_rounds=args.rounds,
            train_config=ConfigRecord({"lr": 0.1}),
        )
        pstats.Stats(prof).sort_stats("cumulative").print_stats(
            r"strategies|fedavg|strategy_utils", 25
        )
    resolution = [resolve_targets(model, shape, app, n) for n in args.resolve_nodes]
    for row in resolution:
        print(
            f"target resolution, {row['nodes']} nodes: {row['first_ms']:.1f} ms asking "
            f"{row['asked']} nodes at the first request, {row['second_ms']:.2f} ms asking "
            f"{row['second_asked']} at the second"
        )
    if args.json:
        write_json(
            args.json,
            {
                "args": vars(args),
                "ms_per_round": times,
                "median": med,
                **({"resolution": resolution} if resolution else {}),
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
