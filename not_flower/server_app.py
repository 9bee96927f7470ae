"""not-flower's ServerApp: train, receive "unlearn client k", negate, recover, report.

Driven entirely by the run config (:mod:`not_flower.config`). One ``strategy.start()``
covers ``num-train-rounds`` of FedAvg and ``recovery-rounds`` of recovery: the unlearning
request is queued for the boundary before round ``num-train-rounds + 1``. At that boundary
the strategy's ``on_unlearning`` hook saves the pre-unlearning checkpoint and measures the
original and the negated model. At the end the final checkpoint and ``results.json`` are
written (atomically) to ``out-dir`` and a summary table is printed.
"""

from __future__ import annotations

import json
import random
import time
from datetime import datetime
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.supercore import log

from strategies.negation import plan_negation
from strategies.not_strategy import NoT, UnlearningEvent
from strategies.target_check import check_targets, node_names

from .audit import AuditLogError, append_to_log, build_record, sha256_arrays, write_record
from .backdoor import triggered_test_set
from .config import BASELINE_METHODS, RunConfig, parse_run_config, to_run_config
from .methods import REGISTRY
from .metrics import attack_success_rate, evaluate_model, predict_logits
from .reference_models import MembershipHarness
from .models import build_model, example_input
from .outdir import CONTROL_KEYS, prepare_out_dir
from .requests import RequestFolder
from .stopping import RULE, StoppingRule, summary_lines
from .store import load_checkpoint, save_checkpoint, write_json
from .task import client_data, dataset_for, device, evaluate, server_indices

app = ServerApp()

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


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run train -> unlearn -> recover (or FT / Retrain) as set by the run config."""
    cfg = parse_run_config(context.run_config)
    try:
        run_id = grid.run.run_id
    except Exception:  # noqa: BLE001 - no run attached (tests)
        run_id = None
    run_experiment(grid, cfg, resolve_out_dir(cfg, run_id), run_id=run_id)


def load_initial_checkpoint(path: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Load ``init-checkpoint`` and check that it fits ``model`` (keys, shapes, dtypes).

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file and what does not fit.
    """
    state, _ = load_checkpoint(Path(path).expanduser())
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"init-checkpoint {path!r} does not fit the model: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]} (is it from another model or data set?)"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape) or state[key].dtype != tensor.dtype:
            raise ValueError(
                f"init-checkpoint {path!r}: tensor {key!r} has shape {tuple(state[key].shape)} "
                f"({state[key].dtype}), the model needs {tuple(tensor.shape)} ({tensor.dtype})"
            )
    return {k: state[k] for k in expected}


def write_records(out_dir: Path, cfg: RunConfig, results: dict, final: ArrayRecord,
                  grid: Grid, run_id=None) -> list[dict]:
    """Write the record of every unlearning and append it to the hash-chained log.

    One ``unlearning-record.json`` per request (``unlearning-record-<k>.json`` for the
    k-th of a sequence, the last one also as ``unlearning-record.json``), each appended to
    ``audit-log`` (default ``<out-dir>/unlearning-log.jsonl``). Returns, per record, its
    file, the log and the log's head hash after appending it.
    """
    if not results["requests"]:
        return []
    try:
        names = {info.node_id: getattr(info, "name", "") for info in grid.get_nodes()}
    except Exception:  # noqa: BLE001 - names are informative only
        names = {}
    sha_after = sha256_arrays(final)
    log_path = Path(cfg.audit_log).expanduser() if cfg.audit_log else out_dir / "unlearning-log.jsonl"
    written = []
    requests = results["requests"]
    for k, request in enumerate(requests):
        start = request["round"]
        end = requests[k + 1]["round"] if k + 1 < len(requests) else None
        rounds = [
            {"round": row["round"], "participants": [
                {**p, "name": names.get(p["node_id"], "")} for p in row.get("participants_detail", [])
            ]}
            for row in results["rounds"] if row["round"] >= start and (end is None or row["round"] < end)
        ]
        record = build_record(
            request=request["request"], round=start, targets=request["targets"],
            layers=request["layers"], keys=request["keys"],
            sha_before=request["sha256_before"], sha_negated=request["sha256_negated"],
            sha_after=sha_after if end is None else None,
            recovery_rounds=rounds, stopping=_request_stopping(results, k),
            final_metrics=results["models"].get(results.get("final"), {}),
            method=cfg.method, run_id=None if run_id is None else str(run_id),
        )
        if len(requests) == 1:
            path = write_record(out_dir, record)
        else:  # a sequence: one file per request, the latest also as unlearning-record.json
            path = write_json(out_dir / f"unlearning-record-{k + 1}.json", record)
            if k + 1 == len(requests):
                write_record(out_dir, record)
        try:
            entry = append_to_log(log_path, record)
            head = entry["hash"]
        except AuditLogError as err:  # the record file stays; the broken log is reported
            log(WARNING, "audit log %s is broken, record not appended: %s", log_path, err)
            head = None
        log(INFO, "record of forgetting: %s (log %s, head %s)", path, log_path, head)
        written.append({"record": str(path), "log": str(log_path), "head": head})
    return written


