"""Reusing an out-dir: refused unless resume or overwrite; overwrite moves, never deletes."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pytest
from flwr.clientapp import ClientApp

from not_flower.app import client_app as ca
from not_flower.app.server_app import run_experiment
from not_flower.common.config import ConfigError, parse_run_config
from not_flower.common.outdir import (
    OutDirError,
    check_out_dir,
    move_aside,
    prepare_out_dir,
    run_files,
)
from not_flower.common.store import load_checkpoint
from strategies.aggregate_utils import EmptyRoundsError
from strategies.identity import answer_identity, identity_mod
from tests.fakegrid import FakeGrid, FakeNode


def _finished_run(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in (
        "results.json",
        "state.json",
        "checkpoint-final.pt",
        "checkpoint-latest.pt",
        "unlearning-record.json",
        "unlearning-log.jsonl",
    ):
        (folder / name).write_text(name)
    (folder / "federaser-history").mkdir()
    (folder / "notes.txt").write_text("mine")  # not a run's file: never moved


def test_an_empty_missing_or_unrelated_folder_is_fine(tmp_path):
    assert check_out_dir(tmp_path / "nope", resume=False, overwrite=False) == []
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "previous-20260101-000000").mkdir()
    assert run_files(tmp_path) == []
    assert prepare_out_dir(tmp_path, resume=False, overwrite=False) is None


def test_a_finished_run_is_refused_naming_its_files_and_both_keys(tmp_path):
    _finished_run(tmp_path)
    with pytest.raises(OutDirError) as err:
        check_out_dir(tmp_path, resume=False, overwrite=False)
    text = str(err.value)
    assert f"out-dir {tmp_path} holds another run's results (checkpoint-final.pt, " in text
    assert "Set resume = true to continue" in text and "overwrite = true to move" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            "results.json",
            "state.json",
            "checkpoint-final.pt",
            "checkpoint-latest.pt",
            "unlearning-record.json",
            "unlearning-log.jsonl",
            "federaser-history",
            "notes.txt",
        ]
    )


def test_resume_needs_a_state_json(tmp_path):
    _finished_run(tmp_path)
    assert check_out_dir(tmp_path, resume=True, overwrite=False) == []
    (tmp_path / "state.json").unlink()
    with pytest.raises(OutDirError, match="resume = true, but out-dir .* has no state.json"):
        check_out_dir(tmp_path, resume=True, overwrite=False)


def test_overwrite_moves_the_previous_run_aside_and_deletes_nothing(tmp_path):
    _finished_run(tmp_path)
    files = check_out_dir(tmp_path, resume=False, overwrite=True)
    assert len(files) == 7 and tmp_path / "notes.txt" not in files
    now = datetime(2026, 12, 3, 9, 0, 0, tzinfo=timezone.utc)
    target = move_aside(tmp_path, files, now=now)
    assert target == tmp_path / "previous-20261203-090000"
    assert (target / "checkpoint-final.pt").read_text() == "checkpoint-final.pt"
    assert (target / "federaser-history").is_dir()
    assert run_files(tmp_path) == [] and (tmp_path / "notes.txt").read_text() == "mine"
    _finished_run(tmp_path)  # a second overwrite in the same second gets its own folder
    assert move_aside(tmp_path, run_files(tmp_path), now=now).name == "previous-20261203-090000-2"


def test_overwrite_refuses_to_move_the_init_checkpoint_away(tmp_path):
    _finished_run(tmp_path)
    with pytest.raises(OutDirError, match="init-checkpoint .* overwrite = true would move away"):
        check_out_dir(
            tmp_path,
            resume=False,
            overwrite=True,
            init_checkpoint=str(tmp_path / "checkpoint-final.pt"),
        )


def test_resume_and_overwrite_exclude_each_other():
    with pytest.raises(ConfigError, match="set one of them, not both"):
        parse_run_config({"resume": True, "overwrite": True})
    assert parse_run_config({"overwrite": True}).overwrite is True


# ------------------------------------------------------- through the ServerApp's run
BROKEN = {"train": False}


def _app() -> ClientApp:
    """not-flower's ClientApp, whose training can be made to crash."""
    app = ClientApp(mods=[identity_mod])

    @app.train()
    def train(msg, context):
        if BROKEN["train"]:
            raise RuntimeError("disk full")
        return ca.train_fn(msg, context)

    app.evaluate()(ca.evaluate_fn)
    app.query("identity")(answer_identity)
    return app


