"""Benchmark: scale. 10, 50 and 100 simulated clients on this machine's 2 cores.

Each configuration runs in its own process (so that peak memory is its own): NoT with a
request to forget client 0 at round 2, not-flower's ClientApp (digits, CNN), fraction of
clients sampled per round set so that about 10 train and 10 evaluate per round.

Measured:
* wall seconds per round (strategy ``start()`` / rounds);
* peak RSS of the ServerApp's process (``ru_maxrss``; in ``run_simulation`` the ServerApp
  runs in the driver process, which also hosts Ray's driver);
* the strategy's own bookkeeping (``pickle`` size of what NoT keeps beyond FedAvg: round
  log, identity cache, exclusions, events), after the run, with ``keep_rounds=2`` and
  without a limit, so that growth with clients and with rounds shows (read through the
  strategy's public attributes only);
* target resolution: the milliseconds spent asking nodes for their identity
  (``query.identity``) to resolve the ``partition-id=0`` target at the request, and how
  many nodes were asked.

After the request one client is excluded: ``min_available_nodes`` is ``clients - 1``, so
the recovery rounds do not wait for a node that will never be sampled again.

    python benchmarks/scale.py [--clients 10 50 100] [--rounds 4 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import resource
import subprocess
import sys
import time

from common import write_json  # benchmarks/common.py


def time_identity_queries(strategy) -> dict:
    """Add up the seconds the strategy spends asking nodes who they are, and how many.

    Wraps ``strategy.book.query_identities`` (the one place ``query.identity`` messages
    are sent); returns ``{"seconds": float, "nodes": int}``, updated as the strategy runs.
    """
    spent = {"seconds": 0.0, "nodes": 0}
    query = strategy.book.query_identities

    def timed(grid, node_ids, *args, **kwargs):
        asked_before = len(strategy.identities)
        t0 = time.perf_counter()
        try:
            return query(grid, node_ids, *args, **kwargs)
        finally:
            spent["seconds"] += time.perf_counter() - t0
            spent["nodes"] += len(strategy.identities) - asked_before

    strategy.book.query_identities = timed
    return spent


def child(clients: int, rounds: int, keep_rounds: int | None) -> dict:
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from not_flower.common.config import parse_run_config
    from not_flower.experiments.simulation import build_apps
    from not_flower.task.models import build_model, example_input
    from strategies import NoT, plan_negation

    run_config = {
        "out-dir": "/tmp/not-flower-scale",
        "unlearn.clients": "",
        "seed": 0,
        "recovery.rounds": 0,
        "num-train-rounds": rounds,
        "local-epochs": 1,
    }
    _, client = build_apps(run_config)
    cfg = parse_run_config(run_config)
    fraction = min(1.0, 10 / clients)
    server = ServerApp()
    out: dict = {
        "clients": clients,
        "rounds": rounds,
        "keep_rounds": keep_rounds,
        "fraction": fraction,
    }

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        random.seed(0)
        torch.manual_seed(0)
        model = build_model(cfg.model, (1, 8, 8), 10)
        strategy = NoT(
            plan_negation(model, example_input((1, 8, 8))),
            fraction_train=fraction,
            fraction_evaluate=fraction,
            min_train_nodes=2,
            min_evaluate_nodes=2,
            min_available_nodes=clients - 1,  # client 0 is excluded from round 2
            keep_rounds=keep_rounds,
        )
        strategy.request_unlearning("0", at_round=2)
        resolution = time_identity_queries(strategy)
        t0 = time.perf_counter()
        strategy.start(
            grid,
            ArrayRecord(model.state_dict()),
            num_rounds=rounds,
            train_config=ConfigRecord({"lr": cfg.lr}),
        )
        out["wall_s_per_round"] = (time.perf_counter() - t0) / rounds
        kept = {
            "rounds": strategy.rounds,
            "identities": dict(strategy.identities),
            "excluded": set(strategy.excluded_node_ids),
            "events": [e.to_dict() for e in strategy.events],
        }
        out["identity_query_ms"] = 1e3 * resolution["seconds"]
        out["nodes_asked"] = resolution["nodes"]
        out["bookkeeping_bytes"] = {k: len(pickle.dumps(v)) for k, v in kept.items()}
        out["bookkeeping_total_bytes"] = sum(out["bookkeeping_bytes"].values())
        out["model_bytes"] = sum(a.numel() * 4 for a in model.state_dict().values())

    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "logging_level": "ERROR"},
        },
    )
    out["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--rounds", type=int, nargs="+", default=[4, 8])
    parser.add_argument(
        "--keep",
        nargs="+",
        default=["2", "none"],
        help="keep_rounds settings to run ('none': no limit)",
    )
    parser.add_argument("--json", default="")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child:
        clients, rounds, keep = args.child
        print(
            "RESULT "
            + json.dumps(child(int(clients), int(rounds), None if keep == "none" else int(keep)))
        )
        return 0
    rows = []
    for clients in args.clients:
        for rounds in args.rounds:
            for keep in args.keep:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", str(clients), str(rounds), keep],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode != 0 or not line:
                    print(proc.stderr[-2000:])
                    raise SystemExit(f"run with {clients} clients failed")
                rows.append(json.loads(line[-1][len("RESULT ") :]))
                r = rows[-1]
                print(
                    f"clients {clients:>4} rounds {rounds:>3} keep_rounds {keep:>4}: "
                    f"{r['wall_s_per_round']:6.2f} s/round, peak RSS {r['peak_rss_MB']:7.1f} MB, "
                    f"identity queries {r['identity_query_ms']:6.0f} ms "
                    f"({r['nodes_asked']} nodes), "
                    f"NoT bookkeeping {r['bookkeeping_total_bytes'] / 1e3:8.1f} kB "
                    f"{r['bookkeeping_bytes']}",
                    flush=True,
                )
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
