"""not-flower's ServerApp: train, receive "unlearn client k", negate, recover, report.

Driven entirely by the run config (:mod:`not_flower.common.config`). One ``strategy.start()``
covers ``num-train-rounds`` of FedAvg and ``recovery.rounds`` of recovery: the unlearning
request is queued for the boundary before round ``num-train-rounds + 1``. At that boundary
the strategy's ``on_unlearning`` hook saves the pre-unlearning checkpoint and measures the
original and the negated model. At the end the final checkpoint and ``results.json`` are
written (atomically) to ``out-dir`` and a summary table is printed.

The pieces: :class:`Experiment` (this module) holds one run and the hooks the strategy
calls; the global model is measured by :mod:`not_flower.evaluation.evaluator`, what the run records
is kept by :mod:`not_flower.app.recorder`, checkpoint and resume state is
:mod:`not_flower.app.run_state`, and the records of forgetting are written by
:mod:`not_flower.app.forgetting_records`.
"""

from __future__ import annotations

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

from not_flower.app.collapse import collapse_warning, first_at_chance
from not_flower.app.forgetting_records import (
    audit_log_path,
    check_audit_log,
    update_progress,
    write_records,
)
from not_flower.app.forgotten_check import nothing_forgotten, target_keys
from not_flower.app.preflight import check_checkpoint_meta, check_federation
from not_flower.app.recorder import (
    RoundStats,
    RunRecorder,
    format_summary,
    retained_val_acc,
    round_stats,
)
from not_flower.app.request_gate import RequestGate
from not_flower.app.requests import RequestFolder
from not_flower.app.run_state import (
    RunState,
    check_resume_target,
    load_initial_checkpoint,
    load_run_state,
    restore_requests,
    save_finished_state,
    save_run_state,
)
from not_flower.app.specs import data_spec, reference_spec
from not_flower.app.stopping import StoppingRule, summary_lines
from not_flower.app.strategy_builders import recovery_settings
from not_flower.audit.cli import sha256_arrays
from not_flower.common import progress
from not_flower.common.config import RunConfig, parse_run_config
from not_flower.common.methods import REGISTRY
from not_flower.common.outdir import check_out_dir, lock_out_dir, move_previous, unlock_out_dir
from not_flower.common.store import load_checkpoint, save_checkpoint, write_json
from not_flower.evaluation.evaluator import Evaluator, evaluation_kind, evaluation_kind_from_config
from not_flower.task.models import build_model, example_input
from not_flower.task.training import client_data, dataset_for, server_indices, use_threads
from strategies.negation import plan_negation
from strategies.not_strategy import NoT, UnlearningEvent
from strategies.round_log import RoundLog
from strategies.target_check import check_targets, node_names

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


def _run_id(grid: Grid | None) -> int | None:
    """Flower's run id (``None`` without a run attached, as in tests)."""
    try:
        return grid.run.run_id
    except Exception:  # noqa: BLE001 - no run attached
        return None


def save_original(path: Path, arrays: ArrayRecord, meta: dict) -> Path:
    """Save ``checkpoint-original.pt``, never replacing another model there.

    A resumed run that applies the first request again (the interrupted run stopped
    before that round was durable) writes the same model; a different one is refused.

    Raises
    ------
    ValueError
        If the file holds another model.
    """
    if path.is_file():
        state, _ = load_checkpoint(path)
        if sha256_arrays(state) == sha256_arrays(arrays):
            return path
        raise ValueError(
            f"{path} holds another model than the one this request is applied "
            "to; it is kept, the run stops (was the out-dir used by another run?)"
        )
    return save_checkpoint(path, arrays, meta)


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


#: What each method needs (from the method registry, :mod:`not_flower.common.methods`).
REQUIREMENTS = {name: spec.requirements.to_dict() for name, spec in REGISTRY.items()}


