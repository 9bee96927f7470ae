"""The record of forgetting: ``unlearning-record.json`` and a hash-chained audit log.

Every unlearning produces one *record* (:func:`build_record`): who asked and when, which
clients were forgotten and how they were identified, which layers were negated, the
SHA-256 of the global model before negation, after negation and after recovery, who took
part in every recovery round, why recovery stopped, and the final metrics. The record is
written to ``<out-dir>/unlearning-record.json`` (:func:`write_record`, atomic) and
appended to a hash-chained JSON-lines log (:func:`append_to_log`).

Model hash (:func:`sha256_arrays`)
    One SHA-256 over the whole model, the same for a flwr ``ArrayRecord``, a torch
    ``state_dict`` and a ``dict`` of numpy arrays holding the same tensors. See the
    function's docstring for the exact byte layout, so that an auditor can recompute it
    from a checkpoint with any tool.

Canonical JSON (:func:`canonical_json`)
    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)`` encoded as UTF-8: keys sorted, no whitespace, non-ASCII characters
    kept as UTF-8, NaN and infinities refused (``ValueError``). Floats are written as
    Python's ``repr`` (shortest round-trip form).

Log format
    One JSON object per line (canonical JSON, ``\\n``-terminated)::

        {"hash": H, "index": i, "prev_hash": P, "record": R}

    ``index`` counts from 0; ``prev_hash`` is the previous line's ``hash`` (``"0" * 64``
    for the first line); ``hash = sha256(canonical_json({"index": i, "prev_hash": P,
    "record": R})).hexdigest()``. Editing an entry changes its hash; removing, inserting
    or reordering entries breaks an ``index`` or ``prev_hash`` link; a half-written last
    line is not valid JSON; every line must also be byte-for-byte the canonical JSON of
    its entry, so any changed byte is caught (even one that leaves the values equal, such
    as ``1E-05`` for ``1e-05``). :func:`verify_log` reports each of these with its line
    number.

What the chain cannot show on its own
    Whoever can write the log can also *truncate its tail* (drop the last entries) or
    *rewrite the whole chain* with freshly computed hashes: the result is a valid chain.
    Both are detected only against a copy of the **head hash** (the ``hash`` of the last
    entry, printed by ``verify``) kept somewhere the writer cannot change: send it to the
    auditor, or to the requester, after each unlearning, and check with
    ``python -m not_flower.audit verify LOG --expect-head HASH``.

Command line::

    python -m not_flower.audit verify LOG [--expect-head HASH]   # exit 0 ok, 1 broken, 2 no file
    python -m not_flower.audit show LOG                          # one line per entry

Only the standard library is imported at module level (numpy, torch and flwr are used
by :func:`sha256_arrays` only when given such objects, and by :func:`write_record`, which
writes through :func:`not_flower.store.atomic_write_bytes`), so the command runs anywhere.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "LOG_ENTRY_KEYS",
    "RECORD_FILE",
    "RECORD_VERSION",
    "AuditLogError",
    "append_to_log",
    "build_record",
    "canonical_json",
    "entry_hash",
    "main",
    "read_log",
    "sha256_arrays",
    "verify_log",
    "write_record",
]

#: Version of the record layout written by :func:`build_record`.
RECORD_VERSION = 1
#: File name of the record in the run's output folder.
RECORD_FILE = "unlearning-record.json"
#: ``prev_hash`` of the first log entry.
GENESIS_HASH = "0" * 64
#: Keys of one log line.
LOG_ENTRY_KEYS = frozenset({"index", "prev_hash", "record", "hash"})
_HEX = frozenset("0123456789abcdef")


class AuditLogError(ValueError):
    """The audit log is broken; appending to it would hide the break."""


# --------------------------------------------------------------------------- hashing


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as canonical JSON (the bytes that log hashes are taken over).

    Parameters
    ----------
    obj : Any
        JSON-serialisable value (dicts with string keys, lists, str, int, float, bool,
        None).

    Returns
    -------
    bytes
        ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False)`` encoded as UTF-8.

    Raises
    ------
    ValueError
        ``obj`` holds a NaN or an infinity (JSON has no such numbers).
    TypeError
        ``obj`` holds a value JSON cannot represent.
    """
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except ValueError as err:
        raise ValueError(f"cannot write canonical JSON: {err} (NaN and infinity have no "
                         "JSON form; replace them with null)") from None
    return text.encode("utf-8")


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _as_numpy(key: str, value: Any):
    """Return ``value`` as a numpy array plus the dtype name to hash (bfloat16 kept)."""
    import numpy as np

    module = type(value).__module__
    if isinstance(value, np.ndarray):
        return value, value.dtype.name
    if module.startswith("torch"):
        tensor = value.detach().cpu()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        name = str(tensor.dtype).removeprefix("torch.")
        if name == "bfloat16":  # numpy has no bfloat16: hash its raw 16-bit words
            import torch

            return tensor.view(torch.int16).numpy(), name
        return tensor.numpy(), np.dtype(tensor.numpy().dtype).name
    if hasattr(value, "numpy") and callable(value.numpy):  # flwr Array
        array = value.numpy()
        return array, array.dtype.name
    raise TypeError(f"cannot hash entry {key!r}: a {type(value).__name__}; expected a "
                    "torch.Tensor, a numpy.ndarray or a flwr Array")


