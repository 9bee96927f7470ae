"""The request folder's odd entries and a request's reason.

Links (to a request elsewhere, or dangling) and folders named ``x.json`` are refused with
one log line and moved to ``rejected/``; ``x.JSON`` is read; a name used again is
suffixed, never overwriting; a request's ``reason`` reaches results.json, the record of
forgetting and the audit log.
"""

from __future__ import annotations

import json
import logging
import os

import pytest

from not_flower.app.requests import RequestFileError, RequestFolder, free_name, parse_request
from not_flower.app.server_app import run_experiment
from not_flower.common.config import parse_run_config
from strategies.unlearning_request import ExternalRequest
from tests.test_preflight import _grid

GOOD = {"targets": ["1"], "requested_by": "alice", "reason": "GDPR art. 17"}


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_link_to_a_valid_request_elsewhere_is_refused_not_followed(tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(GOOD))
    folder = RequestFolder(tmp_path / "req")
    (folder.path / "link.json").symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        assert folder.poll() == []
        assert folder.poll() == []  # handled once: no line at every round
    (line,) = _warnings(caplog)
    assert "link.json: a symbolic link; a request must be a plain file" in line
    assert (folder.rejected / "link.json").is_symlink()  # moved as the link
    assert json.loads(elsewhere.read_text()) == GOOD  # its target untouched, still there
    assert "symbolic link" in (folder.rejected / "link.json.reason.txt").read_text()


def test_a_dangling_link_and_a_folder_named_json_get_one_line_each(tmp_path, caplog):
    folder = RequestFolder(tmp_path / "req")
    (folder.path / "dangling.json").symlink_to(tmp_path / "missing.json")
    (folder.path / "dir.json").mkdir()
    (folder.path / "notes.txt").write_text("not a request: left alone")
    with caplog.at_level(logging.WARNING, logger="flwr"):
        assert folder.poll() == [] and folder.poll() == []
    lines = _warnings(caplog)
    assert len(lines) == 2
    assert "dangling.json: a symbolic link that leads nowhere" in lines[0]
    assert "dir.json: a folder" in lines[1]
    assert (folder.rejected / "dir.json").is_dir()
    assert sorted(p.name for p in folder.path.iterdir()) == ["accepted", "notes.txt", "rejected"]


def test_an_upper_case_extension_is_read(tmp_path):
    folder = RequestFolder(tmp_path / "req")
    (folder.path / "x.JSON").write_text(json.dumps(GOOD))
    (request,) = folder.poll()
    assert request.targets == ("1",) and request.requested_by == "alice (file x.JSON)"


def test_a_name_used_again_never_overwrites(tmp_path):
    folder = RequestFolder(tmp_path / "req")
    for round_ in range(3):
        (folder.path / "r.json").write_text(json.dumps({**GOOD, "requested_by": f"a{round_}"}))
        (request,) = folder.poll()
        request.on_settled(None, True, "")
        (folder.path / "bad.json").write_text("{oops")
        assert folder.poll() == []
    accepted = {
        p.name: json.loads(p.read_text())["requested_by"] for p in folder.accepted.iterdir()
    }
    assert accepted == {"r.json": "a0", "r-2.json": "a1", "r-3.json": "a2"}
    assert sorted(p.name for p in folder.rejected.iterdir()) == [
        "bad-2.json",
        "bad-2.json.reason.txt",
        "bad-3.json",
        "bad-3.json.reason.txt",
        "bad.json",
        "bad.json.reason.txt",
    ]
    assert free_name(folder.accepted, "new.json") == folder.accepted / "new.json"


def test_the_reason_is_parsed_and_kept_by_the_folder(tmp_path):
    assert parse_request(json.dumps(GOOD))["reason"] == "GDPR art. 17"
    assert "reason" not in parse_request('{"targets": ["1"], "reason": "  "}')
    with pytest.raises(RequestFileError, match="'reason' must be a string"):
        parse_request('{"targets": ["1"], "reason": 17}', "r.json")
    folder = RequestFolder(tmp_path / "req")
    (folder.path / "r.json").write_text(json.dumps(GOOD))
    (request,) = folder.poll()  # a typed request, with the reason, for the strategy
    assert request == ExternalRequest(
        targets=("1",), by="partition-id", requested_by="alice (file r.json)", reason="GDPR art. 17"
    )


@pytest.mark.e2e  # runs the whole app in process (a few rounds)
def test_the_reason_reaches_results_record_and_audit_log(tmp_path):
    requests = tmp_path / "req"
    requests.mkdir()
    (requests / "forget-1.json").write_text(json.dumps(GOOD))
    out = tmp_path / "run"
    config = {
        "num-train-rounds": 1,
        "recovery.rounds": 1,
        "local-epochs": 1,
        "train-subset": 300,
        "unlearn.clients": "",
        "request-dir": str(requests),
        "out-dir": str(out),
    }
    results = run_experiment(_grid(config), parse_run_config(config), out)
    (request,) = results["requests"]
    assert request["request"]["reason"] == "GDPR art. 17"
    stored = json.loads((out / "results.json").read_text())
    assert stored["requests"][0]["request"]["reason"] == "GDPR art. 17"
    record = json.loads((out / "unlearning-record.json").read_text())
    assert record["request"]["reason"] == "GDPR art. 17"
    assert record["request"]["requested_by"] == "alice (file forget-1.json)"
    entries = [json.loads(line) for line in (out / "unlearning-log.jsonl").read_text().splitlines()]
    assert entries and all(e["record"]["request"]["reason"] == "GDPR art. 17" for e in entries)
    assert (requests / "accepted" / "forget-1.json").exists()
    assert sorted(os.listdir(requests)) == ["accepted", "rejected"]