def make_strategy(cfg: RunConfig, plan, on_unlearning, *, out_dir: Path | None = None) -> NoT:
    """The strategy of the run's method, FedAvg-configured.

    The method's builder comes from the registry (:data:`not_flower.common.methods.REGISTRY`;
    the builders are in :mod:`not_flower.app.strategy_builders`): ``not`` (NoT), ``ft`` and
    ``retrain`` (FT from a fresh model, request at round 1), and the baselines ``pgd``,
    ``federaser`` (history in ``<out_dir>/federaser-history``) and ``fukd`` (on the
    ``fukd.server-data-fraction`` the clients never get). Nodes may ask to be forgotten with
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
        # Flower's own threads draw from the process-wide random: sampling gets its own
        sampling_seed=cfg.seed,
        # the recovery settings, one record (Retrain's are the defaults: it does not recover)
        recovery=recovery_settings(cfg),
    )
    return spec.build_strategy(cfg, plan, out_dir=out_dir, **kwargs)


def scheduled_kind(cfg: RunConfig, num_partitions: int) -> dict:
    """``classes=``/``samples=`` arguments of the run config's scheduled requests."""
    if cfg.unlearn_mode == "class":
        return {"classes": [int(c) for c in cfg.unlearn_classes]}
    if cfg.unlearn_mode == "instance":
        if cfg.unlearn_samples == ("poisoned",):
            pid = int(cfg.unlearn_clients[0])
            poisoned = client_data(data_spec(cfg), pid, num_partitions).poisoned
            if len(poisoned) == 0:
                raise ValueError(
                    f"unlearn.samples 'poisoned': client {pid} poisoned no sample "
                    "(set backdoor.clients to include it)"
                )
            return {"samples": [int(i) for i in poisoned]}
        return {"samples": [int(i) for i in cfg.unlearn_samples]}
    return {}


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
    check_resume_target(out_dir, cfg)  # resume into a mistyped out-dir: refused, not created
    lock = lock_out_dir(out_dir)  # held for the run's life: a second run here stops now
    try:
        # another run's files in out-dir: refused now; moved aside (overwrite) only once
        # every other check passed, so a run that fails its checks changes nothing
        previous = check_out_dir(
            out_dir, resume=cfg.resume, overwrite=cfg.overwrite, init_checkpoint=cfg.init_checkpoint
        )
        run = Experiment(cfg, out_dir)  # model, negation plan, evaluator, strategy; or resumed
        run.connect(grid, wait_for_nodes(grid, 1))  # identities; the requests queued
        moved = move_previous(out_dir, previous)
        if moved:
            log(WARNING, "%s", moved)
            history = REGISTRY[cfg.method].history_dir
            if history:  # the method's history folder was among the files moved
                (out_dir / history).mkdir(exist_ok=True)
        result = run.strategy.start(
            grid,
            run.initial,
            num_rounds=cfg.total_rounds - run.offset,
            train_config=ConfigRecord({"lr": cfg.lr}),
            evaluate_config=ConfigRecord(),
            evaluate_fn=run.central_eval,
            should_stop=run.should_stop,  # the stopping rule ends the run (recovery.run-to-cap)
        )
        results = run.finish(grid, result, run_id=run_id, t_start=t_start)
    finally:
        unlock_out_dir(lock)
    log(INFO, "")
    log(
        INFO, "not-flower summary, method %s (results in %s):", cfg.method, out_dir / "results.json"
    )
    for line in format_summary(results["models"]):
        log(INFO, "  %s", line)
    for line in summary_lines(results["stopping"]["per_request"], results["requests"]):
        log(INFO, "  %s", line)
    return results