def sha256_arrays(arrays: Any) -> str:
    """SHA-256 of a model, the same whether it is an ArrayRecord, a state dict or numpy.

    Parameters
    ----------
    arrays : ArrayRecord or Mapping of str to Tensor or Mapping of str to ndarray
        The model's tensors by name.

    Returns
    -------
    str
        64 lowercase hex digits.

    Notes
    -----
    The hash is ``hashlib.sha256`` fed, for each key in ``sorted()`` order of the keys
    (Unicode code points, which is also the byte order of their UTF-8 forms), with::

        key.encode("utf-8") + b"\\0"
        + dtype.encode("ascii") + b"\\0"
        + shape.encode("ascii") + b"\\0"
        + data

    where ``dtype`` is the numpy dtype name (``"float32"``, ``"int64"``, ``"bool"``;
    ``"bfloat16"`` for torch's bfloat16, hashed as its raw 16-bit words), ``shape`` is
    the shape as a JSON list without spaces (``"[64,1,3,3]"``, ``"[]"`` for a scalar)
    and ``data`` is the array's raw bytes in C (row-major) order, little-endian
    (``numpy.asarray(a, order="C").astype(a.dtype.newbyteorder("<")).tobytes()``).
    A torch tensor is taken as ``t.detach().cpu().contiguous()``. Nothing else goes in:
    no separator between entries, no count, no Flower metadata, so a checkpoint written
    by ``torch.save`` and the same weights in an ``ArrayRecord`` hash the same.

    Raises
    ------
    TypeError
        ``arrays`` is not a mapping of tensors/arrays, or a key is not a string.
    """
    import numpy as np

    if not hasattr(arrays, "items") or not hasattr(arrays, "keys"):
        raise TypeError(f"cannot hash a {type(arrays).__name__}: expected an ArrayRecord or "
                        "a dict of torch tensors or numpy arrays")
    for key in arrays.keys():
        if not isinstance(key, str):
            raise TypeError(f"cannot hash key {key!r}: model keys must be strings")
    digest = hashlib.sha256()
    for key in sorted(arrays.keys()):
        array, dtype_name = _as_numpy(key, arrays[key])
        array = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
            array = array.astype(array.dtype.newbyteorder("<"))
        shape = json.dumps([int(n) for n in array.shape], separators=(",", ":"))
        digest.update(key.encode("utf-8") + b"\0")
        digest.update(dtype_name.encode("ascii") + b"\0")
        digest.update(shape.encode("ascii") + b"\0")
        digest.update(array.tobytes(order="C"))
    return digest.hexdigest()


# ---------------------------------------------------------------------------- record


