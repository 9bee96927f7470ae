"""Checkpoint and resume: what an interrupted run leaves in ``out-dir`` and reads back.

After every round the ServerApp writes ``checkpoint-latest.pt`` and then ``state.json``
(:func:`save_run_state`, both atomically): the round the checkpoint holds, the run
config, the requests applied so far and those still pending, the per-run state
(:class:`RunState`: each applied request's status and targets, the last durable round)
and the results so far. The checkpoint carries the same state in its metadata, so the
two are one atomic step: a kill between the two writes leaves a checkpoint newer than
``state.json``, and :func:`load_run_state` then resumes from the checkpoint's own state
(never applying a request twice). With ``resume=true`` a run reads it back
(:func:`load_run_state`; no state at all, or a finished run, is an error), re-applies the
applied requests' target rules and queues the pending ones again
(:func:`restore_requests`), and continues from the checkpoint
(:func:`load_initial_checkpoint`, which also checks ``init-checkpoint`` files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from logging import WARNING
from pathlib import Path

import torch
from flwr.app import ArrayRecord
from flwr.supercore import log

from not_flower.common.config import RunConfig, to_run_config
from not_flower.common.outdir import CONTROL_KEYS, OutDirError
from not_flower.common.settings import migrate_keys
from not_flower.common.store import load_checkpoint, save_checkpoint, write_json
from strategies.not_strategy import NoT


class RunFinishedError(OutDirError):
    """``resume = true`` on a run that already finished: nothing to do, nothing changed."""


@dataclass
class RunState:
    """What a run carries from round to round besides its results (kept for resume).

    Parameters
    ----------
    num_partitions : int or None
        Partitions of the federation (declared by the nodes, else the number of nodes).
    reference_val_acc : float or None
        Retained clients' validation accuracy before the latest request.
    forget_ids : set[int]
        Partition ids forgotten so far.
    stopping : list[dict]
        The stopping rule's per-request entries (:class:`not_flower.app.stopping.StoppingRule`
        updates this list in place).
    requests : list[dict]
        Every applied request (and only those): ``round``, ``by``, ``values``,
        ``requested_by``, ``kind``, ``status`` and ``targets`` (``node_id``,
        ``partition_id``, ``status``). A request's ``status`` goes ``"applied"`` (at its
        boundary, when its targets were negated or excluded) -> ``"recovering"`` (once a
        round after it is durable) -> ``"done"`` (the run finished); no other value. A
        target's ``status`` is always ``"forgotten"``: a target is in this list only once
        its request was applied, and stays forgotten for the rest of the run.
    durable_round : int
        The last round whose checkpoint and state are on disk (0: none yet).

    Notes
    -----
    Requests not applied yet (pending) are not here: they live in the strategy
    (``NoT.pending_requests``, in memory) and, on disk, in ``state.json``'s ``pending``
    list (and the same state inside ``checkpoint-latest.pt``), written by
    :func:`save_run_state` after every round; on resume :func:`restore_requests` queues
    them again. Request files of ``request-dir`` not yet settled stay in that folder
    (``accepted/`` once the round after them is durable, ``rejected/`` with a reason).
    """

    num_partitions: int | None = None
    reference_val_acc: float | None = None
    forget_ids: set[int] = field(default_factory=set)
    stopping: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    durable_round: int = 0

    def to_dict(self) -> dict:
        """The JSON form kept in ``state.json`` (``forget_ids`` sorted)."""
        return {
            "num_partitions": self.num_partitions,
            "reference_val_acc": self.reference_val_acc,
            "forget_ids": sorted(self.forget_ids),
            "stopping": self.stopping,
            "requests": self.requests,
            "durable_round": self.durable_round,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RunState:
        """Read back :meth:`to_dict`'s form."""
        return cls(
            num_partitions=data["num_partitions"],
            reference_val_acc=data["reference_val_acc"],
            forget_ids=set(data["forget_ids"]),
            stopping=data.get("stopping", []),
            requests=data.get("requests", []),
            durable_round=data.get("durable_round", 0),
        )

    def mark_applied(self, request: dict) -> None:
        """A request was applied at its boundary (``request``: the results' form)."""
        self.requests.append(
            {
                "round": request["round"],
                "by": request["request"]["rule"]["by"],
                "values": list(request["request"]["rule"]["values"]),
                "requested_by": request["request"]["requested_by"],
                "status": "applied",
                "kind": request["request"].get("kind", "client"),
                "targets": [
                    {
                        "node_id": t.get("node_id"),
                        "partition_id": (t.get("identity") or {}).get("partition-id"),
                        "status": "forgotten",
                    }
                    for t in request["targets"]
                ],
            }
        )

    def mark_durable(self, server_round: int, *, finished: bool = False) -> None:
        """Round ``server_round`` is on disk: requests before it are recovering (or done)."""
        self.durable_round = server_round
        for entry in self.requests:
            if finished:
                entry["status"] = "done"
            elif entry["round"] <= server_round and entry["status"] == "applied":
                entry["status"] = "recovering"

    def forgotten(self, by: str, value: str) -> dict | None:
        """The applied request that forgot the client ``by=value`` (``None``: none did).

        Whole-client requests only (class- and instance-wise requests leave the client in).
        """
        for entry in (e for e in self.requests if e.get("kind", "client") == "client"):
            for target in entry["targets"]:
                if (by == "partition-id" and str(target["partition_id"]) == str(value)) or (
                    by == "node-id" and str(target["node_id"]) == str(value)
                ):
                    return entry
        return None