def _request_stopping(results: dict, k: int) -> dict:
    """The stopping decision of the k-th request (the run's, for older results)."""
    stopping = dict(results.get("stopping", {}))
    per_request = stopping.pop("per_request", None)
    if per_request and k < len(per_request):
        stopping.update(per_request[k])
    return stopping


def save_run_state(out_dir: Path, cfg: RunConfig, server_round: int, arrays: ArrayRecord,
                   results: dict, state: dict, strategy: NoT, offset: int, meta: dict) -> None:
    """Write ``checkpoint-latest.pt`` then ``state.json`` (both atomically) after a round.

    ``state.json`` names the round the checkpoint holds, the requests applied so far (their
    target rules stay in force on resume) and those still pending, and the results so far.
    A run killed at any point leaves a consistent pair: the state is written after the
    checkpoint it describes.
    """
    save_checkpoint(out_dir / "checkpoint-latest.pt", arrays,
                    {**meta, "round": server_round})
    write_json(out_dir / "state.json", {
        "version": 1,
        "round": server_round,
        "config": {k: v for k, v in to_run_config(cfg).items() if k not in CONTROL_KEYS},
        "applied": [{"by": r.by, "values": list(r.values)} for r in strategy.applied_rules],
        "forget_specs": strategy.forget_specs,
        "pending": [
            {"by": r.rule.by, "values": list(r.rule.values), "requested_by": r.requested_by,
             "at_round": None if r.at_round is None else offset + r.at_round,
             "classes": list(r.classes), "samples": list(r.samples)}
            for r in strategy.pending_requests
        ],
        "state": {**state, "forget_ids": sorted(state["forget_ids"])},
        "results": results,
    })


def load_run_state(out_dir: Path, cfg: RunConfig) -> dict | None:
    """The state an interrupted run left in ``out_dir`` (``None`` if there is none).

    Raises
    ------
    ValueError
        If the state was written by a run with a different configuration.
    """
    path = out_dir / "state.json"
    if not path.is_file():
        log(INFO, "resume: no state.json in %s; starting from the beginning", out_dir)
        return None
    saved = json.loads(path.read_text())
    mine = {k: v for k, v in to_run_config(cfg).items() if k not in CONTROL_KEYS}
    differing = sorted(k for k in mine if saved["config"].get(k) != mine[k])
    if differing:
        raise ValueError(
            f"resume: {path} was written by a run with a different configuration "
            f"(differs in {differing}); resume with the same run config or another out-dir"
        )
    if saved["round"] >= cfg.total_rounds:
        log(INFO, "resume: the run in %s had already finished all %d rounds", out_dir,
            cfg.total_rounds)
    return saved


