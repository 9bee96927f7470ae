"""not-flower's ServerApp: train, receive "unlearn client k", negate, recover, report.

Driven entirely by the run config (:mod:`not_flower.config`). One ``strategy.start()``
covers ``num-train-rounds`` of FedAvg and ``recovery-rounds`` of recovery: the unlearning
request is queued for the boundary before round ``num-train-rounds + 1``. At that boundary
the strategy's ``on_unlearning`` hook saves the pre-unlearning checkpoint and measures the
original and the negated model. At the end the final checkpoint and ``results.json`` are
written (atomically) to ``out-dir`` and a summary table is printed.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from logging import INFO
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.supercore import log

from strategies.negation import plan_negation
from strategies.not_strategy import NoT, UnlearningEvent

from .config import RunConfig, parse_run_config, to_run_config
from .models import build_model, example_input
from .store import save_checkpoint, write_json
from .task import client_data, dataset_for, evaluate

app = ServerApp()

SUMMARY_MODELS = ("original", "negated", "recovered")


def resolve_out_dir(cfg: RunConfig, run_id: int | None = None) -> Path:
    """Absolute output folder: ``out-dir`` or ``~/not-flower-runs/<time>-<run id>``.

    The ServerApp's working directory is the SuperLink's, so relative paths are resolved
    against the home folder, never the app bundle.
    """
    if cfg.out_dir:
        path = Path(cfg.out_dir).expanduser()
        return path if path.is_absolute() else Path.home() / path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path.home() / "not-flower-runs" / f"{stamp}-{run_id or 0}"


def wait_for_nodes(grid: Grid, minimum: int, timeout: float = 300.0) -> list[int]:
    """Wait until at least ``minimum`` nodes are connected; return their ids."""
    deadline = time.monotonic() + timeout
    while len(ids := list(grid.get_node_ids())) < minimum:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {len(ids)} node(s) connected after {timeout:.0f}s; {minimum} needed"
            )
        time.sleep(1.0)
    return ids


def evaluate_sets(
    model: torch.nn.Module, arrays: ArrayRecord, sets: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    """Load ``arrays`` into ``model`` and return ``<set>_acc``/``<set>_loss`` per set."""
    model.load_state_dict(arrays.to_torch_state_dict())
    out: dict[str, float] = {}
    for name, (x, y) in sets.items():
        acc, loss = evaluate(model, x, y)
        out[f"{name}_acc"], out[f"{name}_loss"] = acc, loss
    return out


def split_forget_retain(
    cfg: RunConfig, num_partitions: int, forget_ids: set[int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Forget set = the targets' training data as they held it; retain = everyone else's."""
    parts = [client_data(cfg, p, num_partitions) for p in range(num_partitions)]

    def cat(selected):
        if not selected:
            shape = parts[0].x_train.shape[1:]
            return np.zeros((0, *shape), np.float32), np.zeros(0, np.int64)
        return (np.concatenate([p.x_train for p in selected]),
                np.concatenate([p.y_train for p in selected]))

    return {
        "forget": cat([p for p in parts if p.partition_id in forget_ids]),
        "retain": cat([p for p in parts if p.partition_id not in forget_ids]),
    }


