"""Kill the ServerApp at every durable write of a run with a request, resume, check;
and `python -m not_flower.audit verify RUN_DIR` on edited records and swapped checkpoints.

The run is the real ServerApp (``run_experiment``) over real ClientApps in process
(``tests/fakegrid.py``), with a small digits CNN, 3 clients, 2 training and 2 recovery
rounds and client 1 forgotten at round 3. :mod:`not_flower.common.faults` stops it at the N-th
durable write, before or after it (in process: :class:`~not_flower.common.faults.SimulatedKill`;
in a subprocess: ``os._exit``, as a SIGKILL). Every time, after resuming: exactly one
negation (one request, one ``applied`` and one ``done`` record in the log, the same
``id``), client 1 in no round from the request on (training or evaluation), the record's
hashes those of the checkpoints, and ``python -m not_flower.audit verify RUN_DIR`` passing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from not_flower.app.run_state import RunFinishedError
from not_flower.audit.cli import sha256_arrays
from not_flower.audit.verify import verify_run_dir
from not_flower.common import faults
from not_flower.common.config import parse_run_config
from not_flower.common.outdir import OutDirError
from not_flower.common.store import load_checkpoint
from strategies.negation_arrays import negate

pytestmark = pytest.mark.e2e  # whole runs of the app in process, and a subprocess

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {
    "seed": 0,
    "num-train-rounds": 2,
    "recovery.rounds": 2,
    "unlearn.clients": "1",
    "lr": 0.02,
    "local-epochs": 1,
    "train-subset": 600,
    "test-subset": 300,
    "recovery.run-to-cap": True,  # fixed length: the stopping rule reports, never ends it
}
#: Durable writes of the uninterrupted run: every one is a kill point, before and after.
DURABLE_WRITES = 18


def run(config: dict, out: Path) -> dict:
    """The ServerApp's run over 3 in-process nodes."""
    # pylint: disable=import-outside-toplevel
    from not_flower.app.server_app import run_experiment
    from tests.golden_runs import grid_for

    config = {**config, "out-dir": str(out)}
    grid = grid_for(config)  # a new Flower run id each time, as on a real resume
    return run_experiment(grid, parse_run_config(config), out, run_id=grid.run.run_id)


def resume(out: Path, config: dict = CONFIG) -> None:
    """What an operator does after a kill: resume; start afresh if no round was durable."""
    try:
        run({**config, "resume": True}, out)
    except RunFinishedError:  # killed after its last write: nothing to do
        pass
    except OutDirError as err:  # no state.json: no round was durable
        assert "no state.json" in str(err) or "holds no run to resume" in str(err), err
        run({**config, "overwrite": True}, out)  # moves the killed attempt's files aside


def check_run(out: Path, request_round: int = 3, target: int = 1) -> None:
    """One negation, the target gone from the request on, hashes and the verifier."""
    results = json.loads((out / "results.json").read_text())
    assert [r["round"] for r in results["rounds"]] == list(range(5))
    assert [(r["round"], r["partition_ids"]) for r in results["requests"]] == [
        (request_round, [target])
    ]
    for row in results["rounds"][request_round:]:
        assert target not in row["participants"] and target not in row["evaluated"]
    log = [
        json.loads(line)["record"]
        for line in (out / "unlearning-log.jsonl").read_text().splitlines()
    ]
    assert [r["status"] for r in log] == ["applied", "done"] and log[0]["id"] == log[1]["id"]
    # a resumed run has a new Flower run id: the record keeps the one that applied it
    assert log[0]["run_id"] == log[1]["run_id"] is not None
    record = json.loads((out / "unlearning-record.json").read_text())
    assert record == log[1]
    original, _ = load_checkpoint(out / "checkpoint-original.pt")
    final, _ = load_checkpoint(out / "checkpoint-final.pt")
    hashes = record["model_sha256"]
    assert hashes["before_negation"] == sha256_arrays(original)
    assert hashes["after_negation"] == sha256_arrays(negate(original, record["keys_negated"]))
    assert hashes["after_recovery"] == sha256_arrays(final)
    assert [r["evaluated"] for r in record["recovery_rounds"]] == [[0, 2]] * (5 - request_round)
    problems, _ = verify_run_dir(out)
    assert problems == []
    state = json.loads((out / "state.json").read_text())["state"]
    assert [(r["round"], r["status"]) for r in state["requests"]] == [(request_round, "done")]


def _writes(tmp_path: Path) -> list[str]:
    """The durable writes of an uninterrupted run, in order (file names)."""
    faults.arm(None)
    run(CONFIG, tmp_path / "reference")
    check_run(tmp_path / "reference")
    return [Path(p).name for p in faults.writes()]