def _grid(run_config) -> FakeGrid:
    app = _app()
    nodes = {}
    for pid in range(2):
        node = FakeNode(app, {"partition-id": pid, "num-partitions": 2})
        node.context.run_config = dict(run_config)
        nodes[700 + pid] = node
    return FakeGrid(nodes)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CONFIG = {
    "num-train-rounds": 3,
    "recovery.rounds": 0,
    "unlearn.clients": "",
    "local-epochs": 1,
    "max-empty-rounds": 1,
}


@pytest.mark.e2e  # runs the whole app in process (tens of seconds)
def test_second_run_refused_then_overwrite_keeps_the_old_files(tmp_path):
    config = {**CONFIG, "out-dir": str(tmp_path)}
    first = run_experiment(_grid(config), parse_run_config(config), tmp_path)
    before = {p.name: _sha(p) for p in run_files(tmp_path)}
    assert {"results.json", "state.json", "checkpoint-final.pt"} <= set(before)

    grid = _grid(config)
    with pytest.raises(OutDirError, match="holds another run's results"):
        run_experiment(grid, parse_run_config(config), tmp_path)
    assert grid.sent == []  # refused before anything was sent
    assert {p.name: _sha(p) for p in run_files(tmp_path)} == before

    again = {**config, "overwrite": True, "seed": 1}
    second = run_experiment(_grid(again), parse_run_config(again), tmp_path)
    (previous,) = tmp_path.glob("previous-*")
    assert {p.name: _sha(p) for p in previous.iterdir()} == before  # moved, byte for byte
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["config"]["seed"] == 1 and stored["models"] == second["models"]
    assert json.loads((previous / "results.json").read_text())["models"] == first["models"]


@pytest.mark.e2e  # runs the whole app in process (tens of seconds)
def test_failed_run_keeps_its_last_good_checkpoint_and_resumes(tmp_path):
    config = {**CONFIG, "out-dir": str(tmp_path)}
    grid = _grid(config)

    BROKEN["train"] = False
    strategy_rounds = []
    original_send = grid.send_and_receive

    def send(messages, *, timeout=None):
        messages = list(messages)
        if any(m.metadata.message_type == "train" for m in messages):
            strategy_rounds.append(1)
            BROKEN["train"] = len(strategy_rounds) >= 2  # round 2 onwards: every client crashes
        return original_send(messages, timeout=timeout)

    grid.send_and_receive = send
    try:
        with pytest.raises(EmptyRoundsError, match=r"round 2 aggregated no train reply \(limit 1"):
            run_experiment(grid, parse_run_config(config), tmp_path)
    finally:
        BROKEN["train"] = False
    state = json.loads((tmp_path / "state.json").read_text())
    _, meta = load_checkpoint(tmp_path / "checkpoint-latest.pt")
    assert state["round"] == 1 and meta["round"] == 1  # the last good round, intact
    assert not (tmp_path / "results.json").exists()

    with pytest.raises(OutDirError, match="Set resume = true"):
        run_experiment(_grid(config), parse_run_config(config), tmp_path)
    resumed = {**config, "resume": True}
    results = run_experiment(_grid(resumed), parse_run_config(resumed), tmp_path)
    assert [r["round"] for r in results["rounds"]] == [0, 1, 2, 3]
    assert results["resumed_from_round"] == [1]
    assert all(r["participants"] == [0, 1] for r in results["rounds"][1:])
    assert not list(tmp_path.glob("previous-*"))
