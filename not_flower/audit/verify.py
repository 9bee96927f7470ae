"""Verify a run folder against its audit log: ``python -m not_flower.audit verify RUN_DIR``.

:func:`verify_run_dir` checks, and reports with file names:

* the audit log's chain (:func:`not_flower.audit.log.verify_log`'s checks; the log is
  ``audit-log`` from the run's config, else ``RUN_DIR/unlearning-log.jsonl``);
* every record file (``unlearning-record*.json``): it must be, byte for byte in canonical
  form, a record the log holds (an edited record is caught), or, while recovery runs
  (status ``recovering``), the logged ``applied`` record with the rounds so far;
* the run's records are all there, each as its latest logged version: the run's records
  are those of the requests in ``results.json`` (or ``state.json``) and, with the default
  log, every record of the log; the k-th of n is ``unlearning-record-<k>.json`` (n > 1)
  and the last one also ``unlearning-record.json``. A missing file, or one older than the
  log's latest version of its record (the ``applied`` version of a ``done`` record), is
  reported, as is a request in ``results.json`` whose record the log lacks;
* the checkpoints: ``checkpoint-original.pt`` (required once the log holds a record of
  the run) must hash to the first record's ``before_negation``, negating its
  ``keys_negated`` must give ``after_negation`` (NoT), and ``checkpoint-final.pt``
  (required once ``results.json`` is there) must hash to the last record's
  ``after_recovery`` (a finished run whose record was never completed is reported).

Only the standard library is imported at module level; torch is imported to read the
checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from not_flower.audit.log import _check_lines
from not_flower.audit.record import canonical_json
from not_flower.common.methods import REGISTRY

#: The default log's name in a run folder (a run with ``audit-log`` may share its log).
DEFAULT_LOG = "unlearning-log.jsonl"


def _negates(method) -> bool:
    """Whether a record's method negates layers (its after-negation hash can be recomputed)."""
    spec = REGISTRY.get(method) if isinstance(method, str) else None
    return spec is not None and spec.negates


def record_id(applied_round: int, sha_before: str) -> str:
    """A record's ``id``: the same request applied to the same model gives the same id."""
    return hashlib.sha256(f"{applied_round}|{sha_before}".encode()).hexdigest()[:16]


def run_log_path(run_dir: Path) -> Path:
    """The audit log of the run in ``run_dir`` (its ``audit-log``, else the default)."""
    for name in ("results.json", "state.json"):
        try:
            config = json.loads((run_dir / name).read_text()).get("config") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if config.get("audit-log"):
            return Path(str(config["audit-log"])).expanduser()
    return run_dir / DEFAULT_LOG


