"""A run's records of forgetting: one per unlearning request, each appended to the audit log.

:func:`write_records` turns what a run wrote to ``results.json`` (its requests, rounds,
stopping decisions and final model) into the records of :mod:`not_flower.audit_record`,
writes them next to the results and appends each to the hash-chained log of
:mod:`not_flower.audit_log`.
"""

from __future__ import annotations

from logging import INFO, WARNING
from pathlib import Path

from flwr.app import ArrayRecord
from flwr.serverapp import Grid
from flwr.supercore import log

from .audit import AuditLogError, append_to_log, build_record, sha256_arrays, write_record
from .config import RunConfig
from .store import write_json


def write_records(out_dir: Path, cfg: RunConfig, results: dict, final: ArrayRecord,
                  grid: Grid, run_id=None) -> list[dict]:
    """Write the record of every unlearning and append it to the hash-chained log.

    One ``unlearning-record.json`` per request (``unlearning-record-<k>.json`` for the
    k-th of a sequence, the last one also as ``unlearning-record.json``), each appended to
    ``audit-log`` (default ``<out-dir>/unlearning-log.jsonl``).

    Parameters
    ----------
    out_dir : Path
        The run's output folder.
    cfg : RunConfig
        The run configuration (method, ``audit-log``).
    results : dict
        The run's results (``results.json``'s form, without ``audit``).
    final : ArrayRecord
        The final global model (its hash closes the last record).
    grid : Grid
        Flower's grid (SuperNode names of the participants).
    run_id : int, optional
        Flower's run id.

    Returns
    -------
    list[dict]
        Per record, its file (``record``), the log (``log``) and the log's head hash
        after appending it (``head``; ``None`` when the log is broken).
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