def format_summary(models: dict[str, dict[str, float]]) -> list[str]:
    """Lines of the summary table: one row per model, accuracies in %."""
    lines = [f"{'model':<10} {'forget acc':>10} {'retain acc':>10} {'test acc':>9} {'test loss':>9}"]
    for name in SUMMARY_MODELS:
        if name not in models:
            continue
        m = models[name]

        def pct(key):
            v = m.get(key)
            return "    -" if v is None or v != v else f"{100 * v:9.2f}"

        loss = m.get("test_loss")
        lines.append(
            f"{name:<10} {pct('forget_acc'):>10} {pct('retain_acc'):>10} {pct('test_acc'):>9} "
            f"{loss:9.4f}"
        )
    return lines


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run train -> unlearn -> recover as set by the run config."""
    cfg = parse_run_config(context.run_config)
    out_dir = resolve_out_dir(cfg, getattr(grid, "run", None) and grid.run.run_id)
    run_experiment(grid, cfg, out_dir)


# pylint: disable=too-many-locals,too-many-statements
def run_experiment(grid: Grid, cfg: RunConfig, out_dir: Path) -> dict:
    """The whole run; returns what it writes to ``results.json``.

    Parameters
    ----------
    grid : Grid
        Flower's grid.
    cfg : RunConfig
        Validated run configuration.
    out_dir : Path
        Absolute folder for ``results.json`` and the checkpoints.

    Returns
    -------
    dict
        The results.
    """
    t_start = time.perf_counter()
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    data = dataset_for(cfg)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    initial = ArrayRecord(model.state_dict())
    plan = plan_negation(
        model, example_input(data.input_shape), cfg.negate_layers,
        include_bias=cfg.negate_bias, batchnorm=cfg.batchnorm_policy,
    )
    test_set = (data.x_test, data.y_test)
    meta = {"model": cfg.model, "dataset": cfg.dataset, "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "seed": cfg.seed}
    results: dict = {
        "config": to_run_config(cfg),
        "out_dir": str(out_dir),
        "negation": plan.to_dict(),
        "rounds": [],
        "requests": [],
        "models": {},
        "checkpoints": {},
    }
    state: dict = {"num_partitions": None}

    def on_unlearning(event: UnlearningEvent, before: ArrayRecord, after: ArrayRecord) -> None:
        path = save_checkpoint(out_dir / "checkpoint-original.pt", before,
                               {**meta, "round": event.round - 1, "phase": "train"})
        results["checkpoints"]["original"] = str(path)
        forget_ids = {
            int(t["identity"]["partition-id"]) for t in event.targets
            if t.get("identity") and "partition-id" in t["identity"]
        }
        state["forget_ids"] = forget_ids
        sets = {"test": test_set, **split_forget_retain(cfg, state["num_partitions"], forget_ids)}
        state["sets"] = sets
        results["models"]["original"] = evaluate_sets(model, before, sets)
        results["models"]["negated"] = evaluate_sets(model, after, sets)
        request = event.to_dict()
        request["partition_ids"] = sorted(forget_ids)
        results["requests"].append(request)
        log(INFO, "NoT: negated model: test acc %.2f %% (original %.2f %%)",
            100 * results["models"]["negated"]["test_acc"],
            100 * results["models"]["original"]["test_acc"])

    strategy = NoT(
        plan,
        fraction_train=cfg.fraction_train,
        fraction_evaluate=cfg.fraction_evaluate if cfg.val_fraction > 0 else 0.0,
        min_train_nodes=1,
        min_evaluate_nodes=1,
        min_available_nodes=1,
        on_unlearning=on_unlearning,
    )
    node_ids = wait_for_nodes(grid, 1)
    identities = strategy.identify(grid, node_ids)
    declared = [int(i["num-partitions"]) for i in identities.values() if i and "num-partitions" in i]
    state["num_partitions"] = max(declared) if declared else len(node_ids)
    if cfg.unlearn_clients:
        strategy.request_unlearning(
            cfg.unlearn_clients, by=cfg.identify_by, at_round=cfg.num_train_rounds + 1
        )

    partition_of = lambda n: (strategy.identities.get(n) or {}).get("partition-id")  # noqa: E731

    def central_eval(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        acc, loss = evaluate_sets(model, arrays, {"test": test_set}).values()
        info = strategy.rounds.get(server_round, {})
        results["rounds"].append({
            "round": server_round,
            "phase": info.get("phase", "init"),
            "participants": sorted(
                int(p) for p in map(partition_of, info.get("train_replied", [])) if p is not None
            ),
            "participant_node_ids": info.get("train_replied", []),
            "evaluated": sorted(
                int(p) for p in map(partition_of, info.get("evaluate_replied", [])) if p is not None
            ),
            "test_acc": acc,
            "test_loss": loss,
        })
        return MetricRecord({"test-acc": acc, "test-loss": loss})

    result = strategy.start(
        grid,
        initial,
        num_rounds=cfg.total_rounds,
        train_config=ConfigRecord({"lr": cfg.lr}),
        evaluate_config=ConfigRecord(),
        evaluate_fn=central_eval,
    )
    for metrics_by_round, key in ((result.train_metrics_clientapp, "train_loss"),
                                  (result.evaluate_metrics_clientapp, "val_acc")):
        source = "train-loss" if key == "train_loss" else "val-acc"
        for row in results["rounds"]:
            rec = metrics_by_round.get(row["round"])
            if rec is not None and source in rec:
                row[key] = float(rec[source])

    final = result.arrays if result.arrays is not None else initial
    path = save_checkpoint(out_dir / "checkpoint-final.pt", final,
                           {**meta, "round": cfg.total_rounds,
                            "phase": "recovery" if strategy.in_recovery else "train"})
    results["checkpoints"]["final"] = str(path)
    sets = state.get("sets") or {"test": test_set}
    results["models"]["recovered" if strategy.in_recovery else "original"] = evaluate_sets(
        model, final, sets
    )
    results["num_partitions"] = state["num_partitions"]
    results["excluded_node_ids"] = sorted(strategy.excluded_node_ids)
    results["wall_seconds"] = time.perf_counter() - t_start
    write_json(out_dir / "results.json", results)
    log(INFO, "")
    log(INFO, "not-flower summary (results in %s):", out_dir / "results.json")
    for line in format_summary(results["models"]):
        log(INFO, "  %s", line)
    return results
