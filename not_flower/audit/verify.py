"""Verify a run folder against its audit log: ``python -m not_flower.audit verify RUN_DIR``.

:func:`verify_run_dir` checks, and reports with file names:

* the audit log's chain (:func:`not_flower.audit.log.verify_log`'s checks; the log is
  ``audit-log`` from the run's config, else ``RUN_DIR/unlearning-log.jsonl``);
* every record file (``unlearning-record*.json``): it must be, byte for byte in canonical
  form, a record the log holds (an edited record is caught), or, while recovery runs
  (status ``recovering``), the logged ``applied`` record with the rounds so far;
* the checkpoints: ``checkpoint-original.pt`` must hash to the first record's
  ``before_negation``, negating its ``keys_negated`` must give ``after_negation`` (NoT),
  and ``checkpoint-final.pt`` of a finished run must hash to the last record's
  ``after_recovery`` (a finished run whose record was never completed is reported).

Only the standard library is imported at module level; torch is imported to read the
checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

from not_flower.audit.log import _check_lines
from not_flower.audit.record import canonical_json


def run_log_path(run_dir: Path) -> Path:
    """The audit log of the run in ``run_dir`` (its ``audit-log``, else the default)."""
    for name in ("results.json", "state.json"):
        try:
            config = json.loads((run_dir / name).read_text()).get("config") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if config.get("audit-log"):
            return Path(str(config["audit-log"])).expanduser()
    return run_dir / "unlearning-log.jsonl"


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
    records = {}
    for path in sorted(run_dir.glob("unlearning-record*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            problems.append(f"{path.name}: not readable JSON ({err})")
            continue
        records[path.name] = record
        if canonical_json(record) not in stored and not _in_progress(record, logged):
            problems.append(
                f"{path.name}: not a record the audit log holds (edited, or never logged)"
            )
    checked = _check_checkpoints(run_dir, logged, problems)
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


def _latest_by_id(logged: list[dict]) -> list[dict]:
    """The log's records, the latest one per ``id`` (older records: each its own)."""
    latest: dict = {}
    for k, record in enumerate(logged):
        latest[record.get("id", f"#{k}")] = record
    return sorted(latest.values(), key=lambda r: r.get("applied_round", 0))


def _check_checkpoints(run_dir: Path, logged: list[dict], problems: list[str]) -> list[str]:
    """Compare the checkpoints' hashes with the logged records; returns the files checked."""
    # pylint: disable=import-outside-toplevel
    from not_flower.audit.record import sha256_arrays
    from not_flower.common.store import load_checkpoint

    records = [r for r in _latest_by_id(logged) if isinstance(r.get("model_sha256"), dict)]
    checked = []
    if not records:
        return checked
    first, last = records[0], records[-1]
    original = run_dir / "checkpoint-original.pt"
    if original.is_file():
        checked.append(original.name)
        state, _ = load_checkpoint(original)
        if sha256_arrays(state) != first["model_sha256"]["before_negation"]:
            problems.append(f"{original.name}: its hash differs from the record's before_negation")
        elif first.get("method") == "not" and first.get("keys_negated"):
            from strategies.negation_arrays import negate

            if (
                sha256_arrays(negate(state, first["keys_negated"]))
                != first["model_sha256"]["after_negation"]
            ):
                problems.append(
                    f"{original.name}: negating {first['keys_negated']} does not "
                    "give the record's after_negation hash"
                )
    final = run_dir / "checkpoint-final.pt"
    if (run_dir / "results.json").is_file() and final.is_file():
        checked.append(final.name)
        if last.get("status", "done") != "done":
            problems.append(
                f"results.json: the run finished but its record of round "
                f"{last.get('applied_round')} was never completed in the log"
            )
        else:
            state, _ = load_checkpoint(final)
            if sha256_arrays(state) != last["model_sha256"]["after_recovery"]:
                problems.append(f"{final.name}: its hash differs from the record's after_recovery")
    return checked


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
