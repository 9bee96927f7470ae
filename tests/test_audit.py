"""The record of forgetting: model hashes, the record file and the hash-chained log."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from not_flower.audit.cli import (
    GENESIS_HASH,
    AuditLogError,
    append_to_log,
    build_record,
    canonical_json,
    entry_hash,
    main,
    read_log,
    sha256_arrays,
    verify_log,
    write_record,
)
from strategies.negation import negate

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ a tiny model


def tiny_numpy() -> dict[str, np.ndarray]:
    return {
        "b.weight": np.array([[1.0, -2.0], [3.0, 4.0]], dtype=np.float32),
        "a.bias": np.array([0.5, -0.25], dtype=np.float32),
        "c.count": np.array(7, dtype=np.int64),
    }


def tiny_expected_hash() -> str:
    """The documented scheme, written out by hand with struct (no numpy)."""
    blob = (
        b"a.bias\0float32\0[2]\0"
        + struct.pack("<2f", 0.5, -0.25)
        + b"b.weight\0float32\0[2,2]\0"
        + struct.pack("<4f", 1.0, -2.0, 3.0, 4.0)
        + b"c.count\0int64\0[]\0"
        + struct.pack("<q", 7)
    )
    return hashlib.sha256(blob).hexdigest()


TINY_SHA = "2a7a0f386d82c273fd28d40ad08f9248978f92d7460303a9897b724bfd65f4c9"


def test_sha256_known_answer():
    assert sha256_arrays(tiny_numpy()) == tiny_expected_hash()
    assert tiny_expected_hash() == TINY_SHA  # pinned: the scheme must never change silently


def test_sha256_same_for_arrayrecord_state_dict_and_numpy():
    arrays = tiny_numpy()
    state_dict = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
    from_torch_record = ArrayRecord(state_dict)
    hashes = {sha256_arrays(x) for x in (arrays, state_dict, record, from_torch_record)}
    assert hashes == {TINY_SHA}


def test_sha256_ignores_key_order_memory_layout_and_byte_order():
    arrays = tiny_numpy()
    reordered = dict(reversed(list(arrays.items())))
    big_endian = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in arrays.items()}
    transposed = dict(arrays, **{"b.weight": np.asfortranarray(arrays["b.weight"])})
    torch_t = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    torch_t["b.weight"] = torch.from_numpy(arrays["b.weight"].T.copy()).t()  # non-contiguous
    assert not torch_t["b.weight"].is_contiguous()
    for form in (reordered, big_endian, transposed, torch_t):
        assert sha256_arrays(form) == TINY_SHA


def test_sha256_of_a_real_model_matches_its_record_and_changes_when_negated():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    state = model.state_dict()
    record = ArrayRecord(state)
    before = sha256_arrays(state)
    assert sha256_arrays(record) == before
    negated = negate(record, ["0.weight"])
    assert sha256_arrays(negated) != before
    assert sha256_arrays(negate(negated, ["0.weight"])) == before  # -(-x) == x bit for bit
    # dtype and shape are part of the hash, not only the bytes
    flat = dict(tiny_numpy(), **{"b.weight": tiny_numpy()["b.weight"].reshape(4)})
    assert sha256_arrays(flat) != TINY_SHA
    as_int = dict(tiny_numpy(), **{"a.bias": np.array([0.5, -0.25], np.float32).view(np.int32)})
    assert sha256_arrays(as_int) != TINY_SHA


def test_sha256_bfloat16_and_bad_input():
    bf = {"w": torch.tensor([1.0, -2.0], dtype=torch.bfloat16)}
    expected = hashlib.sha256(
        b"w\0bfloat16\0[2]\0" + bf["w"].view(torch.int16).numpy().astype("<i2").tobytes()
    ).hexdigest()
    assert sha256_arrays(bf) == expected
    with pytest.raises(TypeError, match="expected an ArrayRecord"):
        sha256_arrays([1, 2])
    with pytest.raises(TypeError, match="entry 'x'"):
        sha256_arrays({"x": [1.0]})
    with pytest.raises(TypeError, match="keys must be strings"):
        sha256_arrays({1: np.zeros(1)})


def test_canonical_json():
    assert (
        canonical_json({"b": 1, "a": [1.5, "é"], "c": None})
        == '{"a":[1.5,"é"],"b":1,"c":null}'.encode()
    )
    for bad in (float("nan"), float("inf"), {"x": [float("-inf")]}):
        with pytest.raises(ValueError, match="NaN and infinity"):
            canonical_json(bad)


# ------------------------------------------------------------------------ record

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def event_request() -> dict:
    """``UnlearningEvent.to_dict()["request"]`` as the strategy produces it."""
    return {
        "rule": {"by": "partition-id", "values": ["2"]},
        "at_round": 3,
        "requested_by": "alice (file r.json)",
        "requested_at": "2025-01-01T00:00:00+00:00",
        "strict": False,
    }


def make_record(requested_by: str = "alice", round_: int = 3, after: str = SHA_C) -> dict:
    return build_record(
        request={
            "targets": ["2"],
            "by": "partition-id",
            "requested_by": requested_by,
            "requested_at": "2025-01-01T00:00:00+00:00",
        },
        round=round_,
        targets=[
            {
                "node_id": 1014,
                "name": "site-2",
                "by": "partition-id",
                "value": "2",
                "identity": {"partition-id": 2, "num-partitions": 5},
            }
        ],
        layers=["conv1"],
        keys=["conv1.weight", "conv1.bias"],
        sha_before=SHA_A,
        sha_negated=SHA_B,
        sha_after=after,
        recovery_rounds=[
            {
                "round": r,
                "participants": [
                    {"node_id": 1000, "name": "site-0", "partition_id": 0},
                    {"node_id": 1007, "name": "site-1", "partition_id": 1},
                ],
            }
            for r in (3, 4)
        ],
        stopping={"rule": "val-acc within tolerance", "round": 4, "tolerance": 0.02},
        final_metrics={"test_acc": np.float32(0.95), "forget_acc": 0.9, "mia": float("nan")},
        method="not",
        run_id="1234",
        written_at="2025-01-01T00:05:00+00:00",
    )


def test_record_contents():
    record = make_record()
    assert set(record) == {
        "version",
        "method",
        "run_id",
        "request",
        "applied_round",
        "targets",
        "layers_negated",
        "keys_negated",
        "model_sha256",
        "recovery_rounds",
        "stopping",
        "final_metrics",
        "written_at",
    }
    assert record["version"] == 1 and record["method"] == "not" and record["run_id"] == "1234"
    assert record["request"] == {
        "requested_by": "alice",
        "requested_at": "2025-01-01T00:00:00+00:00",
        "targets": ["2"],
        "by": "partition-id",
    }
    assert record["applied_round"] == 3
    assert record["targets"] == [
        {
            "node_id": 1014,
            "name": "site-2",
            "by": "partition-id",
            "value": "2",
            "identity": {"partition-id": 2, "num-partitions": 5},
        }
    ]
    assert record["layers_negated"] == ["conv1"]
    assert record["keys_negated"] == ["conv1.weight", "conv1.bias"]
    assert record["model_sha256"] == {
        "before_negation": SHA_A,
        "after_negation": SHA_B,
        "after_recovery": SHA_C,
    }
    assert [r["round"] for r in record["recovery_rounds"]] == [3, 4]
    assert record["recovery_rounds"][0]["participants"][1] == {
        "node_id": 1007,
        "name": "site-1",
        "partition_id": 1,
    }
    assert record["stopping"]["round"] == 4
    # numpy scalars become floats, NaN becomes null: the record is always valid JSON
    assert type(record["final_metrics"]["test_acc"]) is float
    assert record["final_metrics"]["mia"] is None
    assert json.loads(canonical_json(record)) == record


def test_record_accepts_event_request_and_bare_node_ids():
    record = build_record(
        request=event_request(),
        round=3,
        targets=[],
        layers=[],
        keys=[],
        sha_before=SHA_A,
        sha_negated=SHA_A,
        sha_after=None,
        recovery_rounds=[{"round": 3, "participants": [1000, 1007]}],
        stopping={},
        final_metrics={},
        method="ft",
    )
    assert record["request"] == {
        "requested_by": "alice (file r.json)",
        "requested_at": "2025-01-01T00:00:00+00:00",
        "targets": ["2"],
        "by": "partition-id",
    }
    assert record["recovery_rounds"][0]["participants"][0] == {
        "node_id": 1000,
        "name": "",
        "partition_id": None,
    }
    assert record["model_sha256"]["after_recovery"] is None
    assert record["run_id"] is None and record["written_at"].endswith("+00:00")


@pytest.mark.parametrize(
    "field,value", [("sha_before", "abc"), ("sha_negated", None), ("sha_after", "A" * 64)]
)
def test_record_refuses_bad_hashes(field, value):
    kwargs = dict(
        request={},
        round=1,
        targets=[],
        layers=[],
        keys=[],
        sha_before=SHA_A,
        sha_negated=SHA_A,
        sha_after=SHA_A,
        recovery_rounds=[],
        stopping={},
        final_metrics={},
        method="not",
    )
    kwargs[field] = value
    with pytest.raises(ValueError, match=f"{field} must be a SHA-256 hex digest.*got {value!r}"):
        build_record(**kwargs)


def test_write_record_round_trip(tmp_path):
    path = write_record(tmp_path / "out", make_record())
    assert path == tmp_path / "out" / "unlearning-record.json"
    assert json.loads(path.read_text()) == make_record()
    assert sorted(p.name for p in path.parent.iterdir()) == ["unlearning-record.json"]


@pytest.mark.parametrize(
    "bad,error", [({"x": float("nan")}, ValueError), ({"x": object()}, TypeError)]
)
def test_failed_write_keeps_the_old_record(tmp_path, bad, error):
    path = write_record(tmp_path, make_record())
    before = path.read_bytes()
    with pytest.raises(error):
        write_record(tmp_path, dict(make_record(), final_metrics=bad))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["unlearning-record.json"]


def test_crash_during_rename_keeps_the_old_record(tmp_path, monkeypatch):
    path = write_record(tmp_path, make_record())
    before = path.read_bytes()

    def boom(*_args):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        write_record(tmp_path, make_record(requested_by="mallory"))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["unlearning-record.json"]


# --------------------------------------------------------------------------- log


@pytest.fixture()
def log(tmp_path) -> Path:
    path = tmp_path / "audit" / "unlearning-log.jsonl"
    for i, who in enumerate(["alice", "bob", "carol"]):
        append_to_log(path, make_record(requested_by=who, round_=3 + i))
    return path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def head_of(path: Path) -> str:
    return json.loads(lines_of(path)[-1])["hash"]


def test_append_and_verify_round_trip(log):
    entries = read_log(log)
    assert [e["index"] for e in entries] == [0, 1, 2]
    assert entries[0]["prev_hash"] == GENESIS_HASH
    for prev, entry in zip(entries, entries[1:]):
        assert entry["prev_hash"] == prev["hash"]
    for entry in entries:
        assert (
            entry["hash"]
            == hashlib.sha256(
                canonical_json(
                    {
                        "index": entry["index"],
                        "prev_hash": entry["prev_hash"],
                        "record": entry["record"],
                    }
                )
            ).hexdigest()
        )
    assert [e["record"]["request"]["requested_by"] for e in entries] == ["alice", "bob", "carol"]
    assert verify_log(log) == (True, [])
    assert verify_log(log, expect_head=head_of(log)) == (True, [])
    # each line is canonical JSON
    for line in lines_of(log):
        assert canonical_json(json.loads(line)) == line


def test_append_returns_the_entry_and_chains_on(log):
    entry = append_to_log(log, make_record(requested_by="dave"))
    assert entry["index"] == 3 and entry["hash"] == head_of(log)
    assert entry["hash"] == entry_hash(3, entry["prev_hash"], entry["record"])
    assert verify_log(log) == (True, [])


def assert_fails(log: Path, line: int, *words: str, expect_head: str | None = None) -> list[str]:
    ok, problems = verify_log(log, expect_head=expect_head)
    assert not ok
    hits = [p for p in problems if p.startswith(f"line {line}:") and all(w in p for w in words)]
    assert hits, problems
    return problems


def test_edited_entry_is_detected(log):
    lines = lines_of(log)
    entry = json.loads(lines[1])
    entry["record"]["request"]["requested_by"] = "mallory"
    lines[1] = canonical_json(entry)
    write_lines(log, lines)
    problems = assert_fails(log, 2, "hash mismatch", "edited")
    assert len(problems) == 1  # the links after it still hold


def test_edited_index_is_detected(log):
    lines = lines_of(log)
    entry = json.loads(lines[2])
    entry["index"] = 7
    lines[2] = canonical_json(entry)
    write_lines(log, lines)
    assert_fails(log, 3, "index 7, expected 2")
    assert_fails(log, 3, "hash mismatch")


def test_removed_entry_is_detected(log):
    lines = lines_of(log)
    write_lines(log, [lines[0], lines[2]])
    assert_fails(log, 2, "index 2, expected 1")
    assert_fails(log, 2, "prev_hash", "does not match the hash of line 1")


def test_removed_first_entry_is_detected(log):
    write_lines(log, lines_of(log)[1:])
    assert_fails(log, 1, "index 1, expected 0")
    assert_fails(log, 1, "prev_hash", "first entry")


def test_swapped_entries_are_detected(log):
    lines = lines_of(log)
    write_lines(log, [lines[0], lines[2], lines[1]])
    assert_fails(log, 2, "index 2, expected 1")
    assert_fails(log, 2, "prev_hash")
    assert_fails(log, 3, "prev_hash")


def test_truncated_last_line_is_detected(log):
    data = log.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    log.write_bytes(data[: last_start + (len(data) - last_start) // 2])
    assert_fails(log, 3, "not a valid JSON entry")
    assert_fails(log, 3, "not terminated by a newline")


def test_forged_appended_entry_is_detected(log):
    record = make_record(requested_by="mallory")
    forged = {
        "index": 3,
        "prev_hash": "f" * 64,
        "record": record,
        "hash": entry_hash(3, "f" * 64, record),
    }  # its own hash is right
    write_lines(log, lines_of(log) + [canonical_json(forged)])
    problems = assert_fails(log, 4, "prev_hash", "does not match the hash of line 3")
    assert len(problems) == 1


def test_inserted_entry_is_detected(log):
    lines = lines_of(log)
    first = json.loads(lines[0])
    record = make_record(requested_by="mallory")
    inserted = {
        "index": 1,
        "prev_hash": first["hash"],
        "record": record,
        "hash": entry_hash(1, first["hash"], record),
    }  # chained to line 1
    write_lines(log, [lines[0], canonical_json(inserted), *lines[1:]])
    assert_fails(log, 3, "index 1, expected 2")
    assert_fails(log, 3, "prev_hash", "does not match the hash of line 2")


def test_extra_key_and_garbage_lines_are_detected(log):
    lines = lines_of(log)
    entry = json.loads(lines[0])
    entry["note"] = "unhashed"
    write_lines(log, [canonical_json(entry), lines[1], b"", b"[1, 2]", lines[2]])
    assert_fails(log, 1, "expected an object with keys")
    assert_fails(log, 3, "not a valid JSON entry")
    assert_fails(log, 4, "expected an object with keys", "list")


def rewrite_chain(path: Path, edit) -> None:
    """The attack a chain alone cannot see: edit, then recompute every hash after it."""
    entries = [json.loads(line) for line in lines_of(path)]
    edit(entries)
    prev = GENESIS_HASH
    for entry in entries:
        entry["prev_hash"] = prev
        entry["hash"] = prev = entry_hash(entry["index"], prev, entry["record"])
    write_lines(path, [canonical_json(e) for e in entries])


def test_rewritten_chain_is_detected_only_with_expected_head(log, capsys):
    head = head_of(log)

    def edit(entries):
        entries[1]["record"]["request"]["requested_by"] = "mallory"

    rewrite_chain(log, edit)
    assert verify_log(log) == (True, [])  # a valid chain: undetectable on its own
    ok, problems = verify_log(log, expect_head=head)
    assert not ok and len(problems) == 1
    assert "differs from the expected" in problems[0] and head in problems[0]
    assert main(["verify", str(log)]) == 0
    assert main(["verify", str(log), "--expect-head", head]) == 1
    assert "differs from the expected" in capsys.readouterr().out


def test_truncated_tail_is_detected_only_with_expected_head(log):
    head = head_of(log)
    write_lines(log, lines_of(log)[:2])
    assert verify_log(log) == (True, [])
    ok, problems = verify_log(log, expect_head=head)
    assert not ok and "removed from the end" in problems[0]
    log.write_bytes(b"")
    assert verify_log(log) == (True, [])
    assert not verify_log(log, expect_head=head)[0]


def test_append_refuses_a_broken_log_and_bad_records(log):
    lines = lines_of(log)
    write_lines(log, [lines[0], lines[2]])
    before = log.read_bytes()
    with pytest.raises(AuditLogError, match="line 2: index 2, expected 1"):
        append_to_log(log, make_record())
    assert log.read_bytes() == before
    fresh = log.parent / "fresh.jsonl"
    append_to_log(fresh, make_record())
    before = fresh.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        append_to_log(fresh, {"x": float("nan")})
    with pytest.raises(TypeError):
        append_to_log(fresh, {"x": object()})
    assert fresh.read_bytes() == before


def test_concurrent_appends_do_not_interleave(tmp_path):
    path = tmp_path / "log.jsonl"
    errors = []

    def writer(name):
        try:
            for i in range(5):
                append_to_log(path, {"writer": name, "i": i, "pad": "x" * 5000})
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert verify_log(path) == (True, [])
    assert len(read_log(path)) == 20


# --------------------------------------------------------------------------- CLI


def test_cli_verify_ok(log, capsys):
    assert main(["verify", str(log)]) == 0
    assert capsys.readouterr().out == f"OK: 3 entries, head {head_of(log)}\n"
    assert main(["verify", str(log), "--expect-head", head_of(log).upper()]) == 0


def test_cli_verify_broken(log, capsys):
    write_lines(log, lines_of(log)[1:])
    assert main(["verify", str(log)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED:") and "line 1: index 1, expected 0" in out


def test_cli_missing_file_and_usage_errors(tmp_path, capsys, log):
    missing = tmp_path / "nope.jsonl"
    assert main(["verify", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["show", str(missing)]) == 2
    assert main(["verify", str(log), "--expect-head", "xyz"]) == 2
    assert "--expect-head must be a SHA-256" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["frobnicate", str(log)]) == 2


def test_cli_show(log, capsys):
    assert main(["show", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "index",
        "round",
        "targets",
        "requested_by",
        "sha256",
        "after",
        "recovery",
    ]
    assert len(out) == 4
    assert out[2].split()[:2] == ["1", "4"]
    assert "partition-id=2 (site-2)" in out[2] and "bob" in out[2] and SHA_C[:16] in out[2]
    log.write_bytes(log.read_bytes()[:-10])
    assert main(["show", str(log)]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3 and "does not verify" in captured.err


@pytest.mark.e2e
def test_python_dash_m(log):
    result = subprocess.run(
        [sys.executable, "-m", "not_flower.audit", "verify", str(log)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.startswith("OK: 3 entries, head ")


def test_record_from_a_hostile_request_is_still_writable(tmp_path):
    record = build_record(
        request={"targets": ["\ud800"], "requested_by": "x\udc80y"},
        round=1,
        targets=[{"node_id": 1, "name": "\ud800", "value": "\ud800"}],
        layers=[],
        keys=[],
        sha_before=SHA_A,
        sha_negated=SHA_A,
        sha_after=SHA_A,
        recovery_rounds=[],
        stopping={"why": "\udfff"},
        final_metrics={"\ud801": 1.0},
        method="not",
    )
    assert record["request"]["requested_by"] == "x\\udc80y"
    write_record(tmp_path, record)
    append_to_log(tmp_path / "log.jsonl", record)
    assert verify_log(tmp_path / "log.jsonl") == (True, [])


def test_same_values_other_bytes_is_detected(log):
    lines = lines_of(log)
    entry = json.loads(lines[1])
    entry["record"]["final_metrics"]["forget_acc"] = 1e-05
    entry["hash"] = entry_hash(entry["index"], entry["prev_hash"], entry["record"])
    lines[1] = canonical_json(entry)
    rechained = json.loads(lines[2])
    rechained["prev_hash"] = entry["hash"]
    rechained["hash"] = entry_hash(2, entry["hash"], rechained["record"])
    lines[2] = canonical_json(rechained)
    write_lines(log, lines)
    assert verify_log(log) == (True, [])
    lines[1] = lines[1].replace(b"1e-05", b"1E-05")  # one bit, same float
    write_lines(log, lines)
    problems = assert_fails(log, 2, "not in canonical JSON form")
    assert len(problems) == 1


def test_hostile_log_lines_do_not_crash_verify(tmp_path):
    path = tmp_path / "log.jsonl"
    nan_entry = (
        b'{"hash":"' + b"0" * 64 + b'","index":0,"prev_hash":"' + b"0" * 64 + b'","record":NaN}'
    )
    write_lines(path, [b"[" * 5000, b"\xff\xfe", b"9" * 5000, nan_entry])
    ok, problems = verify_log(path)
    assert not ok
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 2", "line 3", "line 4"]
    assert "cannot be hashed" in problems[3]