def split_forget_retain(
    cfg: RunConfig,
    num_partitions: int,
    forget_ids: set[int],
    *,
    classes: set[int] | None = None,
    samples: dict[int, set[int]] | None = None,
    all_clients: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Forget and retain sets, exactly as the clients hold their training data.

    * client-wise: forget = the targets' training data; retain = everyone else's;
    * class-wise (``classes``): forget = the targets' (every client's with
      ``all_clients``) training samples of those classes; retain = all the rest;
    * instance-wise (``samples``: partition id -> sample ids): forget = those samples
      (poisoned ones keep their poisoned labels); retain = all the rest.

    Returns
    -------
    dict
        ``{"forget": (x, y), "retain": (x, y)}``.
    """
    forget_x, forget_y, retain_x, retain_y = [], [], [], []
    for pid in range(num_partitions):
        part = client_data(cfg, pid, num_partitions)
        targeted = all_clients or pid in forget_ids
        if not targeted:
            mask = np.zeros(len(part.y_train), dtype=bool)
        elif classes:
            mask = np.isin(part.y_train, list(classes))
        elif samples is not None:
            mask = np.zeros(len(part.y_train), dtype=bool)
            mask[[i for i in samples.get(pid, ()) if i < len(mask)]] = True
        else:
            mask = np.ones(len(part.y_train), dtype=bool)
        forget_x.append(part.x_train[mask])
        forget_y.append(part.y_train[mask])
        retain_x.append(part.x_train[~mask])
        retain_y.append(part.y_train[~mask])
    return {"forget": (np.concatenate(forget_x), np.concatenate(forget_y)),
            "retain": (np.concatenate(retain_x), np.concatenate(retain_y))}


class Evaluator:
    """Centralized measurements of a global model (server-side harness).

    Parameters
    ----------
    cfg : RunConfig
        The run configuration (data set, backdoor settings, seed).
    model : torch.nn.Module
        A model of the run's architecture, reloaded for every measurement.
    """

    def __init__(self, cfg: RunConfig, model: torch.nn.Module) -> None:
        self.cfg = cfg
        self.model = model.to(device())
        data = dataset_for(cfg)
        self.test = (data.x_test, data.y_test)
        self.sets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self.triggered = None
        if cfg.backdoor_clients:
            self.triggered = triggered_test_set(data.x_test, data.y_test, cfg.backdoor_target, size=cfg.backdoor_trigger_size)

        self.classes: list[int] = []
        # per-example membership inference (LiRA) when mia-reference-models > 0
        self.membership = MembershipHarness(cfg) if cfg.mia_reference_models else None

    def set_forget(self, num_partitions: int, forget_ids: set[int], **kind) -> None:
        """Fix the forget and retain sets (see :func:`split_forget_retain`)."""
        self.sets = split_forget_retain(self.cfg, num_partitions, forget_ids, **kind)
        self.classes = sorted(kind.get("classes") or [])
        if self.membership is not None:
            self.membership.set_forget(num_partitions, forget_ids, **kind)

    def _class_split(self, out: dict) -> None:
        """Class-wise forgetting: test accuracy on the forgotten classes and on the others."""
        if not self.classes:
            return
        x, y = self.test
        forgotten = np.isin(y, self.classes)
        out["forgotten_classes_test_acc"] = evaluate(self.model, x[forgotten], y[forgotten])[0]
        out["other_classes_test_acc"] = evaluate(self.model, x[~forgotten], y[~forgotten])[0]

    def _load(self, arrays: ArrayRecord) -> None:
        self.model.load_state_dict(arrays.to_torch_state_dict())

    def quick(self, arrays: ArrayRecord) -> dict[str, float]:
        """Per-round numbers: test acc/loss, forget acc and ASR when known."""
        self._load(arrays)
        out = dict(zip(("test_acc", "test_loss"), evaluate(self.model, *self.test)))
        if self.sets is not None and len(self.sets["forget"][0]):
            out["forget_acc"] = evaluate(self.model, *self.sets["forget"])[0]
        if self.triggered is not None:
            logits = predict_logits(self.model, self.triggered[0], device=device())
            out["asr"] = attack_success_rate(logits, self.triggered[1], self.cfg.backdoor_target)
        self._class_split(out)
        return out

    def full(self, arrays: ArrayRecord) -> dict[str, float]:
        """Retain/forget/test accuracy and loss, MIA-efficacy, loss-attack AUC, ASR."""
        self._load(arrays)
        sets = self.sets or {}
        forget = sets.get("forget")
        out = evaluate_model(
            self.model,
            forget=forget if forget is not None and len(forget[0]) else None,
            retain=sets.get("retain", self.test),
            test=self.test,
            backdoor_target=self.cfg.backdoor_target if self.triggered is not None else None,
            triggered_test_x=self.triggered[0] if self.triggered is not None else None,
            triggered_test_y=self.triggered[1] if self.triggered is not None else None,
            seed=self.cfg.seed,
            device=device(),
        )
        if self.sets is None:  # no request: "retain" above was the test set
            out.pop("retain_acc", None)
            out.pop("retain_loss", None)
        if self.membership is not None:
            out.update(self.membership.metrics(self.model))
        self._class_split(out)
        return out


def retained_val_acc(metrics_by_node: dict[int, dict], keep: set[int] | None = None) -> float | None:
    """Weighted validation accuracy over the given nodes' evaluate replies.

    Parameters
    ----------
    metrics_by_node : dict[int, dict]
        Node id -> the metrics of its evaluate reply (``val-acc``, ``num-examples``).
    keep : set[int] or None
        Only these nodes (``None``: all).

    Returns
    -------
    float or None
        ``None`` when no node qualifies.
    """
    pairs = [
        (float(m["val-acc"]), float(m["num-examples"]))
        for n, m in metrics_by_node.items()
        if (keep is None or n in keep) and "val-acc" in m and m.get("num-examples", 0) > 0
    ]
    total = sum(w for _, w in pairs)
    return None if total == 0 else sum(a * w for a, w in pairs) / total


def trained_counts(train_metrics: dict[int, dict], partition_of) -> dict:
    """Samples each participant trained on and left out this round (from its reply)."""
    trained, forgotten = {}, {}
    for node_id, metrics in train_metrics.items():
        pid = partition_of(node_id)
        key = str(pid if pid is not None else node_id)
        trained[key] = int(metrics.get("num-examples", 0))
        forgotten[key] = int(metrics.get("num-forgotten", 0))
    return {"trained_examples": trained, "forgotten_examples": forgotten}


def sum_costs(rounds: list[dict], phases: tuple[str, ...], up_to: int | None = None) -> dict:
    """Add up the counted costs of the rounds in ``phases`` (up to round ``up_to``).

    ``rounds`` counts FedAvg rounds; ``extra_rounds`` the communication rounds a
    baseline's unlearning step used inside them (PGD's ascent, FedEraser's calibration).
    """
    rows = [r for r in rounds if r["phase"] in phases and (up_to is None or r["round"] <= up_to)]
    return {
        "rounds": len(rows),
        "extra_rounds": int(sum(r.get("extra_rounds", 0) for r in rows)),
        "bytes_down": int(sum(r.get("bytes_down", 0) for r in rows)),
        "bytes_up": int(sum(r.get("bytes_up", 0) for r in rows)),
        "client_seconds": float(sum(r.get("client_seconds", 0.0) for r in rows)),
        "server_seconds": float(sum(r.get("server_seconds", 0.0) for r in rows)),
    }


def format_summary(models: dict[str, dict[str, float]]) -> list[str]:
    """Lines of the summary table: one row per model, accuracies in %."""
    cols = (("forget_acc", "forget"), ("retain_acc", "retain"), ("test_acc", "test"),
            ("mia_efficacy", "MIA"), ("asr", "ASR"))
    shown = [(k, h) for k, h in cols if any(k in m for m in models.values())]
    lines = [f"{'model':<14}" + "".join(f"{h:>9}" for _, h in shown) + f"{'test loss':>11}"]
    for name, m in models.items():
        cells = "".join(
            f"{100 * m[k]:9.2f}" if m.get(k) is not None and m[k] == m[k] else f"{'-':>9}"
            for k, _ in shown
        )
        lines.append(f"{name:<14}{cells}{m.get('test_loss', float('nan')):11.4f}")
    return lines


#: What each method needs (from the method registry, :mod:`not_flower.methods`).
REQUIREMENTS = {name: dict(spec.requirements) for name, spec in REGISTRY.items()}


def make_strategy(cfg: RunConfig, plan, on_unlearning, *, out_dir: Path | None = None) -> NoT:
    """The strategy of the run's method, FedAvg-configured.

    The method's builder comes from the registry (:data:`not_flower.methods.REGISTRY`;
    the builders are in :mod:`not_flower.strategy_builders`): ``not`` (NoT), ``ft`` and
    ``retrain`` (FT from a fresh model, request at round 1), and the baselines ``pgd``,
    ``federaser`` (history in ``<out_dir>/federaser-history``) and ``fukd`` (on the
    ``server-data-fraction`` the clients never get). Nodes may ask to be forgotten with
    the node-config flag ``forget-me=true``; with ``request-dir`` set, request files
    dropped there are applied at round boundaries.
    """
    spec = REGISTRY[cfg.method]
    kwargs = dict(
        forget_me_key="forget-me",
        request_source=RequestFolder(cfg.request_dir) if cfg.request_dir else None,
        fraction_train=cfg.fraction_train,
        fraction_evaluate=cfg.fraction_evaluate if cfg.val_fraction > 0 else 0.0,
        min_train_nodes=1,
        min_evaluate_nodes=1,
        min_available_nodes=1,
        on_unlearning=on_unlearning,
        # the app copies each round's bookkeeping into results.json as the round ends and
        # reads the previous round's at a request: the strategy keeps two rounds, so its
        # memory does not grow with the number of rounds
        keep_rounds=2,
        max_empty_rounds=cfg.max_empty_rounds,
    )
    if spec.recovers:  # Retrain, the reference, trains as the original training did
        kwargs.update(recovery_options(cfg))
    return spec.build_strategy(cfg, plan, out_dir=out_dir, **kwargs)


def recovery_options(cfg: RunConfig) -> dict:
    """NoT's recovery-only keyword arguments from the run config.

    ``recovery-server-optimizer`` / ``-momentum`` / ``-lr`` become the server update
    (``recovery_optimizer``: FedAvgM's or FedAdam's; ``recovery_momentum``,
    ``recovery_server_lr``); ``recovery-lr`` and
    ``recovery-local-epochs`` (0: as in training) go to the clients in the train config
    of recovery rounds (``recovery_config``), where :func:`not_flower.client_app.train_fn`
    reads them.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.

    Returns
    -------
    dict
        ``recovery_optimizer``, ``recovery_momentum``, ``recovery_server_lr`` and
        ``recovery_config``.
    """
    config: dict = {}
    if cfg.recovery_lr > 0:
        config["lr"] = float(cfg.recovery_lr)
    if cfg.recovery_local_epochs > 0:
        config["local-epochs"] = int(cfg.recovery_local_epochs)
    return {"recovery_optimizer": cfg.recovery_server_optimizer,
            "recovery_momentum": cfg.recovery_server_momentum,
            "recovery_server_lr": cfg.recovery_server_lr, "recovery_config": config}


def scheduled_kind(cfg: RunConfig, num_partitions: int) -> dict:
    """``classes=``/``samples=`` arguments of the run config's scheduled requests."""
    if cfg.unlearn_mode == "class":
        return {"classes": [int(c) for c in cfg.unlearn_classes]}
    if cfg.unlearn_mode == "instance":
        if cfg.unlearn_samples == ("poisoned",):
            pid = int(cfg.unlearn_clients[0])
            poisoned = client_data(cfg, pid, num_partitions).poisoned
            if len(poisoned) == 0:
                raise ValueError(f"unlearn-samples 'poisoned': client {pid} poisoned no sample "
                                 "(set backdoor-clients to include it)")
            return {"samples": [int(i) for i in poisoned]}
        return {"samples": [int(i) for i in cfg.unlearn_samples]}
    return {}


