"""Unlearning requests from outside a running job, end to end over a local deployment
(a SuperLink and 3 SuperNodes as processes, `flwr run` as a user runs it):

* from a checkpoint: a first run trains (no request) and saves checkpoint-final.pt; a
  second run starts from it with num-train-rounds=0 and unlearns;
* client-initiated: a SuperNode started with node config `forget-me=true`;
* operator request: JSON files dropped into the run's request-dir while it runs, one
  malformed (rejected, logged, training goes on) and one valid (applied).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from tests.deploy_utils import (
    FAST,
    Deployment,
    assert_forgotten,
    load_results,
    pid_alive,
    request_round,
    rounds,
    wait_for_text,
)

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py

NODES = 3


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """One SuperLink and 3 plain SuperNodes shared by the tests that need no special node."""
    dep = Deployment(tmp_path_factory.mktemp("channels"), connection="channels")
    try:
        dep.start_superlink()
        for i in range(NODES):
            dep.start_supernode(i, NODES)
        dep.wait_nodes(NODES)
        yield dep
    finally:
        dep.stop()
        assert not [p for p in dep.stopped if pid_alive(p)]


def _metrics(model: dict) -> dict:
    return {k: model[k] for k in ("test_acc", "test_loss")}


def test_unlearn_from_a_checkpoint_in_a_second_run(deployment, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    deployment.run(
        f"out-dir='{first}' num-train-rounds=1 recovery.rounds=0 unlearn.clients='' {FAST}",
        name="train-run",
    )
    trained = load_results(first)
    assert trained["requests"] == [] and [r["phase"] for r in rounds(trained)] == ["train"]
    checkpoint = first / "checkpoint-final.pt"
    assert checkpoint.is_file()

    deployment.run(
        f"out-dir='{second}' init-checkpoint='{checkpoint}' num-train-rounds=0 "
        f"recovery.rounds=1 recovery.run-to-cap=true unlearn.clients='1' {FAST}",
        name="unlearn-run",
    )
    results = load_results(second)
    # the second run's "original" model is the first run's final model
    assert _metrics(results["models"]["original"]) == _metrics(trained["models"][trained["final"]])
    before = torch.load(checkpoint, weights_only=False)["state_dict"]
    original = torch.load(second / "checkpoint-original.pt", weights_only=False)["state_dict"]
    assert before.keys() == original.keys()
    assert all(torch.equal(before[k], original[k]) for k in before)
    # the request applies at round 1; the target is in none of the run's rounds
    assert request_round(results) == 1
    assert [r["phase"] for r in rounds(results)] == ["recovery"]
    assert_forgotten(results, 1)
    assert all(r["participants"] == [0, 2] for r in rounds(results))
    assert results["models"]["negated"]["test_acc"] < results["models"]["original"]["test_acc"]


def _drop(folder: Path, name: str, text: str) -> None:
    """Write a request file atomically: a temp name the watcher ignores, then rename."""
    tmp = folder / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, folder / name)


def test_operator_request_file_during_a_live_run(deployment, tmp_path):
    out, requests = tmp_path / "out", tmp_path / "requests"
    requests.mkdir()
    proc = deployment.run_async(
        f"out-dir='{out}' request-dir='{requests}' "
        f"num-train-rounds=2 recovery.rounds=2 recovery.run-to-cap=true unlearn.clients='' {FAST}",
        name="live-run",
    )
    log_path = deployment.work / "live-run.log"
    # round 1 is over once round 2 starts: then an operator drops two files
    assert wait_for_text(log_path, "[ROUND 2/", timeout=300, proc=proc), deployment.log("live-run")[
        -3000:
    ]
    _drop(requests, "bad.json", json.dumps({"targets": [], "requested_by": "ops"}))
    _drop(
        requests,
        "ok.json",
        json.dumps({"targets": ["0"], "by": "partition-id", "requested_by": "ops"}),
    )
    proc.wait(timeout=400)
    log = deployment.log("live-run")
    assert proc.returncode == 0, log[-4000:]

    # the malformed one: moved to rejected/ with its reason, a WARNING naming it, no stop
    assert (requests / "rejected" / "bad.json").is_file()
    assert not (requests / "bad.json").exists()
    reason = next((requests / "rejected").glob("bad.json*reason*")).read_text()
    assert "'targets' must be a non-empty list" in reason
    warning = [line for line in log.splitlines() if "WARNING" in line and "bad.json" in line]
    assert warning, log[-3000:]
    assert "'targets' must be a non-empty list" in warning[0]
    # the valid one: applied at the next boundary and moved to accepted/
    assert (requests / "accepted" / "ok.json").is_file()
    assert not (requests / "ok.json").exists()

    results = load_results(out)
    assert [r["round"] for r in rounds(results)] == [1, 2, 3, 4]
    (req,) = results["requests"]
    assert req["request"]["requested_by"].startswith("ops")  # "ops (file ok.json)"
    assert req["round"] in (2, 3)
    assert [t["value"] for t in req["targets"]] == ["0"]
    assert_forgotten(results, 0)  # in round 1 (and 2 if the request came at 3), never after
    assert all(r["phase"] == "recovery" for r in rounds(results) if r["round"] >= req["round"])


def test_client_initiated_forget_me(tmp_path):
    out = tmp_path / "out"
    with Deployment(tmp_path / "work", connection="forget-me") as dep:
        dep.start_superlink()
        for i in range(NODES):
            dep.start_supernode(i, NODES, extra_config="forget-me=true" if i == 2 else "")
        dep.wait_nodes(NODES)
        log = dep.run(
            f"out-dir='{out}' num-train-rounds=2 recovery.rounds=1 unlearn.clients='' {FAST}"
        )
        node_id = int(re.search(r"SuperNode ID: (\d+)", dep.log("supernode-2")).group(1))
    assert "asks to be forgotten" in log
    results = load_results(out)
    (req,) = results["requests"]
    assert req["request"]["requested_by"].startswith("client:")
    assert req["request"]["requested_by"] == f"client:{node_id}"
    assert [t["node_id"] for t in req["targets"]] == [node_id]
    assert results["excluded_node_ids"] == [node_id]
    # honoured at the next round boundary; the node is in no round from then on
    assert_forgotten(results, 2)
    assert [r["round"] for r in rounds(results)] == [1, 2, 3]
    assert all(
        2 not in r["participants"] and r["participants"]
        for r in rounds(results)
        if r["round"] >= req["round"]
    )
    assert not [p for p in dep.stopped if pid_alive(p)]
