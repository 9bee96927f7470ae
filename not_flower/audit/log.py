"""The hash-chained audit log of unlearning records: append, read and verify.

One canonical-JSON line per record, ``{"hash", "index", "prev_hash", "record"}``, each
line's ``hash`` covering its index, the previous line's hash and the record; the format
and what the chain can and cannot show are described in :mod:`not_flower.audit.cli`.
:func:`append_to_log` refuses to append to a log that does not verify.

Only the standard library is imported.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from not_flower.audit.record import _is_sha256, canonical_json
from not_flower.common.faults import durable_write

__all__ = [
    "GENESIS_HASH",
    "LOG_ENTRY_KEYS",
    "AuditLogError",
    "append_to_log",
    "entry_hash",
    "read_log",
    "verify_log",
]

#: ``prev_hash`` of the first log entry.
GENESIS_HASH = "0" * 64
#: Keys of one log line.
LOG_ENTRY_KEYS = frozenset({"index", "prev_hash", "record", "hash"})


class AuditLogError(ValueError):
    """The audit log is broken; appending to it would hide the break."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------- log


def entry_hash(index: int, prev_hash: str, record: Any) -> str:
    """Hash of one log entry: ``sha256(canonical_json({index, prev_hash, record}))``.

    Parameters
    ----------
    index : int
        Position in the log, from 0.
    prev_hash : str
        Previous entry's hash (:data:`GENESIS_HASH` for the first).
    record : Any
        The record.

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    return hashlib.sha256(
        canonical_json({"index": index, "prev_hash": prev_hash, "record": record})
    ).hexdigest()


def _check_lines(data: bytes, expect_head: str | None = None) -> tuple[list[str], list[dict], str]:
    """Check raw log bytes; return (problems, entries that parsed, head hash)."""
    problems: list[str] = []
    entries: list[dict] = []
    if not data:
        lines: list[bytes] = []
    else:
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        else:
            problems.append(
                f"line {len(lines)}: not terminated by a newline (a truncated or interrupted write)"
            )
    prev_hash = GENESIS_HASH
    expected_index = 0
    head = GENESIS_HASH
    for number, raw in enumerate(lines, start=1):
        where = f"line {number}"
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            problems.append(
                f"{where}: not a valid JSON entry ({err}); the entry was truncated or edited"
            )
            prev_hash = None  # unknown: the next link cannot be checked
            expected_index = None
            continue
        if not isinstance(entry, dict) or set(entry) != LOG_ENTRY_KEYS:
            got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            problems.append(
                f"{where}: expected an object with keys {sorted(LOG_ENTRY_KEYS)}, got {got}"
            )
            stored = entry.get("hash") if isinstance(entry, dict) else None
            prev_hash = stored if _is_sha256(stored) else None
            expected_index = None
            continue
        entries.append(entry)
        index, stored_prev, stored = entry["index"], entry["prev_hash"], entry["hash"]
        if isinstance(index, bool) or not isinstance(index, int):
            problems.append(f"{where}: index must be an integer, got {index!r}")
        elif expected_index is not None and index != expected_index:
            problems.append(
                f"{where}: index {index}, expected {expected_index} (an entry "
                "was removed, inserted or moved)"
            )
        if not _is_sha256(stored_prev):
            problems.append(f"{where}: prev_hash {stored_prev!r} is not a SHA-256 hex digest")
        elif prev_hash is not None and stored_prev != prev_hash:
            what = (
                "the first entry's prev_hash must be " + GENESIS_HASH[:12] + "..."
                if number == 1
                else f"it does not match the hash of line {number - 1}"
            )
            problems.append(
                f"{where}: prev_hash {stored_prev[:12]}... is wrong: {what} "
                "(an entry was removed, inserted or moved)"
            )
        try:
            computed = entry_hash(index, stored_prev, entry["record"])
            canonical = canonical_json(entry) == raw
        except (TypeError, ValueError, RecursionError) as err:
            problems.append(f"{where}: the entry cannot be hashed ({err})")
            computed, canonical = None, True
        if computed is not None and stored != computed:
            problems.append(
                f"{where}: hash mismatch, entry {index!r} was edited (stored "
                f"{str(stored)[:12]}..., content hashes to {computed[:12]}...)"
            )
        elif not canonical:  # same values, other bytes (1E-05 for 1e-05, spaces, ...)
            problems.append(f"{where}: not in canonical JSON form; the line's bytes were edited")
        prev_hash = stored if _is_sha256(stored) else None
        expected_index = (
            index + 1 if isinstance(index, int) and not isinstance(index, bool) else None
        )
        head = stored if isinstance(stored, str) else head
    if expect_head is not None:
        expect_head = expect_head.strip().lower()
        if not lines:
            problems.append(f"the log is empty but its head was expected to be {expect_head}")
        elif head != expect_head:
            problems.append(
                f"head hash {head} differs from the expected {expect_head}: "
                "entries were removed from the end or the log was rewritten"
            )
    return problems, entries, head


def read_log(log_path: str | os.PathLike) -> list[dict]:
    """Parse the log's entries (no checking; see :func:`verify_log`).

    Parameters
    ----------
    log_path : str or PathLike
        The JSON-lines log.

    Returns
    -------
    list of dict
        Entries that are valid JSON objects with the expected keys, in file order.

    Raises
    ------
    FileNotFoundError
        The log does not exist.
    """
    return _check_lines(Path(log_path).read_bytes())[1]


def verify_log(
    log_path: str | os.PathLike, *, expect_head: str | None = None
) -> tuple[bool, list[str]]:
    """Check every hash and link of the log.

    Parameters
    ----------
    log_path : str or PathLike
        The JSON-lines log.
    expect_head : str, optional
        The head hash kept elsewhere; if given, the last entry's hash must equal it (this
        detects a truncated tail or a rewritten chain, which the chain alone cannot).

    Returns
    -------
    tuple of (bool, list of str)
        ``(ok, problems)``; each problem names its line and what is wrong: invalid JSON
        (a truncated line), missing or extra keys, an index out of sequence, a
        ``prev_hash`` that does not match the previous line's ``hash`` (an entry removed,
        inserted or moved), a ``hash`` that does not match the content (an edit), a
        different head.

    Raises
    ------
    FileNotFoundError
        The log does not exist.
    """
    problems, _, _ = _check_lines(Path(log_path).read_bytes(), expect_head)
    return not problems, problems


def append_to_log(log_path: str | os.PathLike, record: dict) -> dict:
    """Append ``record`` to the hash-chained log and return the new entry.

    The log is opened for appending and locked (``fcntl.flock``, exclusive) while the
    existing entries are checked, the entry is written as one line and fsynced (and the
    folder too when the log is new), so concurrent writers do not interleave.

    Parameters
    ----------
    log_path : str or PathLike
        The JSON-lines log (created with its folder if missing).
    record : dict
        The record (from :func:`build_record`).

    Returns
    -------
    dict
        ``{"index", "prev_hash", "record", "hash"}``; ``hash`` is the new head.

    Raises
    ------
    AuditLogError
        The existing log does not verify; nothing is appended (appending would bury the
        break). The message lists the problems.
    ValueError, TypeError
        The record is not canonical-JSON-able (NaN, infinity, objects); nothing is
        written.
    """
    path = Path(log_path)
    body = canonical_json(record)  # fail before touching the file
    record = json.loads(body)  # what will be stored, exactly
    durable_write(path, "before")
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.seek(0)
            problems, entries, head = _check_lines(fh.read())
            if problems:
                raise AuditLogError(
                    f"audit log {str(path)!r} is broken, not appending: " + "; ".join(problems)
                )
            index = len(entries)
            entry = {
                "index": index,
                "prev_hash": head,
                "record": record,
                "hash": entry_hash(index, head, record),
            }
            fh.seek(0, os.SEEK_END)
            fh.write(canonical_json(entry) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    if created:
        _fsync_dir(path.parent)
    durable_write(path, "after")
    return entry