def evaluation_kind(request, partition_ids: set[int]) -> dict:
    """Keyword arguments of :func:`split_forget_retain` for an applied request."""
    if request.kind == "class":
        return {"classes": set(request.classes), "all_clients": request.rule.values == ("*",)}
    if request.kind == "instance":
        return {"samples": {pid: set(request.samples) for pid in partition_ids}}
    return {}


def evaluation_kind_from_config(cfg: RunConfig, kind: dict, ids: set[int]) -> dict:
    """Keyword arguments of :func:`split_forget_retain` for the run config's requests."""
    if "classes" in kind:
        return {"classes": set(kind["classes"]), "all_clients": "*" in cfg.unlearn_clients}
    if "samples" in kind:
        return {"samples": {pid: set(kind["samples"]) for pid in ids}}
    return {}


# pylint: disable=too-many-locals,too-many-statements
def run_experiment(grid: Grid, cfg: RunConfig, out_dir: Path, run_id: int | None = None) -> dict:
    """The whole run; returns what it writes to ``results.json``.

    Parameters
    ----------
    grid : Grid
        Flower's grid.
    cfg : RunConfig
        Validated run configuration.
    out_dir : Path
        Absolute folder for ``results.json`` and the checkpoints.
    run_id : int, optional
        Flower's run id, kept in the records of forgetting.

    Returns
    -------
    dict
        The results.
    """
    t_start = time.perf_counter()
    # another run's files in out-dir: refused, or moved aside (overwrite), before any work
    moved = prepare_out_dir(out_dir, resume=cfg.resume, overwrite=cfg.overwrite,
                            init_checkpoint=cfg.init_checkpoint)
    if moved:
        log(WARNING, "%s", moved)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    data = dataset_for(cfg)
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    initial = ArrayRecord(model.state_dict())
    if cfg.init_checkpoint and cfg.method != "retrain":
        initial = ArrayRecord(load_initial_checkpoint(cfg.init_checkpoint, model))
    plan = plan_negation(
        model, example_input(data.input_shape), cfg.negate_layers,
        include_bias=cfg.negate_bias, batchnorm=cfg.batchnorm_policy,
    )
    evaluator = Evaluator(cfg, model)
    meta = {"model": cfg.model, "dataset": cfg.dataset, "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "seed": cfg.seed, "method": cfg.method}
    results: dict = {
        "method": cfg.method,
        "config": to_run_config(cfg),
        "out_dir": str(out_dir),
        "negation": plan.to_dict() if cfg.method == "not" else None,
        "rounds": [],
        "requests": [],
        "models": {},
        "checkpoints": {},
    }
    state: dict = {"num_partitions": None, "reference_val_acc": None, "forget_ids": set()}
    saved = load_run_state(out_dir, cfg) if cfg.resume else None
    offset = 0  # rounds already done by the interrupted run this one resumes
    if saved is not None:
        offset = saved["round"]
        results = saved["results"]
        state.update(saved["state"], forget_ids=set(saved["state"]["forget_ids"]))
        initial = ArrayRecord(load_initial_checkpoint(str(out_dir / "checkpoint-latest.pt"), model))
        results.setdefault("resumed_from_round", []).append(offset)
        log(INFO, "resuming from round %d of %d (%s)", offset, cfg.total_rounds, out_dir)
    stopping = StoppingRule(cfg.stop_tolerance, state.setdefault("stopping", []))  # per request

    def on_unlearning(event: UnlearningEvent, before: ArrayRecord, after: ArrayRecord) -> None:
        new_ids = {
            int(t["identity"]["partition-id"]) for t in event.targets
            if t.get("identity") and "partition-id" in t["identity"]
        }
        state["forget_ids"] = state["forget_ids"] | new_ids
        evaluator.set_forget(state["num_partitions"], state["forget_ids"],
                             **evaluation_kind(event.request, new_ids))
        request = event.to_dict()
        request["round"] = offset + event.round
        request["partition_ids"] = sorted(new_ids)
        results["requests"].append(request)
        if cfg.method == "retrain":
            request["sha256_before"] = request["sha256_negated"] = sha256_arrays(before)
            return
        first = "original" not in results["models"]
        if first:  # the pre-unlearning model of the first request is "original"
            path = save_checkpoint(out_dir / "checkpoint-original.pt", before,
                                   {**meta, "round": offset + event.round - 1, "phase": "train"})
            results["checkpoints"]["original"] = str(path)
        request["sha256_before"] = sha256_arrays(before)
        request["sha256_negated"] = sha256_arrays(after)
        request["models"] = {"before": evaluator.full(before)}
        if cfg.method == "not":
            request["models"]["negated"] = evaluator.full(after)
        if cfg.method in BASELINE_METHODS:  # the model right after the method's step
            request["models"]["unlearned"] = evaluator.full(after)
        if first:
            results["models"]["original"] = request["models"]["before"]
            if cfg.method == "not":
                results["models"]["negated"] = request["models"]["negated"]
                log(INFO, "NoT: negated model: test acc %.2f %% (original %.2f %%)",
                    100 * results["models"]["negated"]["test_acc"],
                    100 * results["models"]["original"]["test_acc"])
            if cfg.method in BASELINE_METHODS:
                results["models"]["unlearned"] = request["models"]["unlearned"]
                log(INFO, "%s: unlearned model: test acc %.2f %% (original %.2f %%)",
                    cfg.method, 100 * results["models"]["unlearned"]["test_acc"],
                    100 * results["models"]["original"]["test_acc"])
        # stopping reference: retained clients' own validation accuracy before the request
        previous = strategy.rounds.get(event.round - 1, {}).get("evaluate_metrics", {})
        state["reference_val_acc"] = retained_val_acc(
            previous, {n for n in previous if n not in strategy.excluded_node_ids}
        )
        stopping.start(offset + event.round, state["reference_val_acc"])

    strategy = make_strategy(cfg, plan, on_unlearning, out_dir=out_dir)
    node_ids = wait_for_nodes(grid, 1)
    identities = strategy.identify(grid, node_ids)
    declared = [int(i["num-partitions"]) for i in identities.values() if i and "num-partitions" in i]
    state["num_partitions"] = max(declared) if declared else len(node_ids)
    if saved is not None:
        # requests applied before the interruption stay in force (no second negation);
        # requests still pending are queued again for their round
        for rule in saved["applied"]:
            strategy.exclude(rule["values"], by=rule["by"])
        strategy.restore_forget_specs(saved.get("forget_specs", {}))
        for req in saved["pending"]:
            strategy.request_unlearning(
                req["values"], by=req["by"], requested_by=req["requested_by"],
                at_round=None if req["at_round"] is None else max(1, req["at_round"] - offset),
                **({"classes": req["classes"]} if req.get("classes") else {}),
                **({"samples": req["samples"]} if req.get("samples") else {}),
            )
    kind = scheduled_kind(cfg, state["num_partitions"])
    if cfg.identify_by == "partition-id" and cfg.unlearn_clients:
        ids = {int(c) for c in cfg.unlearn_clients if c != "*"}
        evaluator.set_forget(state["num_partitions"], ids, **evaluation_kind_from_config(
            cfg, kind, ids))
    if saved is None:
        for index, group in enumerate(cfg.unlearn_groups):
            strategy.request_unlearning(
                group, by=cfg.identify_by, at_round=cfg.request_round(index),
                requested_by="operator (run config)", **kind,
            )
    # a scheduled target that names no connected node fails now, not after training
    for warning in check_targets(strategy.pending_requests, node_ids, node_names(grid),
                                 strategy.identities, expected_nodes=state["num_partitions"]):
        log(WARNING, "%s", warning)
    snapshots = {cfg.num_train_rounds + int(k): f"recovered@{k}" for k in cfg.eval_recovery_rounds}
    partition_of = lambda n: (strategy.identities.get(n) or {}).get("partition-id")  # noqa: E731

    def central_eval(local_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if offset and local_round == 0:
            return None  # the resumed model was measured as the last round before the stop
        server_round = offset + local_round
        info = strategy.rounds.get(local_round, {})
        phase = info.get("phase", "init")
        if cfg.method == "retrain" and phase != "init":
            phase = "retrain"
        row = {
            "round": server_round,
            "phase": phase,
            "participants": sorted(
                int(p) for p in map(partition_of, info.get("train_replied", [])) if p is not None
            ),
            "participant_node_ids": info.get("train_replied", []),
            "participants_detail": [
                {"node_id": n, "partition_id": partition_of(n)} for n in info.get("train_replied", [])
            ],
            # baselines: who worked in the unlearning step at this boundary (PGD's target,
            # FedEraser's calibrating clients) and how many communication rounds it used
            "unlearning_participants": sorted(
                int(p) for p in map(partition_of, info.get("unlearning_replied", []))
                if p is not None
            ),
            "extra_rounds": info.get("extra_rounds", 0),
            "evaluated": sorted(
                int(p) for p in map(partition_of, info.get("evaluate_replied", [])) if p is not None
            ),
            **evaluator.quick(arrays),
            **trained_counts(info.get("train_metrics", {}), partition_of),
            "val_acc": retained_val_acc(info.get("evaluate_metrics", {})),
            **{k: info.get(k, 0) for k in ("bytes_down", "bytes_up", "client_seconds",
                                           "server_seconds")},
        }
        results["rounds"].append(row)
        for k in stopping.observe(server_round, phase, row["val_acc"]):  # each request's own
            stopped = evaluator.full(arrays)
            results["requests"][k].setdefault("models", {})["stopped"] = stopped
            log(INFO, "stopping rule: request %d: retained val acc %.2f %% is within %.1f points "
                "of %.2f %% at round %d", k + 1, 100 * row["val_acc"], 100 * cfg.stop_tolerance,
                100 * stopping.entries[k]["reference_val_acc"], server_round)
        if server_round in snapshots:
            results["models"][snapshots[server_round]] = evaluator.full(arrays)
        if server_round >= 1:
            save_run_state(out_dir, cfg, server_round, arrays, results, state, strategy, offset,
                           meta)
        return MetricRecord({k: v for k, v in row.items()
                             if k in ("test_acc", "test_loss", "forget_acc", "asr")})

    result = strategy.start(
        grid,
        initial,
        num_rounds=cfg.total_rounds - offset,
        train_config=ConfigRecord({"lr": cfg.lr}),
        evaluate_config=ConfigRecord(),
        evaluate_fn=central_eval,
    )
    train_loss = result.train_metrics_clientapp
    for row in results["rounds"]:
        rec = train_loss.get(row["round"] - offset) if row["round"] > offset else None
        if rec is not None and "train-loss" in rec:
            row["train_loss"] = float(rec["train-loss"])

    final = result.arrays if result.arrays is not None else initial
    final_name = {"retrain": "retrained"}.get(
        cfg.method, "recovered" if strategy.in_recovery or strategy.applied_rules else "original")
    path = save_checkpoint(out_dir / "checkpoint-final.pt", final,
                           {**meta, "round": cfg.total_rounds, "phase": final_name})
    results["checkpoints"]["final"] = str(path)
    results["models"][final_name] = evaluator.full(final)
    results["final"] = final_name
    per_request = stopping.summary(cfg.recovery_rounds if cfg.method != "retrain" else None)
    last = per_request[-1] if per_request else {}
    stop = last.get("chosen_round")
    last_stopped = ((results["requests"][-1].get("models") or {}).get("stopped")
                    if per_request else None)
    if last_stopped is not None:  # "stopped": where the LAST request's recovery stopped
        results["models"]["stopped"] = last_stopped
    unlearning_phases = ("retrain",) if cfg.method == "retrain" else ("recovery",)
    results["costs"] = {
        "train": sum_costs(results["rounds"], ("train",)),
        # each request's rounds up to its own stop round (all of them where it did not stop)
        "unlearning": sum_costs(results["rounds"] if cfg.method == "retrain" else
                                stopping.rows_until_stop(results["rounds"]), unlearning_phases),
        "unlearning_fixed_length": sum_costs(results["rounds"], unlearning_phases),
        # bytes of history the method kept (peak, measured; NoT, FT and Retrain keep nothing
        # beyond the global model)
        "storage_bytes": int(getattr(strategy, "storage_peak_bytes", 0)),
        "storage_bytes_final": int(getattr(strategy, "storage_bytes", 0)),
    }
    steps = strategy.steps if strategy.unlearner.records_step else None
    if steps is not None:  # the baselines' unlearning step, per request
        results["unlearning_steps"] = steps
        results["costs"]["unlearning_step"] = {
            "rounds": int(sum(s["rounds"] for s in steps)),
            "bytes_down": int(sum(s["bytes_down"] for s in steps)),
            "bytes_up": int(sum(s["bytes_up"] for s in steps)),
            "client_seconds": float(sum(s["client_seconds"] for s in steps)),
            "server_seconds": float(sum(s["server_seconds"] for s in steps)),
        }
    results["requirements"] = dict(REQUIREMENTS[cfg.method])
    if cfg.server_data_fraction > 0:
        results["server_data"] = {"fraction": cfg.server_data_fraction,
                                  "samples": int(len(server_indices(cfg)))}
    results["stopping"] = {  # the last request's, and every request's in per_request
        "rule": RULE,
        "tolerance": cfg.stop_tolerance,
        "reference_val_acc": last.get("reference_val_acc"),
        "chosen_round": stop,
        "chosen_recovery_rounds": last.get("chosen_recovery_rounds"),
        "cap": cfg.recovery_rounds if cfg.method != "retrain" else None,
        "per_request": per_request,
    }
    results["num_partitions"] = state["num_partitions"]
    if evaluator.membership is not None:
        results["membership"] = evaluator.membership.info()
    results["excluded_node_ids"] = sorted(strategy.excluded_node_ids)
    results["wall_seconds"] = time.perf_counter() - t_start
    results["audit"] = write_records(out_dir, cfg, results, final, grid, run_id=run_id)
    write_json(out_dir / "results.json", results)
    log(INFO, "")
    log(INFO, "not-flower summary, method %s (results in %s):", cfg.method, out_dir / "results.json")
    for line in format_summary(results["models"]):
        log(INFO, "  %s", line)
    for line in summary_lines(per_request, results["requests"]):
        log(INFO, "  %s", line)
    return results
