"""The run's state machine: nothing forgotten twice, no resume from nothing,
no rewrite of a finished run, the audit log checked before round 1, records verified.

Fast tests of the pieces; the whole app, killed and resumed, is in
``tests/test_fault_injection.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord

from not_flower.app.forgetting_records import (
    AuditLogError,
    append_once,
    check_audit_log,
    find_logged,
    first_run_id,
    record_id,
)
from not_flower.app.request_gate import RequestGate
from not_flower.app.run_state import RunFinishedError, RunState, load_run_state
from not_flower.audit.cli import build_record
from not_flower.common.config import parse_run_config, to_run_config
from not_flower.common.outdir import CONTROL_KEYS, OutDirError
from not_flower.common.store import save_checkpoint, write_json

SHA = "a" * 64


def _applied(pid: int, node_id: int, round_: int = 3) -> dict:
    """An applied request in the results' form."""
    return {
        "round": round_,
        "request": {
            "rule": {"by": "partition-id", "values": [str(pid)]},
            "requested_by": "alice",
            "kind": "client",
        },
        "targets": [{"node_id": node_id, "identity": {"partition-id": pid}}],
    }


class _Source:
    def __init__(self, specs):
        self.specs, self.settled = specs, []

    def poll(self):
        out = []
        for spec in self.specs:
            out.append(
                {
                    **spec,
                    "on_settled": lambda _r, ok, why, s=spec: self.settled.append(
                        (s["requested_by"], ok, why)
                    ),
                }
            )
        self.specs = []
        return out


class _Strategy:  # pylint: disable=too-few-public-methods
    def __init__(self):
        self.pending_requests = []


def test_two_files_for_one_client_at_one_boundary_give_one_request():
    source = _Source(
        [
            {"targets": ["1"], "by": "partition-id", "requested_by": "a.json"},
            {"targets": ["1"], "by": "partition-id", "requested_by": "b.json"},
        ]
    )
    out = RequestGate(source, RunState(), _Strategy()).poll()
    assert [s.requested_by for s in out] == ["a.json"]
    assert source.settled == [
        (
            "b.json",
            False,
            ("partition-id=1 is already requested for this round boundary; nothing to do"),
        )
    ]


def test_a_request_for_an_already_forgotten_client_is_not_applied_again():
    state = RunState()
    state.mark_applied(_applied(1, 112))
    source = _Source(
        [
            {"targets": ["1"], "by": "partition-id", "requested_by": "late.json"},
            {"targets": ["112"], "by": "node-id", "requested_by": "by-id.json"},
            {"targets": ["1", "2"], "by": "partition-id", "requested_by": "both.json"},
        ]
    )
    out = RequestGate(source, state, _Strategy()).poll()
    assert [(s.requested_by, s.targets) for s in out] == [("both.json", ("2",))]
    assert [s[:2] for s in source.settled] == [("late.json", False), ("by-id.json", False)]
    assert "already forgotten at round 3 (asked by alice)" in source.settled[0][2]


def test_request_statuses_and_the_last_durable_round():
    state = RunState()
    state.mark_applied(_applied(1, 112, round_=3))
    assert state.requests[0]["status"] == "applied"
    state.mark_durable(2)
    assert state.requests[0]["status"] == "applied" and state.durable_round == 2
    state.mark_durable(3)
    assert state.requests[0]["status"] == "recovering"
    assert state.requests[0]["targets"] == [
        {"node_id": 112, "partition_id": 1, "status": "forgotten"}
    ]
    state.mark_durable(5, finished=True)
    again = RunState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again.requests[0]["status"] == "done" and again.durable_round == 5
    assert again.forgotten("partition-id", "1")["round"] == 3
    assert again.forgotten("partition-id", "2") is None


# ------------------------------------------------------------------ resume
CONFIG = {"num-train-rounds": 2, "recovery.rounds": 2, "unlearn.clients": "1"}


def _saved_run(
    out, server_round: int, *, checkpoint_round: int | None = None, own_state: bool = True
) -> dict:
    """A state.json and checkpoint-latest.pt as a run leaves them."""
    cfg = parse_run_config({**CONFIG, "out-dir": str(out)})
    state = {
        "version": 1,
        "round": server_round,
        "config": {k: v for k, v in to_run_config(cfg).items() if k not in CONTROL_KEYS},
        "applied": [],
        "forget_specs": {},
        "pending": [],
        "state": RunState().to_dict(),
        "results": {},
    }
    ckpt_round = server_round if checkpoint_round is None else checkpoint_round
    own = {**state, "round": ckpt_round, "pending": [{"by": "partition-id", "values": ["1"]}]}
    save_checkpoint(
        out / "checkpoint-latest.pt",
        ArrayRecord({"w": torch.ones(2)}),
        {"round": ckpt_round, **({"state": own} if own_state else {})},
    )
    write_json(out / "state.json", state)
    return state


def test_resume_of_a_missing_or_mistyped_out_dir_fails_naming_it(tmp_path):
    cfg = parse_run_config({**CONFIG, "resume": True})
    missing = tmp_path / "rnu1"
    with pytest.raises(
        OutDirError,
        match=rf"out-dir {missing} holds no run to resume .*"
        r"mistyped.*set resume = false",
    ):
        load_run_state(missing, cfg)
    assert not missing.exists()