def test_killed_at_every_durable_write_then_resumed(tmp_path):
    writes = _writes(tmp_path)
    assert len(writes) == DURABLE_WRITES, writes
    points = [(n, stage) for n in range(1, len(writes) + 1) for stage in faults.STAGES]
    survived, in_recovery = 0, 0
    for at, stage in points:
        out = tmp_path / f"kill-{at}-{stage}"
        faults.arm(at, stage)
        try:
            with pytest.raises(faults.SimulatedKill):
                run(CONFIG, out)
        finally:
            faults.arm(None)
        record = out / "unlearning-record.json"
        if record.is_file() and json.loads(record.read_text())["status"] == "recovering":
            assert verify_run_dir(out)[0] == []  # killed mid-recovery: the record verifies
            in_recovery += 1
        resume(out)
        check_run(out)
        before = (out / "checkpoint-final.pt").read_bytes()
        with pytest.raises(RunFinishedError, match="already finished"):  # a finished run
            run({**CONFIG, "resume": True}, out)
        assert (out / "checkpoint-final.pt").read_bytes() == before
        survived += 1
    assert survived == len(points) == 2 * DURABLE_WRITES and in_recovery >= 1


def test_sigkill_between_checkpoint_and_state_at_the_request_never_negates_twice(tmp_path):
    writes = _writes(tmp_path)
    # the first checkpoint-latest.pt after the request's boundary (round 3's), written
    # before its state.json: the process ends right after it, as with SIGKILL
    at = writes.index("checkpoint-latest.pt", writes.index("checkpoint-original.pt")) + 1
    out = tmp_path / "run"
    code = (
        "import json, sys; from pathlib import Path; from tests.test_fault_injection "
        "import run; run(json.loads(sys.argv[1]), Path(sys.argv[2]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(CONFIG), str(out)],
        cwd=ROOT,
        env={**os.environ, faults.ENV: f"{at}:after"},
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    _, meta = load_checkpoint(out / "checkpoint-latest.pt")
    assert meta["round"] == 3 and json.loads((out / "state.json").read_text())["round"] == 2
    # the record was written when the request was applied: the kill did not lose it
    applied = json.loads((out / "unlearning-record.json").read_text())
    assert applied["status"] == "applied" and applied["applied_round"] == 3
    assert verify_run_dir(out)[0] == []
    original = (out / "checkpoint-original.pt").read_bytes()
    run({**CONFIG, "resume": True}, out)
    assert (out / "checkpoint-original.pt").read_bytes() == original  # never rewritten
    check_run(out)


def test_two_request_files_for_one_client_give_one_negation_and_one_record(tmp_path):
    requests = tmp_path / "requests"
    requests.mkdir()
    for name in ("a.json", "b.json"):
        (requests / name).write_text(json.dumps({"targets": ["1"], "requested_by": name}))
    config = {**CONFIG, "unlearn.clients": "", "request-dir": str(requests)}
    out = tmp_path / "run"
    faults.arm(3, "after")  # stopped after the request's record, before any round is durable
    try:
        with pytest.raises(faults.SimulatedKill):
            run(config, out)
    finally:
        faults.arm(None)
    assert sorted(p.name for p in requests.glob("*.json")) == ["a.json"]  # not yet settled
    assert (requests / "rejected" / "b.json").is_file()
    assert (
        "already requested for this round boundary"
        in (requests / "rejected" / "b.json.reason.txt").read_text()
    )
    resume(out, config)  # the file is applied again, to the same model: the same record
    check_run(out, request_round=1)
    assert [p.name for p in (requests / "accepted").iterdir()] == ["a.json"]


def test_verify_run_dir_catches_an_edited_record_and_a_swapped_checkpoint(tmp_path, capsys):
    from not_flower.audit.cli import main  # pylint: disable=import-outside-toplevel

    out = tmp_path / "run"
    run(CONFIG, out)
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {out}: log ")
    record = out / "unlearning-record.json"
    text = record.read_text()
    record.write_text(
        text.replace('"requested_by": "operator (run config)"', '"requested_by": "someone else"')
    )
    assert main(["verify", str(out)]) == 1
    assert "unlearning-record.json: not a record the audit log holds" in capsys.readouterr().out
    record.write_text(text)
    (out / "checkpoint-final.pt").write_bytes((out / "checkpoint-original.pt").read_bytes())
    assert main(["verify", str(out)]) == 1
    assert (
        "checkpoint-final.pt: its hash differs from the record's after_recovery"
        in capsys.readouterr().out
    )
