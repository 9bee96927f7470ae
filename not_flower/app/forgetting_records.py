"""A run's records of forgetting: one per request boundary, each appended to the audit log.

A record is written twice, and appended to the hash-chained log of
:mod:`not_flower.audit.log` each time:

* when its request is applied (:func:`write_records` with ``final=None``; status
  ``"applied"``): who asked, the targets, the layers negated and the model's hashes before
  and after the negation. A run that stops after the negation and is never resumed still
  leaves this record;
* after every durable recovery round the file (not the log) gets the rounds so far
  (status ``"recovering"``, :func:`update_progress`);
* when the run finishes (status ``"done"``): completed with the recovery rounds (who
  trained, who was evaluated), the stopping decision, the final metrics and the hash of
  the final model.

Requests applied at the same boundary share one unlearning step (one negation), so they
share one record (the first request's ``request``, the others' in ``also_requested``).
Every record has an ``id`` (the boundary's round and the hash of the model before it): a
resumed run that applies the same request to the same model again writes the same record,
and a record already in the log with the same content (apart from ``written_at`` and
``run_id``: a resumed run has a new Flower run id) is not appended again. Every version of a
record keeps the run id of its first logged version (the run that applied the request). A
broken audit log stops the run (:class:`AuditLogError`): the record file is written first,
so nothing is lost.
"""

from __future__ import annotations

import json
import os
from logging import INFO
from pathlib import Path

from flwr.app import ArrayRecord
from flwr.serverapp import Grid
from flwr.supercore import log

from not_flower.audit.cli import (
    AuditLogError,
    append_to_log,
    build_record,
    canonical_json,
    read_log,
    sha256_arrays,
    verify_log,
    write_record,
)
from not_flower.audit.record import request_part
from not_flower.audit.verify import record_id
from not_flower.common.config import RunConfig
from not_flower.common.store import write_json
from not_flower.task.canary import ALPHA

#: Record statuses: logged when the request is applied and when the run finished; the
#: file is ``recovering`` in between (updated after every durable recovery round).
RECORD_STATUSES = ("applied", "recovering", "done")


def audit_log_path(cfg: RunConfig, out_dir: Path) -> Path:
    """The run's audit log: ``audit-log``, or ``<out-dir>/unlearning-log.jsonl``."""
    return Path(cfg.audit_log).expanduser() if cfg.audit_log else out_dir / "unlearning-log.jsonl"