def test_resume_into_a_mistyped_out_dir_creates_nothing(tmp_path):
    from not_flower.app.server_app import run_experiment  # pylint: disable=import-outside-toplevel
    from tests.golden_runs import grid_for  # pylint: disable=import-outside-toplevel

    missing = tmp_path / "rnu1"
    config = {**CONFIG, "resume": True, "out-dir": str(missing)}
    with pytest.raises(OutDirError, match=rf"resume = true, but out-dir {missing} is not a folder"):
        run_experiment(grid_for(config), parse_run_config(config), missing)
    assert not missing.exists()  # no folder, no .lock


def test_resume_of_a_finished_run_refuses_and_changes_nothing(tmp_path):
    _saved_run(tmp_path, 4)
    (tmp_path / "results.json").write_text("{}")
    save_checkpoint(tmp_path / "checkpoint-final.pt", ArrayRecord({"w": torch.ones(2)}), {})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(
        RunFinishedError,
        match=r"already finished all 4 rounds .*nothing was "
        "changed",
    ):
        load_run_state(tmp_path, parse_run_config({**CONFIG, "resume": True}))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_checkpoint_newer_than_state_json_resumes_from_the_checkpoints_state(tmp_path):
    # killed after checkpoint-latest.pt (round 3) and before state.json (round 2)
    _saved_run(tmp_path, 2, checkpoint_round=3)
    saved = load_run_state(tmp_path, parse_run_config({**CONFIG, "resume": True}))
    assert saved.round == 3 and saved.pending == [{"by": "partition-id", "values": ["1"]}]


def test_checkpoint_and_state_that_do_not_belong_together_are_refused(tmp_path):
    _saved_run(tmp_path, 2, checkpoint_round=3, own_state=False)
    with pytest.raises(ValueError, match=r"holds round 3 but .*state.json describes round 2"):
        load_run_state(tmp_path, parse_run_config({**CONFIG, "resume": True}))


# ------------------------------------------------------------------ the audit log
def test_audit_log_path_is_checked_before_round_one(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"audit-log '/etc/hostname/log.jsonl': its folder "
        "cannot be created",
    ):
        check_audit_log(Path("/etc/hostname/log.jsonl"))
    check_audit_log(tmp_path / "new" / "log.jsonl")  # a new folder is fine
    broken = tmp_path / "log.jsonl"
    broken.write_text('{"not": "a chain"}\n')
    with pytest.raises(AuditLogError, match="fails its chain check"):
        check_audit_log(broken)
    check_audit_log(broken, moved_away=True)  # overwrite moves it aside: not checked


def _record(status: str, **request) -> dict:
    record = build_record(
        request={"requested_by": "a", "targets": ["1"], **request},
        round=3,
        targets=[],
        layers=[],
        keys=[],
        sha_before=SHA,
        sha_negated=SHA,
        sha_after=None,
        recovery_rounds=[],
        stopping={},
        final_metrics={},
        method="not",
        written_at="t1",
    )
    return {**record, "id": record_id(3, SHA), "status": status}


def test_the_same_record_is_logged_once(tmp_path):
    log = tmp_path / "log.jsonl"
    first = append_once(log, _record("applied"))
    again = append_once(log, {**_record("applied"), "written_at": "t2"})  # resumed, same step
    assert again == first and len(log.read_text().splitlines()) == 1
    append_once(log, _record("done"))
    assert len(log.read_text().splitlines()) == 2


def test_a_resumed_run_with_a_new_run_id_finds_the_logged_record(tmp_path):
    log = tmp_path / "log.jsonl"
    first = append_once(log, {**_record("applied"), "run_id": "42"})
    again = append_once(log, {**_record("applied"), "run_id": "43", "written_at": "t2"})
    assert again == first and len(log.read_text().splitlines()) == 1
    assert find_logged(log, {**_record("applied"), "run_id": None}) == first
    assert first_run_id(log, {**_record("done"), "run_id": "43"}) == "42"
    assert first_run_id(tmp_path / "none.jsonl", {**_record("done"), "run_id": "43"}) == "43"


def test_class_and_instance_records_carry_what_is_forgotten():
    record = _record("applied", kind="class", classes=(3, 5), samples=())
    assert record["request"]["kind"] == "class" and record["request"]["classes"] == [3, 5]
    record = _record("applied", kind="instance", classes=(), samples=[7, 9])
    assert record["request"]["samples"] == [7, 9]
    assert "kind" not in _record("applied", kind="client")["request"]


def test_a_broken_log_is_an_error_not_a_warning(tmp_path):
    log = tmp_path / "log.jsonl"
    append_once(log, _record("applied"))
    log.write_text(log.read_text().replace('"status":"applied"', '"status":"done"'))
    with pytest.raises(AuditLogError, match="is broken, not appending"):
        append_once(log, _record("done"))


def test_a_bad_audit_log_stops_the_run_before_round_one(tmp_path):
    from not_flower.app.server_app import Experiment  # pylint: disable=import-outside-toplevel

    cfg = parse_run_config(
        {**CONFIG, "audit-log": "/etc/hostname/log.jsonl", "train-subset": 60, "test-subset": 60}
    )
    with pytest.raises(ValueError, match="audit-log '/etc/hostname/log.jsonl'"):
        Experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint-latest.pt").exists()
