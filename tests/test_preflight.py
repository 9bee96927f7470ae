"""Bad runs are refused before round 1 and before the out-dir changes: the checks that
need the data or the nodes, the out-dir lock, moving a previous run aside only after every
check passed, and resuming a moved run folder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from flwr.app import ArrayRecord
from flwr.clientapp import ClientApp

from not_flower.app import client_app as ca
from not_flower.app.preflight import (
    check_checkpoint_meta,
    check_classes,
    check_partitions,
    check_samples,
    check_someone_left,
)
from not_flower.app.run_state import load_run_state
from not_flower.app.server_app import run_experiment
from not_flower.common.config import ConfigError, parse_run_config
from not_flower.common.outdir import OutDirError, check_out_dir, lock_out_dir, unlock_out_dir
from not_flower.common.store import save_checkpoint
from not_flower.task.models import build_model
from strategies.identity import answer_identity, identity_mod
from strategies.unlearning_request import UnlearningError
from tests.fakegrid import FakeGrid, FakeNode


def _grid(run_config, nodes: int = 3) -> FakeGrid:
    app = ClientApp(mods=[identity_mod])
    app.train()(ca.train_fn)
    app.evaluate()(ca.evaluate_fn)
    app.query("identity")(answer_identity)
    fakes = {}
    for pid in range(nodes):
        node = FakeNode(app, {"partition-id": pid, "num-partitions": nodes})
        node.context.run_config = dict(run_config)
        fakes[900 + pid] = node
    return FakeGrid(fakes)


def _snapshot(folder) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _refused(config: dict, nodes: int = 3, error=ConfigError, match: str = "") -> FakeGrid:
    """Run the app on a fake grid; it must raise ``error`` before sending any train message."""
    grid = _grid(config, nodes)
    with pytest.raises(error, match=match):
        run_experiment(
            grid, parse_run_config(config), __import__("pathlib").Path(config["out-dir"])
        )
    assert not any(kind.startswith("train") for kind, _ in grid.sent), "trained before refusing"
    return grid


# ----------------------------------------------------------------- pure checks ----------
def test_classes_out_of_range_name_the_value_and_the_range():
    cfg = parse_run_config({"unlearn.mode": "class", "unlearn.classes": "3,42"})
    with pytest.raises(
        ConfigError,
        match=r"unlearn.classes 42: out of range; .*10 classes "
        r"\(labels 0 to 9\)",
    ):
        check_classes(cfg, 10)
    check_classes(parse_run_config({"unlearn.mode": "class", "unlearn.classes": "9"}), 10)


def test_samples_out_of_range_name_the_value_and_the_client_size():
    cfg = parse_run_config({"unlearn.mode": "instance", "unlearn.samples": "5,999999"})
    with pytest.raises(
        ConfigError,
        match=r"unlearn.samples 999999: out of range; client 0 has "
        r"120 training examples \(sample ids 0 to 119\)",
    ):
        check_samples(cfg, lambda pid: 120, 3)
    check_samples(
        parse_run_config({"unlearn.mode": "instance", "unlearn.samples": "119"}), lambda pid: 120, 3
    )


def test_every_client_targeted_is_refused_one_left_is_fine():
    with pytest.raises(
        ConfigError,
        match=r"unlearn.clients '0,1;2' names every one of the 3 "
        "clients",
    ):
        check_someone_left(parse_run_config({"unlearn.clients": "0,1;2"}), 3)
    check_someone_left(parse_run_config({"unlearn.clients": "0,1"}), 3)


def test_a_client_without_examples_is_refused_naming_train_subset():
    cfg = parse_run_config({"train-subset": 3})
    with pytest.raises(
        ConfigError,
        match=r"train-subset=3 with 3 clients and val-fraction=0.1 "
        r"leaves client 0 1 training and 0 validation",
    ):
        check_partitions(cfg, [(1, 0)] * 3)
    check_partitions(parse_run_config({"train-subset": 3, "val-fraction": 0}), [(1, 0)] * 3)


def test_checkpoint_of_another_data_set_is_refused_naming_both(tmp_path):
    model = build_model("cnn", (1, 8, 8), 10)
    path = save_checkpoint(
        tmp_path / "fmnist.pt",
        ArrayRecord(model.state_dict()),
        {"dataset": "fashion-mnist", "model": "cnn", "input_shape": [1, 28, 28], "num_classes": 10},
    )
    run = {"dataset": "digits", "model": "cnn", "input_shape": [1, 8, 8], "num_classes": 10}
    with pytest.raises(
        ConfigError,
        match=r"dataset: checkpoint 'fashion-mnist', run 'digits'; "
        r"input_shape: checkpoint \[1, 28, 28\], run \[1, 8, 8\]",
    ):
        check_checkpoint_meta(str(path), run)
    check_checkpoint_meta(
        str(path), {**run, "dataset": "fashion-mnist", "input_shape": (1, 28, 28)}
    )


def test_retrain_with_init_checkpoint_is_refused():
    with pytest.raises(
        ConfigError, match="method 'retrain' .* cannot start from init-checkpoint '/x.pt'"
    ):
        parse_run_config({"method": "retrain", "init-checkpoint": "/x.pt"})


def test_out_dir_under_a_file_names_the_key(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        OutDirError,
        match=r"out-dir '.*file/run' is under the file .*file; "
        "set out-dir to a folder path",
    ):
        check_out_dir(tmp_path / "file" / "run", resume=False, overwrite=False)
    with pytest.raises(OutDirError, match=r"out-dir '.*file' is a file"):
        lock_out_dir(tmp_path / "file")


def test_truncated_state_json_names_the_file(tmp_path):
    (tmp_path / "state.json").write_text('{"version": 1, "round": 3, "conf')
    with pytest.raises(ValueError, match=r"resume: .*state.json is not a readable state file"):
        load_run_state(tmp_path, parse_run_config({"resume": True}))


def test_a_moved_run_folder_resumes(tmp_path):
    cfg = parse_run_config({"out-dir": str(tmp_path / "a"), "resume": True})
    state = {
        "version": 1,
        "round": 2,
        "applied": [],
        "pending": [],
        "forget_specs": {},
        "state": {"num_partitions": 3, "reference_val_acc": None, "forget_ids": []},
        "results": {},
        "config": {
            k: v
            for k, v in json.loads(
                json.dumps(
                    __import__("not_flower.common.config", fromlist=["x"]).to_run_config(cfg)
                )
            ).items()
            if k not in ("resume", "overwrite", "out-dir")
        },
    }
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "state.json").write_text(json.dumps(state))
    save_checkpoint(
        tmp_path / "b" / "checkpoint-latest.pt",
        ArrayRecord(build_model("cnn", (1, 8, 8), 10).state_dict()),
        {"round": 2},
    )
    moved = parse_run_config({"out-dir": str(tmp_path / "b"), "resume": True})
    assert load_run_state(tmp_path / "b", moved).round == 2


# ------------------------------------------------- the app refuses before round 1 ----------
BASE = {"num-train-rounds": 1, "recovery.rounds": 1, "local-epochs": 1, "train-subset": 300}


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"unlearn.mode": "class", "unlearn.classes": "42"}, "unlearn.classes 42: out of range"),
        (
            {"unlearn.mode": "instance", "unlearn.samples": "999999"},
            r"unlearn.samples 999999: out of range; client 0 has \d+ training examples",
        ),
        ({"unlearn.clients": "0,1,2"}, "names every one of the 3 clients"),
        ({"train-subset": 3}, "train-subset=3 with 3 clients"),
    ],
)
def test_the_app_refuses_bad_values_before_round_1(tmp_path, extra, match):
    _refused({**BASE, **extra, "out-dir": str(tmp_path)}, match=match)
    assert not (tmp_path / "state.json").exists()


def test_the_app_refuses_a_checkpoint_of_another_data_set(tmp_path):
    model = build_model("cnn", (1, 8, 8), 10)
    path = save_checkpoint(
        tmp_path / "other.pt",
        ArrayRecord(model.state_dict()),
        {"dataset": "fashion-mnist", "model": "cnn", "input_shape": [1, 28, 28], "num_classes": 10},
    )
    _refused(
        {
            **BASE,
            "num-train-rounds": 0,
            "init-checkpoint": str(path),
            "out-dir": str(tmp_path / "run"),
        },
        match=r"init-checkpoint .*\(dataset: checkpoint 'fashion-mnist', run 'digits'",
    )


# -------------------------------------------------- a failed run moves nothing aside -------
@pytest.mark.parametrize(
    "extra, error, match",
    [
        ({"unlearn.clients": "99"}, UnlearningError, "partition-id=99"),
        ({"unlearn.mode": "class", "unlearn.classes": "42"}, ConfigError, "unlearn.classes 42"),
        (
            {"init-checkpoint": "/nonexistent/x.pt", "num-train-rounds": 0},
            FileNotFoundError,
            "x.pt",
        ),
    ],
)
def test_overwrite_moves_nothing_when_the_run_fails_its_checks(tmp_path, extra, error, match):
    for name in ("results.json", "state.json", "checkpoint-final.pt", "unlearning-log.jsonl"):
        (tmp_path / name).write_text(name)
    before = _snapshot(tmp_path)
    _refused(
        {**BASE, **extra, "overwrite": True, "out-dir": str(tmp_path)}, error=error, match=match
    )
    assert _snapshot(tmp_path) == before
    assert not list(tmp_path.glob("previous-*"))


# --------------------------------------------------------------- the out-dir lock -------
HOLDER = """
import sys, time
from pathlib import Path
from not_flower.common.outdir import lock_out_dir
lock_out_dir(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.e2e  # starts a second Python process that holds the lock
def test_a_second_run_on_a_locked_out_dir_stops_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            OutDirError,
            match=rf"out-dir {out} is in use by another run "
            rf"\(process {holder.pid} holds",
        ):
            lock_out_dir(out)
        grid = _refused({**BASE, "out-dir": str(out)}, error=OutDirError, match="in use")
        assert grid.sent == []  # not even the identity query
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert (out / ".lock").exists()  # stale lock file of a dead process: no obstacle
    fd = lock_out_dir(out)
    assert (out / ".lock").read_text().strip() == str(os.getpid())
    unlock_out_dir(fd)
    fd = lock_out_dir(out)  # released: can be taken again
    unlock_out_dir(fd)