def verify_run_dir(run_dir: Path, expect_head: str | None = None) -> tuple[list[str], dict]:
    """Check the log chain, every record file and the checkpoints of a run folder.

    Parameters
    ----------
    run_dir : Path
        The run's out-dir.
    expect_head : str, optional
        The log's head hash kept elsewhere.

    Returns
    -------
    tuple[list[str], dict]
        The problems (empty: all verified) and what was checked (``log``, ``entries``,
        ``head``, ``records``, ``checkpoints``).
    """
    log_path = run_log_path(run_dir)
    if not log_path.is_file():
        return [f"{log_path}: no audit log"], {"log": str(log_path)}
    problems, entries, head = _check_lines(log_path.read_bytes(), expect_head)
    problems = [f"{log_path.name}: {p}" for p in problems]
    logged = [e["record"] for e in entries if isinstance(e.get("record"), dict)]
    stored = {canonical_json(r) for r in logged}
    records, unlogged = {}, set()
    for path in sorted(run_dir.glob("unlearning-record*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            problems.append(f"{path.name}: not readable JSON ({err})")
            unlogged.add(path.name)
            continue
        records[path.name] = record
        if canonical_json(record) not in stored and not _in_progress(record, logged):
            problems.append(
                f"{path.name}: not a record the audit log holds (edited, or never logged)"
            )
            unlogged.add(path.name)
    latest = _latest_by_id(logged)
    own_log = log_path.resolve() == (run_dir / DEFAULT_LOG).resolve()
    mine = _run_records(run_dir, latest, own_log=own_log, problems=problems)
    _check_record_files(mine, records, unlogged, problems)
    checked = _check_checkpoints(run_dir, mine, problems)
    return problems, {
        "log": str(log_path),
        "entries": len(entries),
        "head": head,
        "records": sorted(records),
        "checkpoints": checked,
    }


def _in_progress(record: dict, logged: list[dict]) -> bool:
    """A ``recovering`` record file: the logged ``applied`` record with rounds added."""
    if not isinstance(record, dict) or record.get("status") != "recovering":
        return False
    loose = ("status", "recovery_rounds", "written_at")
    mine = {k: v for k, v in record.items() if k not in loose}
    return any(
        r.get("id") == record.get("id")
        and r.get("status") == "applied"
        and {k: v for k, v in r.items() if k not in loose} == mine
        for r in logged
    )


def _latest_by_id(logged: list[dict]) -> dict:
    """The log's latest record per ``id`` (a record without one is its own)."""
    latest: dict = {}
    for k, record in enumerate(logged):
        rid = record.get("id")
        latest[rid if isinstance(rid, str) else f"#{k}"] = record
    return latest


def _requests(run_dir: Path) -> tuple[str, list[dict]]:
    """The applied requests of ``results.json`` (else ``state.json``'s results so far)."""
    for name, part in (("results.json", None), ("state.json", "results")):
        try:
            data = json.loads((run_dir / name).read_text())
            data = data if part is None else data[part]
            return name, [r for r in data.get("requests") or [] if isinstance(r, dict)]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return "", []


def _run_records(run_dir: Path, latest: dict, *, own_log: bool, problems: list[str]) -> list:
    """The latest logged version of each of the run's records, in round order.

    The run's records: those of the requests its ``results.json`` (or ``state.json``)
    lists and, when the log is the run's own (``unlearning-log.jsonl``), all the log's.
    A listed request whose record the log lacks is reported.
    """
    ids = set(latest) if own_log else set()
    source, requests = _requests(run_dir)
    for request in requests:
        if not isinstance(request.get("sha256_before"), str):
            continue
        rid = record_id(request.get("round"), request["sha256_before"])
        if rid not in latest:
            problems.append(
                f"{source}: the request applied at round {request.get('round')} has no "
                f"record (id {rid}) in the audit log"
            )
        ids.add(rid)
    mine = [latest[i] for i in ids if i in latest]

    def order(record: dict) -> tuple[int, str]:
        applied = record.get("applied_round")
        return (applied if isinstance(applied, int) else 0, str(record.get("id")))

    return sorted(mine, key=order)


def record_file_names(count: int) -> list[list[str]]:
    """Per record of a run with ``count`` records, the files that must hold it."""
    if count == 1:
        return [["unlearning-record.json"]]
    names = [[f"unlearning-record-{k + 1}.json"] for k in range(count)]
    if names:
        names[-1].append("unlearning-record.json")
    return names


def _check_record_files(
    mine: list[dict], records: dict, unlogged: set, problems: list[str]
) -> None:
    """Each of the run's records is in its file(s), as the log's latest version of it."""
    for record, names in zip(mine, record_file_names(len(mine)), strict=True):
        for name in names:
            if name in unlogged:  # already reported
                continue
            what = (
                f"record {record.get('id')} of round {record.get('applied_round')} "
                f"(latest logged status {record.get('status')!r})"
            )
            if name not in records:
                problems.append(f"{name}: missing; the audit log holds {what}")
                continue
            found = records[name]
            latest = canonical_json(found) == canonical_json(record)
            if not latest and not (
                record.get("status") == "applied" and _in_progress(found, [record])
            ):
                problems.append(
                    f"{name}: not the latest version of {what}; the file holds "
                    f"record {found.get('id')} with status {found.get('status')!r}"
                )


def _check_checkpoints(run_dir: Path, mine: list[dict], problems: list[str]) -> list[str]:
    """Compare the checkpoints' hashes with the run's records; returns the files checked."""
    # pylint: disable=import-outside-toplevel
    from not_flower.audit.record import sha256_arrays
    from not_flower.common.store import load_checkpoint

    records = [r for r in mine if isinstance(r.get("model_sha256"), dict)]
    checked = []
    if not records:
        return checked
    first, last = records[0], records[-1]
    original = run_dir / "checkpoint-original.pt"
    if not original.is_file():
        problems.append(
            f"{original.name}: missing; the audit log holds the record of round "
            f"{first.get('applied_round')} (its before_negation model)"
        )
    else:
        checked.append(original.name)
        state, _ = load_checkpoint(original)
        if sha256_arrays(state) != first["model_sha256"]["before_negation"]:
            problems.append(f"{original.name}: its hash differs from the record's before_negation")
        elif _negates(first.get("method")) and first.get("keys_negated"):
            from strategies.negation_arrays import negate

            if (
                sha256_arrays(negate(state, first["keys_negated"]))
                != first["model_sha256"]["after_negation"]
            ):
                problems.append(
                    f"{original.name}: negating {first['keys_negated']} does not "
                    "give the record's after_negation hash"
                )
    if (run_dir / "results.json").is_file():
        _check_final(run_dir / "checkpoint-final.pt", last, problems, checked)
    return checked


def _check_final(final: Path, last: dict, problems: list[str], checked: list[str]) -> None:
    """A finished run: its last record is ``done`` and hashes ``checkpoint-final.pt``."""
    # pylint: disable=import-outside-toplevel
    from not_flower.audit.record import sha256_arrays
    from not_flower.common.store import load_checkpoint

    if last.get("status", "done") != "done":
        problems.append(
            f"results.json: the run finished but its record of round "
            f"{last.get('applied_round')} was never completed in the log"
        )
    if not final.is_file():
        problems.append(
            f"{final.name}: missing; results.json says the run finished (its record's "
            "after_recovery model)"
        )
        return
    checked.append(final.name)
    if last.get("status", "done") == "done":
        state, _ = load_checkpoint(final)
        if sha256_arrays(state) != last["model_sha256"]["after_recovery"]:
            problems.append(f"{final.name}: its hash differs from the record's after_recovery")


def main_run_dir(run_dir: Path, expect_head: str | None = None) -> int:
    """The command line's ``verify RUN_DIR``: print the verdict; 0 verified, 1 not."""
    problems, checked = verify_run_dir(run_dir, expect_head)
    if problems:
        print(f"FAILED: {run_dir}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(
        f"OK: {run_dir}: log {checked['log']} ({checked['entries']} entries, head "
        f"{checked['head']}); records {', '.join(checked['records']) or '-'}; checkpoints "
        f"{', '.join(checked['checkpoints']) or '-'}"
    )
    return 0
