"""``verify RUN_DIR`` (:func:`not_flower.audit.verify.verify_run_dir`) on run folders built
here: every record of the run present as its latest logged version, the checkpoints
required where the log or ``results.json`` implies them.

Fast tests (no Flower run); a real run, killed and resumed, is verified in
``tests/test_fault_injection.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from flwr.app import ArrayRecord

from not_flower.audit.cli import append_to_log, build_record, sha256_arrays, write_record
from not_flower.audit.verify import record_file_names, record_id, verify_run_dir
from not_flower.common.store import load_checkpoint, save_checkpoint, write_json
from strategies.negation_arrays import negate

KEYS = ["conv.weight"]


def _model(scale: float) -> ArrayRecord:
    return ArrayRecord({"conv.weight": torch.arange(4.0) * scale, "fc.weight": torch.ones(2)})


def _record(status: str, round_: int, hashes: dict) -> dict:
    """A record of forgetting as the ServerApp writes it (``id``, ``status``)."""
    record = build_record(
        request={"requested_by": "alice", "targets": ["1"]},
        round=round_,
        targets=[],
        layers=["conv"],
        keys=KEYS,
        sha_before=hashes["before"],
        sha_negated=hashes["negated"],
        sha_after=hashes["after"] if status == "done" else None,
        recovery_rounds=[{"round": round_, "participants": [0, 2]}] if status != "applied" else [],
        stopping={},
        final_metrics={},
        method="not",
        run_id="42",
        written_at="2026-01-01T00:00:00+00:00",
    )
    return {**record, "id": record_id(round_, hashes["before"]), "status": status}


def _hashes(out: Path, scale: float) -> dict:
    """The before/negated hashes of ``_model(scale)`` and the final checkpoint's hash."""
    final, _ = load_checkpoint(out / "checkpoint-final.pt")
    return {
        "before": sha256_arrays(_model(scale)),
        "negated": sha256_arrays(negate(_model(scale), KEYS)),
        "after": sha256_arrays(final),
    }


def _log_and_write(out: Path, record: dict, name: str = "unlearning-record.json") -> None:
    append_to_log(out / "unlearning-log.jsonl", record)
    if name == "unlearning-record.json":
        write_record(out, record)
    else:
        write_json(out / name, record)


def finished_run(tmp_path: Path) -> tuple[Path, dict, dict]:
    """A finished run with one request at round 3: log, record, checkpoints, results."""
    out = tmp_path / "run"
    out.mkdir()
    save_checkpoint(out / "checkpoint-original.pt", _model(1.0), {})
    save_checkpoint(out / "checkpoint-final.pt", _model(3.0), {})
    hashes = _hashes(out, 1.0)
    applied, done = _record("applied", 3, hashes), _record("done", 3, hashes)
    _log_and_write(out, applied)
    _log_and_write(out, done)
    write_json(
        out / "results.json", {"requests": [{"round": 3, "sha256_before": hashes["before"]}]}
    )
    return out, applied, done


def test_a_complete_finished_run_verifies(tmp_path):
    out, _, _ = finished_run(tmp_path)
    problems, checked = verify_run_dir(out)
    assert problems == []
    assert checked["records"] == ["unlearning-record.json"] and checked["entries"] == 2
    assert checked["checkpoints"] == ["checkpoint-original.pt", "checkpoint-final.pt"]


def test_a_finished_run_without_its_record_file_and_checkpoints_fails(tmp_path):
    out, _, done = finished_run(tmp_path)
    for name in ("unlearning-record.json", "checkpoint-original.pt", "checkpoint-final.pt"):
        (out / name).unlink()
    problems, _ = verify_run_dir(out)
    assert problems == [
        f"unlearning-record.json: missing; the audit log holds record {done['id']} of round 3 "
        "(latest logged status 'done')",
        "checkpoint-original.pt: missing; the audit log holds the record of round 3 (its "
        "before_negation model)",
        "checkpoint-final.pt: missing; results.json says the run finished (its record's "
        "after_recovery model)",
    ]