class Experiment:  # pylint: disable=too-many-instance-attributes
    """One run of the ServerApp: its strategy, the hooks it calls, and what they record.

    Seeds the generators, sets torch's threads (``torch-threads``), builds the model (from
    ``init-checkpoint`` if set), the negation
    plan, the evaluator and the strategy, and, with ``resume``, continues the run that
    ``out_dir``'s ``state.json`` describes.

    Parameters
    ----------
    cfg : RunConfig
        Validated run configuration.
    out_dir : Path
        Absolute folder for ``results.json`` and the checkpoints.
    """

    def __init__(self, cfg: RunConfig, out_dir: Path) -> None:
        self.cfg, self.out_dir = cfg, out_dir
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        use_threads(cfg.torch_threads)  # reference models, FUKD, evaluation: chosen, not all cores
        data = dataset_for(data_spec(cfg))
        model = build_model(cfg.model, data.input_shape, data.num_classes)
        self.initial = ArrayRecord(model.state_dict())
        self.meta = {
            "model": cfg.model,
            "dataset": cfg.dataset,
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
            "seed": cfg.seed,
            "method": cfg.method,
        }
        if cfg.init_checkpoint and REGISTRY[cfg.method].recovers:  # Retrain: from scratch
            check_checkpoint_meta(cfg.init_checkpoint, self.meta)  # another data set: refused
            self.initial = ArrayRecord(load_initial_checkpoint(cfg.init_checkpoint, model))
        self.plan = plan_negation(
            model,
            example_input(data.input_shape),
            cfg.negate_layers,
            include_bias=cfg.negate_bias,
            batchnorm=cfg.batchnorm_policy,
        )
        self.evaluator = Evaluator(data_spec(cfg), model, membership=reference_spec(cfg))
        self.recorder = RunRecorder(
            cfg, str(out_dir), self.plan.to_dict() if REGISTRY[cfg.method].negates else None
        )
        self.state = RunState()
        self.saved = load_run_state(out_dir, cfg) if cfg.resume else None
        self.offset = 0  # rounds already done by the interrupted run this one resumes
        if self.saved is not None:
            self.offset = self.saved.round
            self.recorder = RunRecorder.from_dict(self.saved.results)
            self.state = self.saved.state
            self.initial = ArrayRecord(
                load_initial_checkpoint(str(out_dir / "checkpoint-latest.pt"), model)
            )
            self.recorder.mark_resumed(self.offset)
            log(
                INFO,
                "resuming from round %d of %d (%s); Flower's own log counts this "
                "run's rounds from 1: its [ROUND 1/%d] is the app's round %d",
                self.offset,
                cfg.total_rounds,
                out_dir,
                cfg.total_rounds - self.offset,
                self.offset + 1,
            )
        self.stopping = StoppingRule.from_config(cfg, self.state.stopping)  # per request
        self.ended_at: int | None = None  # the round the stopping rule ended the run at
        #: server round -> the name of the model measured after it
        self._instance_events: list[UnlearningEvent] = []  # to check they forgot something
        self.snapshots = {
            cfg.num_train_rounds + int(k): f"recovered@{k}" for k in cfg.eval_recovery_rounds
        }
        self.strategy = make_strategy(cfg, self.plan, self.on_unlearning, out_dir=out_dir)
        if self.strategy.request_source is not None:  # nothing forgotten twice
            self.strategy.request_source = RequestGate(
                self.strategy.request_source, self.state, self.strategy
            )
        # the audit log is writable and verifies, before round 1
        check_audit_log(
            audit_log_path(cfg, out_dir), moved_away=cfg.overwrite and not cfg.audit_log
        )
        self.grid: Grid | None = None  # set by connect

    def partition_of(self, node_id: int) -> int | None:
        """The partition id a node declared (``None``: not known)."""
        return (self.strategy.identities.get(node_id) or {}).get("partition-id")

    def connect(self, grid: Grid, node_ids: list[int]) -> None:
        """Learn who the nodes are and queue the run's requests before round 1.

        Parameters
        ----------
        grid : Grid
            Flower's grid.
        node_ids : list[int]
            The connected nodes.
        """
        cfg, strategy = self.cfg, self.strategy
        self.grid = grid
        identities = strategy.identify(grid, node_ids)
        declared = [
            int(i["num-partitions"]) for i in identities.values() if i and "num-partitions" in i
        ]
        self.state.num_partitions = max(declared) if declared else len(node_ids)
        if self.saved is not None:
            restore_requests(strategy, self.saved)
        # classes, sample ids, partition sizes, nobody left: refused before round 1
        check_federation(cfg, self.meta["num_classes"], self.state.num_partitions)
        kind = scheduled_kind(cfg, self.state.num_partitions)
        if cfg.identify_by == "partition-id" and cfg.unlearn_clients:
            ids = {int(c) for c in cfg.unlearn_clients if c != "*"}
            self.evaluator.set_forget(
                self.state.num_partitions,
                ids,
                **evaluation_kind_from_config(cfg.unlearn_clients, kind, ids),
            )
        if self.saved is None:
            for index, group in enumerate(cfg.unlearn_groups):
                strategy.request_unlearning(
                    group,
                    by=cfg.identify_by,
                    at_round=cfg.request_round(index),
                    requested_by="operator (run config)",
                    **kind,
                )
        # a scheduled target that names no connected node fails now, not after training
        for warning in check_targets(
            strategy.pending_requests,
            node_ids,
            node_names(grid),
            strategy.identities,
            expected_nodes=self.state.num_partitions,
        ):
            log(WARNING, "%s", warning)

    def on_unlearning(
        self, event: UnlearningEvent, before: ArrayRecord, after: ArrayRecord
    ) -> None:
        """The strategy's hook at a request: record it, measure the models, start stopping.

        Parameters
        ----------
        event : UnlearningEvent
            The applied request.
        before, after : ArrayRecord
            The global model before and right after the method's step.
        """
        if event.request.kind == "instance":
            self._instance_events.append(event)  # judged when its targets reply
        new_ids = {
            int(t["identity"]["partition-id"])
            for t in event.targets
            if t.get("identity") and "partition-id" in t["identity"]
        }
        self.state.forget_ids = self.state.forget_ids | new_ids
        self.evaluator.set_forget(
            self.state.num_partitions,
            self.state.forget_ids,
            **evaluation_kind(event.request, new_ids),
        )
        request = event.to_dict()  # with a request file's reason ("GDPR art. 17"), if any
        request["round"] = self.offset + event.round
        request["partition_ids"] = sorted(new_ids)
        self.recorder.add_request(request)
        self.state.mark_applied(request)
        if not REGISTRY[self.cfg.method].recovers:  # Retrain: no step, nothing to measure
            request["sha256_before"] = request["sha256_negated"] = sha256_arrays(before)
            self._record_applied()
            return
        self._measure_request(request, event.round, before, after)
        # stopping reference: retained clients' own validation accuracy before the request
        previous = self.strategy.rounds.get(event.round - 1, RoundLog()).evaluate_metrics
        self.state.reference_val_acc = retained_val_acc(
            previous, {n for n in previous if n not in self.strategy.excluded_node_ids}
        )
        self.stopping.start(self.offset + event.round, self.state.reference_val_acc)
        self._record_applied()

    def _check_forgotten(self, row: RoundStats) -> None:
        """Stop the run when an instance-wise request's targets forgot no sample."""
        for event in list(self._instance_events):
            message = nothing_forgotten(
                target_keys(event.targets), row.forgotten_examples, list(event.request.samples)
            )
            if message is not None:
                raise ValueError(message)
            if target_keys(event.targets) & set(row.forgotten_examples):
                self._instance_events.remove(event)  # judged: it forgot something

    def _record_applied(self) -> None:
        """Write the record of the request just applied (status ``applied``) and log it."""
        write_records(
            self.out_dir,
            self.cfg,
            self.recorder.to_dict(),
            None,
            self.grid,
            run_id=_run_id(self.grid),
        )

    def _measure_request(
        self, request: dict, local_round: int, before: ArrayRecord, after: ArrayRecord
    ) -> None:
        """Hash and measure the models of a request; the first one's are the run's."""
        cfg, recorder = self.cfg, self.recorder
        first = "original" not in recorder.models
        if first:  # the pre-unlearning model of the first request is "original"
            path = save_original(
                self.out_dir / "checkpoint-original.pt",
                before,
                {**self.meta, "round": self.offset + local_round - 1, "phase": "train"},
            )
            recorder.add_checkpoint("original", path)
        request["sha256_before"] = sha256_arrays(before)
        request["sha256_negated"] = sha256_arrays(after)
        request["models"] = {"before": self.evaluator.full(before)}
        spec = REGISTRY[cfg.method]
        if spec.step_model:  # the model right after the method's step ("negated", "unlearned")
            request["models"][spec.step_model] = self.evaluator.full(after)
        if not first:
            return
        models = request["models"]
        recorder.add_model("original", models["before"])
        if spec.step_model:
            recorder.add_model(spec.step_model, models[spec.step_model])
            log(
                INFO,
                "%s: %s model: test acc %.2f %% (original %.2f %%)",
                spec.label,
                spec.step_model,
                100 * models[spec.step_model]["test_acc"],
                100 * models["before"]["test_acc"],
            )

    def central_eval(self, local_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """The strategy's evaluate hook after every round: measure, record, save the state.

        Parameters
        ----------
        local_round : int
            This run's round (0: the initial model).
        arrays : ArrayRecord
            The global model.

        Returns
        -------
        MetricRecord or None
            Test accuracy and loss, forget accuracy and ASR when known.
        """
        if self.offset and local_round == 0:
            return None  # the resumed model was measured as the last round before the stop
        server_round = self.offset + local_round
        info = self.strategy.rounds.get(local_round) or RoundLog(phase="init")
        phase = info.phase
        if phase != "init" and not REGISTRY[self.cfg.method].recovers:
            phase = REGISTRY[self.cfg.method].phase_after_request  # Retrain's "retrain"
        progress.report("round", server_round, self.cfg.total_rounds, phase, log_it=False)
        row = round_stats(
            server_round, phase, info, self.partition_of, self.evaluator.quick(arrays)
        )
        self.recorder.add_round(row)
        self._check_forgotten(row)
        self._observe_stopping(row, arrays)
        if server_round in self.snapshots:
            self.recorder.add_model(self.snapshots[server_round], self.evaluator.full(arrays))
        if server_round >= 1:
            results = self.recorder.to_dict()
            save_run_state(
                self.out_dir,
                self.cfg,
                server_round,
                arrays,
                results,
                self.state,
                self.strategy,
                self.offset,
                self.meta,
            )
            if isinstance(self.strategy.request_source, RequestGate):  # files now settled
                self.strategy.request_source.durable()
            update_progress(self.out_dir, self.cfg, results, self.grid)  # record: rounds so far
        return MetricRecord(
            {
                k: v
                for k, v in row.to_dict().items()
                if k in ("test_acc", "test_loss", "forget_acc", "asr")
            }
        )

    def _observe_stopping(self, row: RoundStats, arrays: ArrayRecord) -> None:
        """Judge a round for each open request; measure the model where one stops; warn
        once per request when its recovery stays at chance."""
        if row.phase == "recovery" and self.stopping.entries:
            # the latest request's recovery rounds so far (restored with the run on resume)
            since = self.stopping.entries[-1]["request_round"]
            accs = [
                r.val_acc
                for r in self.recorder.rounds
                if r.phase == "recovery" and r.round >= since
            ]
            classes = int(self.meta["num_classes"])
            if first_at_chance(accs, classes):
                requests = len(self.stopping.entries)
                log(WARNING, collapse_warning(requests, row.round, row.val_acc, classes))
        for k in self.stopping.observe(row.round, row.phase, row.val_acc):  # each its own
            self.recorder.add_stopped(k, self.evaluator.full(arrays))
            entry = self.stopping.entries[k]
            log(
                INFO,
                "stopping rule: request %d stops at round %d (%s): retained val acc %.2f %%, "
                "%.2f %% before the request",
                k + 1,
                row.round,
                "back within tolerance" if entry["branch"] == "tolerance" else "plateau",
                100 * row.val_acc,
                100 * entry["reference"] if entry["reference"] is not None else float("nan"),
            )

    def should_stop(self, local_round: int, _result=None) -> bool:
        """``should_stop`` of ``strategy.start``: :meth:`StoppingRule.ends_run` (``_result``,
        Flower's results so far, is unused: the rule reads the app's own rounds)."""
        server_round = self.offset + local_round
        pending = bool(self.strategy.pending_requests)
        if not self.stopping.ends_run(self.cfg, server_round, pending, self.snapshots):
            return False
        self.ended_at = server_round
        return True

    def finish(self, grid: Grid, result, *, run_id: int | None, t_start: float) -> dict:
        """Save and measure the final model, record costs and stopping, write the results.

        Parameters
        ----------
        grid : Grid
            Flower's grid (node names for the records of forgetting).
        result : flwr.serverapp.strategy.Result
            What ``strategy.start`` returned.
        run_id : int or None
            Flower's run id, kept in the records of forgetting.
        t_start : float
            ``time.perf_counter()`` at the start of the run.

        Returns
        -------
        dict
            The results, as written to ``results.json``.
        """
        cfg, recorder, strategy = self.cfg, self.recorder, self.strategy
        recorder.fill_train_loss(result.train_metrics_clientapp, self.offset)
        # no round left to run (resumed after the last round): the checkpoint's model
        final = result.arrays if result.arrays is not None and len(result.arrays) else self.initial
        last_round = self.ended_at or cfg.total_rounds  # the stopping rule may end it early
        self.state.mark_durable(last_round, finished=True)
        if not REGISTRY[cfg.method].recovers:
            final_name = "retrained"
        elif strategy.in_recovery or strategy.applied_rules:
            final_name = "recovered"
        else:
            final_name = "original"
        path = save_checkpoint(
            self.out_dir / "checkpoint-final.pt",
            final,
            {**self.meta, "round": last_round, "phase": final_name},
        )
        recorder.add_checkpoint("final", path)
        recorder.add_model(final_name, self.evaluator.full(final))
        recorder.final = final_name
        recorder.record_stopping(cfg, self.stopping, ended_at=self.ended_at)
        recorder.record_costs(
            cfg.method,
            self.stopping,
            storage_peak=getattr(strategy, "storage_peak_bytes", 0),
            storage_final=getattr(strategy, "storage_bytes", 0),
            steps=strategy.steps if strategy.unlearner.records_step else None,
        )
        recorder.requirements = dict(REQUIREMENTS[cfg.method])
        if cfg.server_data_fraction > 0:
            recorder.server_data = {
                "fraction": cfg.server_data_fraction,
                "samples": int(len(server_indices(data_spec(cfg)))),
            }
        recorder.num_partitions = self.state.num_partitions
        if self.evaluator.membership is not None:
            recorder.membership = self.evaluator.membership.info()
        recorder.excluded_node_ids = sorted(strategy.excluded_node_ids)
        recorder.wall_seconds = time.perf_counter() - t_start
        recorder.audit = write_records(
            self.out_dir, cfg, recorder.to_dict(), final, grid, run_id=run_id
        )
        results = recorder.to_dict()
        save_finished_state(self.out_dir, self.state)  # every request: done
        write_json(self.out_dir / "results.json", results)
        return results
