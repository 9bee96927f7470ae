"""examples/deploy/local.sh: a SuperLink and 3 SuperNodes as processes, `flwr run` over them.

Checks results.json (the target trained before the request and in no round after it) and
that every process the script started, and their children, is gone afterwards.
"""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from tests.deploy_utils import (
    DEPLOY,
    FAST,
    ROOT,
    assert_forgotten,
    base_env,
    free_port,
    load_results,
    pid_alive,
    processes_mentioning,
    request_round,
    run_script,
    wait_for_text,
)

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py


def test_local_sh_trains_unlearns_recovers_and_cleans_up(tmp_path):
    out, work, port = tmp_path / "out", tmp_path / "work", free_port()
    env = base_env(tmp_path / "flwr-home")
    proc = run_script(
        [
            "bash",
            str(DEPLOY / "local.sh"),
            "--nodes",
            "3",
            "--port",
            str(port),
            "--train-rounds",
            "2",
            "--recovery-rounds",
            "5",
            "--unlearn",
            "1",
            "--out",
            str(out),
            "--work",
            str(work),
            # a key the script sets itself (from --recovery-rounds): the later value wins
            "--run-config",
            f"{FAST} recovery.rounds=2 recovery.run-to-cap=true",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert proc.stdout.strip().endswith(f"{out}/results.json")
    # the connection the script registered
    assert f'address = "127.0.0.1:{port}"' in (tmp_path / "flwr-home" / "config.toml").read_text()

    results = load_results(out)
    assert [r["round"] for r in results["rounds"]] == [0, 1, 2, 3, 4]
    assert request_round(results) == 3
    assert [r["phase"] for r in results["rounds"][1:]] == ["train", "train", "recovery", "recovery"]
    assert_forgotten(results, 1)
    assert all(r["participants"] == [0, 2] for r in results["rounds"][3:])
    assert len(results["excluded_node_ids"]) == 1

    # everything started (SuperLink, 3 SuperNodes, flwr run, their SuperExecs and apps) is gone
    names = [line.split()[0] for line in (work / "pids").read_text().splitlines()]
    assert names[:4] == ["superlink", "supernode-0", "supernode-1", "supernode-2"]
    pids = _started_and_stopped(work)
    assert len(pids) > 6  # with the SuperExecs found as descendants at the stop
    assert not [p for p in pids if pid_alive(p)]
    assert not processes_mentioning(f":{port}"), processes_mentioning(f":{port}")
    assert not processes_mentioning(str(work))


def _started_and_stopped(work) -> set[int]:
    started = {int(line.split()[1]) for line in (work / "pids").read_text().splitlines() if line}
    return started | {int(p) for p in (work / "stopped-pids").read_text().split()}


def test_local_sh_stops_everything_when_the_run_fails(tmp_path):
    work, port = tmp_path / "work", free_port()
    proc = run_script(
        [
            "bash",
            str(DEPLOY / "local.sh"),
            "--nodes",
            "2",
            "--port",
            str(port),
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(work),
            "--unlearn",
            "7",
        ],  # no such partition: the ServerApp rejects it before round 1
        cwd=ROOT,
        env=base_env(tmp_path / "flwr-home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    # flwr run exits 0 here; the script asks for the run's status and says why, last
    assert re.fullmatch(
        r"error: run \d+ finished:failed: .*unlearning target partition-id=7 "
        r".*matches none of the 2 connected nodes.*",
        proc.stderr.strip().splitlines()[-1],
    ), proc.stderr[-2000:]
    assert not (tmp_path / "out" / "results.json").exists()
    assert len(_started_and_stopped(work)) >= 3
    assert not [p for p in _started_and_stopped(work) if pid_alive(p)]
    assert not processes_mentioning(f":{port}")


def test_local_sh_refuses_a_bad_value_before_starting_anything(tmp_path):
    work = tmp_path / "work"
    proc = run_script(
        [
            "bash",
            str(DEPLOY / "local.sh"),
            "--nodes",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(work),
            "--run-config",
            "model='transformer'",
        ],
        cwd=ROOT,
        env=base_env(tmp_path / "flwr-home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (
        "error: unknown model 'transformer'; choose one of: cnn, mlp, resnet18, vit"
        in proc.stderr.splitlines()
    ), proc.stderr
    assert (work / "pids").read_text() == ""  # no SuperLink, no SuperNode was started


def test_local_sh_stops_everything_on_sigterm_mid_run(tmp_path):
    work, port = tmp_path / "work", free_port()
    proc = subprocess.Popen(
        [
            "bash",
            str(DEPLOY / "local.sh"),
            "--nodes",
            "2",
            "--port",
            str(port),
            "--train-rounds",
            "3",
            "--out",
            str(tmp_path / "out"),
            "--work",
            str(work),
            "--run-config",
            FAST,
        ],
        cwd=ROOT,
        env=base_env(tmp_path / "flwr-home"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_text(work / "flwr-run.log", "configure_train", timeout=240, proc=proc)
        # the ServerApp and ClientApps are running now
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "terminated" in err and "stopping everything started" in err
    pids = _started_and_stopped(work)
    assert len(pids) >= 5
    assert not [p for p in pids if pid_alive(p)]
    assert not processes_mentioning(f":{port}")