def check_audit_log(path: Path, *, moved_away: bool = False) -> None:
    """Before round 1: the audit log can be written, and an existing one verifies.

    Parameters
    ----------
    path : Path
        The log (:func:`audit_log_path`). Its folder is created if missing.
    moved_away : bool
        The log is a previous run's file that ``overwrite`` moves aside: not checked.

    Raises
    ------
    ValueError
        Naming ``audit-log``, the path and why it cannot be written.
    AuditLogError
        The existing log fails its chain check (its problems listed).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"audit-log {str(path)!r}: its folder cannot be created ({err}); set "
            "audit-log to a file in a writable folder"
        ) from None
    writable = os.access(path, os.W_OK) if path.exists() else os.access(path.parent, os.W_OK)
    if path.is_dir() or not writable:
        raise ValueError(
            f"audit-log {str(path)!r} is not a writable file; set audit-log to "
            "a file in a writable folder"
        )
    if path.exists() and not moved_away:
        ok, problems = verify_log(path)
        if not ok:
            raise AuditLogError(
                f"audit log {str(path)!r} fails its chain check, no record "
                "can be appended: " + "; ".join(problems[:5])
            )


def write_records(
    out_dir: Path, cfg: RunConfig, results: dict, final: ArrayRecord | None, grid: Grid, run_id=None
) -> list[dict]:
    """Write the record of every request boundary and append it to the hash-chained log.

    One ``unlearning-record.json`` per boundary (``unlearning-record-<k>.json`` for the
    k-th of a sequence, the last one also as ``unlearning-record.json``), each appended to
    ``audit-log`` (default ``<out-dir>/unlearning-log.jsonl``) unless the log already
    holds it.

    Parameters
    ----------
    out_dir : Path
        The run's output folder.
    cfg : RunConfig
        The run configuration (method, ``audit-log``).
    results : dict
        The run's results so far (``results.json``'s form, without ``audit``).
    final : ArrayRecord or None
        The final global model (its hash closes the last record); ``None``: a request was
        just applied, the records are written with status ``"applied"``.
    grid : Grid
        Flower's grid (SuperNode names of the participants).
    run_id : int, optional
        Flower's run id.

    Returns
    -------
    list[dict]
        Per record, its file (``record``), the log (``log``) and the log's head hash
        after appending it (``head``).

    Raises
    ------
    AuditLogError
        The audit log does not verify (the record files are written).
    """
    groups = _boundaries(results["requests"])
    if not groups:
        return []
    try:
        names = {info.node_id: getattr(info, "name", "") for info in grid.get_nodes()}
    except Exception:  # noqa: BLE001 - names are informative only
        names = {}
    sha_after = None if final is None else sha256_arrays(final)
    log_path = audit_log_path(cfg, out_dir)
    written = []
    for k, group in enumerate(groups):
        end = groups[k + 1][0]["round"] if k + 1 < len(groups) else None
        record = _record(
            cfg,
            results,
            group,
            end,
            names,
            sha_after if end is None else None,
            run_id,
            done=final is not None,
        )
        entry = find_logged(log_path, record)  # written before a restart: kept as it is
        record = record if entry is None else entry["record"]
        record["run_id"] = first_run_id(log_path, record)  # the run that applied it
        path = (
            write_json(out_dir / f"unlearning-record-{k + 1}.json", record)
            if len(groups) > 1
            else write_record(out_dir, record)
        )
        if len(groups) > 1 and k + 1 == len(groups):
            write_record(out_dir, record)
        entry = entry or append_to_log(log_path, record)
        log(
            INFO,
            "record of forgetting (%s): %s (log %s, head %s)",
            record["status"],
            path,
            log_path,
            entry["hash"],
        )
        written.append({"record": str(path), "log": str(log_path), "head": entry["hash"]})
    return written


def update_progress(out_dir: Path, cfg: RunConfig, results: dict, grid: Grid | None) -> None:
    """After a durable recovery round: the latest record file, status ``"recovering"``.

    The file gets the recovery rounds so far (who trained, who was evaluated); the log
    keeps the ``applied`` version until the run finishes (``verify RUN_DIR`` accepts a
    ``recovering`` file that matches it in everything but its rounds).

    Parameters
    ----------
    out_dir : Path
        The run's output folder.
    cfg : RunConfig
        The run configuration.
    results : dict
        The run's results so far.
    grid : Grid or None
        Flower's grid (SuperNode names).
    """
    groups = _boundaries(results["requests"])
    if not groups:
        return
    try:
        names = {info.node_id: getattr(info, "name", "") for info in grid.get_nodes()}
    except Exception:  # noqa: BLE001 - names are informative only
        names = {}
    entry = find_logged(
        audit_log_path(cfg, out_dir),
        _record(cfg, results, groups[-1], None, names, None, None, done=False),
    )
    if entry is None:  # the applied record is not logged (yet): nothing to update
        return
    record = {
        **entry["record"],
        "status": "recovering",
        "recovery_rounds": _record(cfg, results, groups[-1], None, names, None, None, done=True)[
            "recovery_rounds"
        ],
    }
    if len(groups) > 1:
        write_json(out_dir / f"unlearning-record-{len(groups)}.json", record)
    write_record(out_dir, record)


def append_once(log_path: Path, record: dict) -> dict:
    """Append ``record`` unless :func:`find_logged` finds it; return its log entry."""
    return find_logged(log_path, record) or append_to_log(log_path, record)


def first_run_id(log_path: Path, record: dict) -> str | None:
    """The run id of the log's first entry with ``record``'s id (``record``'s own if none).

    A resumed run has a new Flower run id; every version of a record keeps the id of the
    run that applied its request.

    Parameters
    ----------
    log_path : Path
        The hash-chained log (already verified by :func:`find_logged`).
    record : dict
        A record with ``id`` and ``run_id``.

    Returns
    -------
    str or None
        The run id to keep.
    """
    if log_path.is_file():
        for entry in read_log(log_path):
            logged = entry["record"]
            if isinstance(logged, dict) and logged.get("id") == record["id"]:
                return logged.get("run_id")
    return record.get("run_id")


def find_logged(log_path: Path, record: dict) -> dict | None:
    """The log's latest entry with ``record``'s id, if it holds the same content.

    Parameters
    ----------
    log_path : Path
        The hash-chained log.
    record : dict
        A record with ``id`` (compared without ``written_at`` and ``run_id``: a resumed
        run, with a new Flower run id, finds the record the interrupted run logged).

    Returns
    -------
    dict or None
        The entry (``None``: the log does not hold this record yet).

    Raises
    ------
    AuditLogError
        The log fails its chain check.
    """

    loose = ("written_at", "run_id")

    def same(a: dict, b: dict) -> bool:
        return {k: v for k, v in a.items() if k not in loose} == {
            k: v for k, v in b.items() if k not in loose
        }

    if log_path.is_file():
        ok, problems = verify_log(log_path)
        if not ok:  # never "already logged" in a broken log
            raise AuditLogError(
                f"audit log {str(log_path)!r} is broken, not appending: " + "; ".join(problems[:5])
            )
        mine = [
            e
            for e in read_log(log_path)
            if isinstance(e["record"], dict) and e["record"].get("id") == record["id"]
        ]
        if mine and same(mine[-1]["record"], _as_stored(record)):
            return mine[-1]
    return None


def _as_stored(record: dict) -> dict:
    """The record as the log stores it (canonical JSON read back)."""
    return json.loads(canonical_json(record))


def _boundaries(requests: list[dict]) -> list[list[dict]]:
    """The applied requests grouped by the boundary (round) they were applied at."""
    groups: list[list[dict]] = []
    for request in requests:
        if groups and groups[-1][0]["round"] == request["round"]:
            groups[-1].append(request)
        else:
            groups.append([request])
    return groups


def _record(
    cfg: RunConfig,
    results: dict,
    group: list[dict],
    end: int | None,
    names: dict,
    sha_after: str | None,
    run_id,
    *,
    done: bool,
) -> dict:
    """The record of one boundary (its requests share one unlearning step)."""
    first = group[0]
    start = first["round"]
    rounds = [
        {
            "round": row["round"],
            "evaluated": row.get("evaluated", []),
            "participants": [
                {**p, "name": names.get(p["node_id"], "")}
                for p in row.get("participants_detail", [])
            ],
        }
        for row in results["rounds"]
        if row["round"] >= start and (end is None or row["round"] < end)
    ]
    targets = list({t.get("node_id"): t for r in group for t in r["targets"]}.values())
    record = build_record(
        request=first["request"],
        round=start,
        targets=targets,
        layers=first["layers"],
        keys=first["keys"],
        sha_before=first["sha256_before"],
        sha_negated=first["sha256_negated"],
        sha_after=sha_after,
        recovery_rounds=rounds if done else [],
        stopping=_request_stopping(results, results["requests"].index(first)) if done else {},
        final_metrics=results["models"].get(results.get("final"), {}) if done else {},
        method=cfg.method,
        run_id=None if run_id is None else str(run_id),
    )
    if len(group) > 1:
        record["also_requested"] = [request_part(r["request"]) for r in group[1:]]
    check = canary_check(first.get("models", {}).get("before", {}), record["final_metrics"])
    if check:
        record["canary_check"] = check
    record["id"] = record_id(start, first["sha256_before"])
    record["status"] = "done" if done else "applied"
    return record


def canary_check(before: dict, after: dict) -> dict:
    """The targets' canary test (:mod:`not_flower.task.canary`) before the request and at the end.

    Parameters
    ----------
    before, after : dict
        Metrics of the model just before the request and of the final model (empty when
        the run has not finished); the test is there when a target planted canaries.

    Returns
    -------
    dict
        ``alpha`` and, per model measured, ``auc``, ``p_value``, ``detected``
        (``p_value < alpha``: the model still carries the canaries) and ``n_in``; empty
        when no target planted canaries.
    """
    out: dict = {}
    for name, metrics in (("before_request", before), ("final", after)):
        if metrics and metrics.get("canary_p") is not None:
            out[name] = {
                "auc": metrics["canary_auc"],
                "p_value": metrics["canary_p"],
                "detected": bool(metrics["canary_p"] < ALPHA),
                "n_in": int(metrics["canary_n"]),
            }
    return {"alpha": ALPHA, **out} if out else {}


def _request_stopping(results: dict, k: int) -> dict:
    """The stopping decision of the k-th boundary (the run's, for older results)."""
    stopping = dict(results.get("stopping") or {})
    per_request = stopping.pop("per_request", None)
    if per_request and k < len(per_request):
        stopping.update(per_request[k])
    return stopping


__all__ = [
    "RECORD_STATUSES",
    "AuditLogError",
    "append_once",
    "audit_log_path",
    "canary_check",
    "check_audit_log",
    "find_logged",
    "first_run_id",
    "record_id",
    "update_progress",
    "write_records",
]
