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
    python -m not_flower.audit verify RUN_DIR                    # + records and checkpoints
    python -m not_flower.audit show LOG                          # one line per entry

Where it lives
    The model hash, canonical JSON and the record are in :mod:`not_flower.audit.record`,
    the log in :mod:`not_flower.audit.log`; this module is the command line and re-exports
    every public name of both, so ``from not_flower.audit.cli import ...`` keeps working.

Only the standard library is imported at module level (numpy, torch and flwr are used
by :func:`sha256_arrays` only when given such objects, and by :func:`write_record`, which
writes through :func:`not_flower.common.store.atomic_write_bytes`), so the command runs anywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from not_flower.audit.log import (
    GENESIS_HASH,
    LOG_ENTRY_KEYS,
    AuditLogError,
    _check_lines,
    append_to_log,
    entry_hash,
    read_log,
    verify_log,
)
from not_flower.audit.record import (
    RECORD_FILE,
    RECORD_VERSION,
    _is_sha256,
    build_record,
    canonical_json,
    sha256_arrays,
    write_record,
)

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
        rows.append(
            (
                str(entry["index"]),
                str(record.get("applied_round", "?")),
                _targets_text(record),
                str(request.get("requested_by", "?")),
                _short(sha.get("after_recovery")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if problems:
        print(
            f"warning: the log does not verify ({len(problems)} problem(s)); run "
            f"`python -m not_flower.audit verify {path}`",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``verify LOG|RUN_DIR [--expect-head HASH]`` or ``show LOG``.

    ``verify RUN_DIR`` also checks every record file and the checkpoints against the log
    (:func:`not_flower.audit.verify.verify_run_dir`).

    Returns
    -------
    int
        0: the log verifies (``verify``) or was listed without problems (``show``);
        1: the log is broken; 2: usage error or the log file does not exist.
    """
    parser = argparse.ArgumentParser(
        prog="python -m not_flower.audit",
        description="Check or list the hash-chained log of unlearning records.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="recompute every hash and link of the log")
    p_verify.add_argument(
        "log",
        help="the log file, or a run's out-dir (then its records "
        "and checkpoints are checked against its log too)",
    )
    p_verify.add_argument(
        "--expect-head",
        metavar="HASH",
        help="the head hash kept elsewhere; fail if the log's differs "
        "(detects a truncated tail or a rewritten log)",
    )
    p_show = sub.add_parser("show", help="list the entries")
    p_show.add_argument("log")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    path = Path(args.log)
    if args.command == "verify" and path.is_dir():  # a run folder: log, records, checkpoints
        from not_flower.audit.verify import main_run_dir  # pylint: disable=import-outside-toplevel

        if args.expect_head is not None and not _is_sha256(args.expect_head.strip().lower()):
            print(
                f"error: --expect-head must be a SHA-256 hex digest (64 hex digits), got "
                f"{args.expect_head!r}",
                file=sys.stderr,
            )
            return 2
        return main_run_dir(path, args.expect_head)
    if not path.is_file():
        print(f"error: audit log {str(path)!r} does not exist or is not a file", file=sys.stderr)
        return 2
    if args.command == "show":
        return _show(path)
    if args.expect_head is not None and not _is_sha256(args.expect_head.strip().lower()):
        print(
            f"error: --expect-head must be a SHA-256 hex digest (64 hex digits), got "
            f"{args.expect_head!r}",
            file=sys.stderr,
        )
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