def _text(value: Any) -> str:
    """``str(value)`` that UTF-8 can encode (a lone surrogate from a request file is escaped)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, tuples to lists, NaN/inf to None."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _request_part(request: dict) -> dict:
    """Who asked, when, for whom, identified how; accepts a plain dict or an event's request."""
    if not isinstance(request, dict):
        raise TypeError(f"request must be a dict, got {type(request).__name__}")
    rule = request.get("rule") if isinstance(request.get("rule"), dict) else {}
    targets = request.get("targets", rule.get("values", []))
    if isinstance(targets, (str, int)):
        targets = [targets]
    out = {
        "requested_by": str(request.get("requested_by", "operator")),
        "requested_at": request.get("requested_at"),
        "targets": [str(t) for t in targets],
        "by": str(request.get("by", rule.get("by", "partition-id"))),
    }
    if request.get("reason"):
        out["reason"] = str(request["reason"])
    return out


def _target_part(target: dict) -> dict:
    return {
        "node_id": target.get("node_id"),
        "name": target.get("name", ""),
        "by": target.get("by"),
        "value": None if target.get("value") is None else str(target["value"]),
        "identity": _plain(target.get("identity")),
    }


def _participant(p: Any) -> dict:
    if isinstance(p, dict):
        return {"node_id": p.get("node_id"), "name": p.get("name", ""),
                "partition_id": p.get("partition_id", p.get("partition-id"))}
    return {"node_id": p, "name": "", "partition_id": None}  # a bare node id