def test_a_record_file_older_than_the_log_is_rejected(tmp_path):
    out, applied, done = finished_run(tmp_path)
    write_record(out, applied)  # the applied version, logged, but the log's latest is done
    problems, _ = verify_run_dir(out)
    assert problems == [
        f"unlearning-record.json: not the latest version of record {done['id']} of round 3 "
        f"(latest logged status 'done'); the file holds record {done['id']} with status "
        "'applied'"
    ]
    recovering = {**applied, "status": "recovering", "recovery_rounds": done["recovery_rounds"]}
    write_record(out, recovering)  # a recovering file once the log says done: older too
    assert "not the latest version" in verify_run_dir(out)[0][0]


def test_a_run_mid_recovery_verifies_with_its_recovering_file(tmp_path):
    out, applied, done = finished_run(tmp_path)
    (out / "results.json").unlink()
    (out / "checkpoint-final.pt").unlink()
    log = out / "unlearning-log.jsonl"
    log.write_text(log.read_text().splitlines(keepends=True)[0])  # the applied entry only
    recovering = {**applied, "status": "recovering", "recovery_rounds": done["recovery_rounds"]}
    write_record(out, recovering)
    assert verify_run_dir(out)[0] == []
    (out / "checkpoint-original.pt").unlink()  # the log holds a record: it is required
    assert verify_run_dir(out)[0] == [
        "checkpoint-original.pt: missing; the audit log holds the record of round 3 (its "
        "before_negation model)"
    ]


def test_a_request_in_results_without_a_logged_record_is_reported(tmp_path):
    out, _, _ = finished_run(tmp_path)
    results = json.loads((out / "results.json").read_text())
    results["requests"].append({"round": 4, "sha256_before": "b" * 64})
    write_json(out / "results.json", results)
    problems, _ = verify_run_dir(out)
    assert problems == [
        f"results.json: the request applied at round 4 has no record (id "
        f"{record_id(4, 'b' * 64)}) in the audit log"
    ]


def test_two_boundaries_need_a_numbered_file_each(tmp_path):
    assert record_file_names(1) == [["unlearning-record.json"]]
    assert record_file_names(2) == [
        ["unlearning-record-1.json"],
        ["unlearning-record-2.json", "unlearning-record.json"],
    ]
    out, _, first = finished_run(tmp_path)
    (out / "unlearning-record.json").rename(out / "unlearning-record-1.json")
    second = _record("done", 4, _hashes(out, 2.0))
    _log_and_write(out, second, "unlearning-record-2.json")
    write_record(out, second)
    assert verify_run_dir(out)[0] == []
    (out / "unlearning-record-1.json").unlink()
    assert verify_run_dir(out)[0] == [
        f"unlearning-record-1.json: missing; the audit log holds record {first['id']} of "
        "round 3 (latest logged status 'done')"
    ]


def test_a_shared_audit_log_asks_only_for_this_runs_records(tmp_path):
    out, _, done = finished_run(tmp_path)
    shared = tmp_path / "shared-log.jsonl"
    other = _record("done", 7, {"before": "c" * 64, "negated": "d" * 64, "after": "e" * 64})
    append_to_log(shared, other)  # another run's record, first in the shared log
    for line in (out / "unlearning-log.jsonl").read_text().splitlines():
        append_to_log(shared, json.loads(line)["record"])
    (out / "unlearning-log.jsonl").unlink()
    results = json.loads((out / "results.json").read_text())
    write_json(out / "results.json", {**results, "config": {"audit-log": str(shared)}})
    assert verify_run_dir(out)[0] == []
    (out / "unlearning-record.json").unlink()
    assert verify_run_dir(out)[0] == [
        f"unlearning-record.json: missing; the audit log holds record {done['id']} of round 3 "
        "(latest logged status 'done')"
    ]