@dataclass(frozen=True)
class SavedRun:
    """The ``state.json`` of an interrupted run, as read back.

    Parameters
    ----------
    round : int
        The last round it finished (the round ``checkpoint-latest.pt`` holds).
    applied : list[dict]
        Target rules of the requests applied so far (``by``, ``values``).
    forget_specs : dict
        The strategy's class-/instance-wise forget specs.
    pending : list[dict]
        Requests still queued (rule, who asked, server round, classes, samples).
    state : RunState
        The run's state at that round.
    results : dict
        The results so far (the ``results.json`` form, unfinished).
    """

    round: int  # noqa: A003 - the state.json field
    applied: list[dict]
    forget_specs: dict
    pending: list[dict]
    state: RunState
    results: dict


def load_initial_checkpoint(path: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Load ``init-checkpoint`` and check that it fits ``model`` (keys, shapes, dtypes).

    Parameters
    ----------
    path : str
        The checkpoint file (``~`` expanded).
    model : torch.nn.Module
        A model of the run's architecture.

    Returns
    -------
    dict[str, torch.Tensor]
        The state dict, in the model's key order.

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


def save_run_state(
    out_dir: Path,
    cfg: RunConfig,
    server_round: int,
    arrays: ArrayRecord,
    results: dict,
    state: RunState,
    strategy: NoT,
    offset: int,
    meta: dict,
) -> None:
    """Write ``checkpoint-latest.pt`` then ``state.json`` (both atomically) after a round.

    ``state.json`` names the round the checkpoint holds, the requests applied so far (their
    target rules stay in force on resume) and those still pending, and the results so far.
    A run killed at any point leaves a consistent pair: the state is written after the
    checkpoint it describes.

    Parameters
    ----------
    out_dir : Path
        The run's output folder.
    cfg : RunConfig
        The run configuration (kept without its control keys, to refuse a resume with
        another configuration).
    server_round : int
        The round just finished.
    arrays : ArrayRecord
        The global model after that round.
    results : dict
        The results so far.
    state : RunState
        The run's state.
    strategy : NoT
        The strategy (its applied rules, forget specs and pending requests).
    offset : int
        Rounds done by the run this one resumed (the strategy counts from 1 again).
    meta : dict
        Checkpoint metadata (model, data set, seed, method).
    """
    state.mark_durable(server_round)
    saved = {
        "version": 1,
        "round": server_round,
        "config": {k: v for k, v in to_run_config(cfg).items() if k not in CONTROL_KEYS},
        "applied": [{"by": r.by, "values": list(r.values)} for r in strategy.applied_rules],
        "forget_specs": strategy.forget_specs,
        "pending": [
            {
                "by": r.rule.by,
                "values": list(r.rule.values),
                "requested_by": r.requested_by,
                "at_round": None if r.at_round is None else offset + r.at_round,
                "requested_at": r.requested_at,
                "classes": list(r.classes),
                "samples": list(r.samples),
            }
            for r in strategy.pending_requests
        ],
        "state": state.to_dict(),
        "results": results,
    }
    # one atomic step: the checkpoint carries the state it belongs to; state.json, written
    # next, is its readable copy (a kill between the two leaves a newer checkpoint, whose
    # own state load_run_state then uses)
    save_checkpoint(
        out_dir / "checkpoint-latest.pt", arrays, {**meta, "round": server_round, "state": saved}
    )
    write_json(out_dir / "state.json", saved)


def save_finished_state(out_dir: Path, state: RunState) -> None:
    """At the end of a run: ``state.json`` with every request ``done`` (same round).

    Parameters
    ----------
    out_dir : Path
        The run's output folder.
    state : RunState
        The run's state, marked finished (:meth:`RunState.mark_durable`).
    """
    path = out_dir / "state.json"
    if path.is_file():
        write_json(path, {**json.loads(path.read_text()), "state": state.to_dict()})


def check_resume_target(out_dir: Path, cfg: RunConfig) -> None:
    """Before ``out_dir`` is locked (which creates it): ``resume`` needs an existing folder.

    Parameters
    ----------
    out_dir : Path
        The run's output folder.
    cfg : RunConfig
        This run's configuration (``resume``).

    Raises
    ------
    OutDirError
        ``resume = true`` and ``out_dir`` is not a folder (a mistyped out-dir): nothing is
        created.
    """
    if cfg.resume and not out_dir.is_dir():
        raise OutDirError(
            f"resume = true, but out-dir {out_dir} is not a folder: there is no run to "
            "resume; is the out-dir mistyped? Nothing was created or started. To start a "
            "new run there, set resume = false"
        )


def load_run_state(out_dir: Path, cfg: RunConfig) -> SavedRun | None:
    """The state an interrupted run left in ``out_dir`` (``None`` if there is none).

    Parameters
    ----------
    out_dir : Path
        The run's output folder.
    cfg : RunConfig
        This run's configuration.

    Returns
    -------
    SavedRun or None

    Raises
    ------
    OutDirError
        If ``out_dir`` holds no run to resume (a mistyped out-dir must not start afresh).
    RunFinishedError
        If the run there finished (``results.json``): nothing is changed.
    ValueError
        If the state was written by a run with a different configuration, or
        ``checkpoint-latest.pt`` and ``state.json`` do not belong together.
    """
    path = out_dir / "state.json"
    if not path.is_file() and not (out_dir / "checkpoint-latest.pt").is_file():
        raise OutDirError(
            f"resume = true, but out-dir {out_dir} holds no run to resume (no state.json, no "
            "checkpoint-latest.pt); is the out-dir mistyped? Nothing was started. To start a "
            "new run there, set resume = false"
        )
    if not path.is_file():
        saved = _checkpoint_state(out_dir, None)
    else:
        saved = _read_state(path)
        _saved_run(out_dir, cfg, saved)  # another configuration: refused first
        saved = _checkpoint_state(out_dir, saved)
    if saved["round"] >= cfg.total_rounds and (out_dir / "results.json").is_file():
        raise RunFinishedError(
            f"resume: the run in out-dir {out_dir} already finished all {cfg.total_rounds} "
            "rounds (results.json, checkpoint-final.pt); nothing was changed. Raise "
            "recovery.rounds to continue it, or choose another out-dir"
        )
    if _ended_by_rule(out_dir, saved["round"]):
        raise RunFinishedError(
            f"resume: the run in out-dir {out_dir} already finished: the stopping rule ended "
            f"it after round {saved['round']} (results.json, checkpoint-final.pt); nothing "
            "was changed. Choose another out-dir"
        )
    return _saved_run(out_dir, cfg, saved)


def _ended_by_rule(out_dir: Path, server_round: int) -> bool:
    """Whether ``results.json`` says the stopping rule ended the run after ``server_round``."""
    path = out_dir / "results.json"
    if not path.is_file():
        return False
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    stopping = results.get("stopping") or {}
    return bool(stopping.get("ended_run")) and stopping.get("chosen_round") == server_round


def _read_state(path: Path) -> dict:
    """``state.json``, or a clear error naming it."""
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # truncated or not JSON
        raise ValueError(
            f"resume: {path} is not a readable state file ({err}); the run's "
            "checkpoints are untouched: restore the file, or set overwrite = "
            "true to start afresh"
        ) from None
    return saved


def _saved_run(out_dir: Path, cfg: RunConfig, saved: dict) -> SavedRun:
    """Check the saved state against this run's config and read it back."""
    path = out_dir / "state.json"
    mine = {k: v for k, v in to_run_config(cfg).items() if k not in CONTROL_KEYS}
    stored = migrate_keys(saved["config"], RunConfig)  # saved before the keys were grouped
    differing = sorted(k for k in mine if stored.get(k) != mine[k])
    if differing:
        raise ValueError(
            f"resume: {path} was written by a run with a different configuration "
            f"(differs in {differing}); resume with the same run config or another out-dir"
        )
    return SavedRun(
        round=saved["round"],
        applied=saved["applied"],
        forget_specs=saved.get("forget_specs", {}),
        pending=saved["pending"],
        state=RunState.from_dict(saved["state"]),
        results=saved["results"],
    )


def _checkpoint_state(out_dir: Path, saved: dict | None) -> dict:
    """The state that belongs to ``checkpoint-latest.pt``, cross-checked with state.json.

    Parameters
    ----------
    out_dir : Path
        The run's output folder.
    saved : dict or None
        ``state.json`` (``None``: missing).

    Returns
    -------
    dict
        ``state.json``'s content when it describes the checkpoint's round; else the state
        the checkpoint carries (the run was stopped between writing the two files).

    Raises
    ------
    ValueError
        When neither describes the checkpoint's round.
    """
    ckpt = out_dir / "checkpoint-latest.pt"
    _, meta = load_checkpoint(ckpt)
    own = meta.get("state")
    if saved is not None and saved.get("round") == meta.get("round"):
        return saved
    if isinstance(own, dict) and own.get("round") == meta.get("round"):
        log(
            WARNING,
            "resume: %s holds round %s but state.json round %s (stopped between "
            "the two writes); resuming from the checkpoint's own state",
            ckpt,
            meta.get("round"),
            None if saved is None else saved.get("round"),
        )
        return own
    raise ValueError(
        f"resume: {ckpt} holds round {meta.get('round')} but {out_dir / 'state.json'} "
        f"describes round {None if saved is None else saved.get('round')}, and the "
        "checkpoint carries no state of its own; they do not belong together. Restore the "
        "pair, or set overwrite = true to start afresh"
    )


def restore_requests(strategy: NoT, saved: SavedRun) -> None:
    """Put an interrupted run's requests back into a new strategy.

    Requests applied before the interruption stay in force (their targets stay excluded;
    no second negation); requests still pending are queued again for their round,
    counted from the resumed round.

    Parameters
    ----------
    strategy : NoT
        The new run's strategy, before it starts.
    saved : SavedRun
        What the interrupted run left.
    """
    for rule in saved.applied:
        strategy.exclude(rule["values"], by=rule["by"])
    strategy.restore_forget_specs(saved.forget_specs)
    for req in saved.pending:
        request = strategy.request_unlearning(
            req["values"],
            by=req["by"],
            requested_by=req["requested_by"],
            at_round=None if req["at_round"] is None else max(1, req["at_round"] - saved.round),
            **({"classes": req["classes"]} if req.get("classes") else {}),
            **({"samples": req["samples"]} if req.get("samples") else {}),
        )
        if req.get("requested_at"):  # the same request: its record is the same
            request.requested_at = req["requested_at"]