def build_record(*, request: dict, round: int, targets: list[dict], layers: list[str],  # noqa: A002
                 keys: list[str], sha_before: str, sha_negated: str, sha_after: str | None,
                 recovery_rounds: list[dict], stopping: dict, final_metrics: dict,
                 method: str, run_id: str | None = None,
                 written_at: str | None = None) -> dict:
    """Assemble the unlearning record (the content of ``unlearning-record.json``).

    Parameters
    ----------
    request : dict
        The request: ``requested_by``, ``requested_at``, ``targets`` and ``by`` (a dict
        from ``UnlearningEvent.to_dict()["request"]``, with ``rule: {by, values}``, is
        accepted as it is); an optional ``reason`` is kept.
    round : int
        Round at whose boundary the request was applied.
    targets : list of dict
        The nodes forgotten: ``node_id``, ``name``, ``by``, ``value``, ``identity``
        (``UnlearningEvent.targets``).
    layers, keys : list of str
        Layers and ``state_dict`` keys negated (empty for FT/retrain).
    sha_before, sha_negated : str
        :func:`sha256_arrays` of the global model just before and just after negation.
    sha_after : str or None
        :func:`sha256_arrays` of the model after recovery (``None`` if recovery did not
        finish).
    recovery_rounds : list of dict
        ``{"round": r, "participants": [{"node_id", "name", "partition_id"}, ...]}``
        per recovery round (a bare node id is accepted as a participant).
    stopping : dict
        Why recovery stopped (rule, round, values compared).
    final_metrics : dict
        Metrics of the final model.
    method : str
        ``"not"``, ``"ft"`` or ``"retrain"``.
    run_id : str, optional
        Flower run id.
    written_at : str, optional
        ISO time; default: now (UTC).

    Returns
    -------
    dict
        ``version``, ``method``, ``run_id``, ``request``, ``applied_round``, ``targets``,
        ``layers_negated``, ``keys_negated``, ``model_sha256`` (``before_negation``,
        ``after_negation``, ``after_recovery``), ``recovery_rounds``, ``stopping``,
        ``final_metrics``, ``written_at``. Numpy scalars become Python numbers, tuples
        lists, non-finite floats ``null`` and lone surrogates in strings (possible in a
        request file) backslash escapes, so the record is always valid UTF-8 JSON.

    Raises
    ------
    ValueError
        A hash that is not 64 lowercase hex digits, or a negative round.
    """
    for name, value in (("sha_before", sha_before), ("sha_negated", sha_negated),
                        ("sha_after", sha_after)):
        if not _is_sha256(value) and not (name == "sha_after" and value is None):
            raise ValueError(f"{name} must be a SHA-256 hex digest (64 lowercase hex "
                             f"digits, from sha256_arrays), got {value!r}")
    if isinstance(round, bool) or not isinstance(round, int) or round < 0:
        raise ValueError(f"round must be a non-negative integer, got {round!r}")
    rounds = []
    for entry in recovery_rounds:
        rounds.append({"round": int(entry["round"]),
                       "participants": [_participant(p) for p in entry.get("participants", [])]})
    return {
        "version": RECORD_VERSION,
        "method": _text(method),
        "run_id": None if run_id is None else _text(run_id),
        "request": _plain(_request_part(request)),
        "applied_round": round,
        "targets": [_plain(_target_part(t)) for t in targets],
        "layers_negated": [_text(x) for x in layers],
        "keys_negated": [_text(x) for x in keys],
        "model_sha256": {
            "before_negation": sha_before,
            "after_negation": sha_negated,
            "after_recovery": sha_after,
        },
        "recovery_rounds": _plain(rounds),
        "stopping": _plain(stopping),
        "final_metrics": _plain(final_metrics),
        "written_at": written_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_record(out_dir: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` to ``out_dir/unlearning-record.json`` atomically.

    The JSON text is made first (sorted keys, indented, NaN refused); it goes to a
    temporary file in ``out_dir`` that is fsynced, renamed over the target and followed
    by an fsync of the folder. A failure at any step leaves the previous file as it was
    and no temporary file behind.

    Parameters
    ----------
    out_dir : str or PathLike
        Folder (created if missing).
    record : dict
        From :func:`build_record`.

    Returns
    -------
    Path
        The record file.

    Raises
    ------
    ValueError
        The record holds NaN or infinity.
    TypeError
        The record holds a value JSON cannot represent.
    """
    try:
        text = json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        raise ValueError(f"unlearning record not written: {err} (NaN and infinity have no "
                         "JSON form; replace them with null)") from None
    # imported here: the module itself imports only the standard library (see above)
    from .store import atomic_write_bytes

    return atomic_write_bytes(Path(out_dir) / RECORD_FILE, (text + "\n").encode("utf-8"))


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
    return hashlib.sha256(canonical_json(
        {"index": index, "prev_hash": prev_hash, "record": record})).hexdigest()


def _check_lines(data: bytes, expect_head: str | None = None
                 ) -> tuple[list[str], list[dict], str]:
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
            problems.append(f"line {len(lines)}: not terminated by a newline (a truncated "
                            "or interrupted write)")
    prev_hash = GENESIS_HASH
    expected_index = 0
    head = GENESIS_HASH
    for number, raw in enumerate(lines, start=1):
        where = f"line {number}"
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            problems.append(f"{where}: not a valid JSON entry ({err}); the entry was "
                            "truncated or edited")
            prev_hash = None  # unknown: the next link cannot be checked
            expected_index = None
            continue
        if not isinstance(entry, dict) or set(entry) != LOG_ENTRY_KEYS:
            got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            problems.append(f"{where}: expected an object with keys "
                            f"{sorted(LOG_ENTRY_KEYS)}, got {got}")
            stored = entry.get("hash") if isinstance(entry, dict) else None
            prev_hash = stored if _is_sha256(stored) else None
            expected_index = None
            continue
        entries.append(entry)
        index, stored_prev, stored = entry["index"], entry["prev_hash"], entry["hash"]
        if isinstance(index, bool) or not isinstance(index, int):
            problems.append(f"{where}: index must be an integer, got {index!r}")
        elif expected_index is not None and index != expected_index:
            problems.append(f"{where}: index {index}, expected {expected_index} (an entry "
                            "was removed, inserted or moved)")
        if not _is_sha256(stored_prev):
            problems.append(f"{where}: prev_hash {stored_prev!r} is not a SHA-256 hex digest")
        elif prev_hash is not None and stored_prev != prev_hash:
            what = ("the first entry's prev_hash must be " + GENESIS_HASH[:12] + "..."
                    if number == 1 else f"it does not match the hash of line {number - 1}")
            problems.append(f"{where}: prev_hash {stored_prev[:12]}... is wrong: {what} "
                            "(an entry was removed, inserted or moved)")
        try:
            computed = entry_hash(index, stored_prev, entry["record"])
            canonical = canonical_json(entry) == raw
        except (TypeError, ValueError, RecursionError) as err:
            problems.append(f"{where}: the entry cannot be hashed ({err})")
            computed, canonical = None, True
        if computed is not None and stored != computed:
            problems.append(f"{where}: hash mismatch, entry {index!r} was edited (stored "
                            f"{str(stored)[:12]}..., content hashes to {computed[:12]}...)")
        elif not canonical:  # same values, other bytes (1E-05 for 1e-05, spaces, ...)
            problems.append(f"{where}: not in canonical JSON form; the line's bytes were edited")
        prev_hash = stored if _is_sha256(stored) else None
        expected_index = index + 1 if isinstance(index, int) and not isinstance(index, bool) else None
        head = stored if isinstance(stored, str) else head
    if expect_head is not None:
        expect_head = expect_head.strip().lower()
        if not lines:
            problems.append(f"the log is empty but its head was expected to be {expect_head}")
        elif head != expect_head:
            problems.append(f"head hash {head} differs from the expected {expect_head}: "
                            "entries were removed from the end or the log was rewritten")
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


def verify_log(log_path: str | os.PathLike, *, expect_head: str | None = None
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
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.seek(0)
            problems, entries, head = _check_lines(fh.read())
            if problems:
                raise AuditLogError(f"audit log {str(path)!r} is broken, not appending: "
                                    + "; ".join(problems))
            index = len(entries)
            entry = {"index": index, "prev_hash": head,
                     "record": record, "hash": entry_hash(index, head, record)}
            fh.seek(0, os.SEEK_END)
            fh.write(canonical_json(entry) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    if created:
        _fsync_dir(path.parent)
    return entry


# ------------------------------------------------------------------------------- CLI


def _targets_text(record: Any) -> str:
    if not isinstance(record, dict):
        return "?"
    items = []
    for t in record.get("targets") or []:
        if isinstance(t, dict):
            text = f"{t.get('by')}={t.get('value')}"
            if t.get("name"):
                text += f" ({t['name']})"
            items.append(text)
    return ", ".join(items) or "-"


def _short(value: Any, n: int = 16) -> str:
    return value[:n] if isinstance(value, str) else "-"


def _show(path: Path) -> int:
    data = path.read_bytes()
    problems, entries, _ = _check_lines(data)
    rows = [("index", "round", "targets", "requested_by", "sha256 after recovery")]
    for entry in entries:
        record = entry["record"] if isinstance(entry["record"], dict) else {}
        request = record.get("request") if isinstance(record.get("request"), dict) else {}
        sha = record.get("model_sha256") if isinstance(record.get("model_sha256"), dict) else {}
        rows.append((str(entry["index"]), str(record.get("applied_round", "?")),
                     _targets_text(record), str(request.get("requested_by", "?")),
                     _short(sha.get("after_recovery"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if problems:
        print(f"warning: the log does not verify ({len(problems)} problem(s)); run "
              f"`python -m not_flower.audit verify {path}`", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``verify LOG [--expect-head HASH]`` or ``show LOG``.

    Returns
    -------
    int
        0: the log verifies (``verify``) or was listed without problems (``show``);
        1: the log is broken; 2: usage error or the log file does not exist.
    """
    parser = argparse.ArgumentParser(
        prog="python -m not_flower.audit",
        description="Check or list the hash-chained log of unlearning records.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="recompute every hash and link of the log")
    p_verify.add_argument("log")
    p_verify.add_argument("--expect-head", metavar="HASH",
                          help="the head hash kept elsewhere; fail if the log's differs "
                               "(detects a truncated tail or a rewritten log)")
    p_show = sub.add_parser("show", help="list the entries")
    p_show.add_argument("log")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    path = Path(args.log)
    if not path.is_file():
        print(f"error: audit log {str(path)!r} does not exist or is not a file", file=sys.stderr)
        return 2
    if args.command == "show":
        return _show(path)
    if args.expect_head is not None and not _is_sha256(args.expect_head.strip().lower()):
        print(f"error: --expect-head must be a SHA-256 hex digest (64 hex digits), got "
              f"{args.expect_head!r}", file=sys.stderr)
        return 2
    problems, entries, head = _check_lines(path.read_bytes(), args.expect_head)
    if problems:
        print(f"FAILED: {path}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"OK: {len(entries)} entries, head {head}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
