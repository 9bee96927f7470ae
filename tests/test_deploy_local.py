"""examples/deploy/local.sh: a SuperLink and 3 SuperNodes as processes, `flwr run` over them.

Checks results.json (the target trained before the request and in no round after it) and
that every process the script started, and their children, is gone afterwards.
"""

from __future__ import annotations

import subprocess

from tests.deploy_utils import (
    DEPLOY, FAST, ROOT, assert_forgotten, base_env, free_port, load_results, pid_alive,
    processes_mentioning, request_round,
)


def test_local_sh_trains_unlearns_recovers_and_cleans_up(tmp_path):
    out, work, port = tmp_path / "out", tmp_path / "work", free_port()
    env = base_env(tmp_path / "flwr-home")
    proc = subprocess.run(
        ["bash", str(DEPLOY / "local.sh"), "--nodes", "3", "--port", str(port),
         "--train-rounds", "2", "--recovery-rounds", "2", "--unlearn", "1",
         "--out", str(out), "--work", str(work), "--run-config", FAST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
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
    started = [int(line.split()[1]) for line in (work / "pids").read_text().split("\n") if line]
    assert len(started) >= 5
    stopped = [int(p) for p in (work / "stopped-pids").read_text().split()]
    assert set(started) - {int(l.split()[1]) for l in (work / "pids").read_text().splitlines()
                           if l.startswith(("flwr-run", "tail"))} <= set(stopped)
    assert not [p for p in set(started) | set(stopped) if pid_alive(p)]
    assert not processes_mentioning(f":{port}"), processes_mentioning(f":{port}")
    assert not processes_mentioning(str(work))
