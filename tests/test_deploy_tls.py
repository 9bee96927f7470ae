"""examples/deploy/tls_auth.sh: TLS, SuperNode authentication, a client named by its
SuperNode name; the target restarted during recovery keeps its node id and stays excluded.
"""

from __future__ import annotations

import re
import shutil

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
    rounds,
    run_script,
)

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_auth_named_target_restarted_keeps_id_and_stays_excluded(tmp_path):
    out, work, port = tmp_path / "out", tmp_path / "work", free_port()
    proc = run_script(
        [
            "bash",
            str(DEPLOY / "tls_auth.sh"),
            "--nodes",
            "3",
            "--port",
            str(port),
            "--train-rounds",
            "2",
            "--recovery-rounds",
            "2",
            "--unlearn",
            "site-1",
            "--restart-node",
            "1",
            "--restart-at-round",
            "3",
            "--out",
            str(out),
            "--work",
            str(work),
            "--run-config",
            FAST,
        ],
        cwd=ROOT,
        env=base_env(tmp_path / "flwr-home"),
        capture_output=True,
        text=True,
        timeout=400,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # TLS on: the connection names the CA, the nodes do not run --insecure
    config = (tmp_path / "flwr-home" / "config.toml").read_text()
    assert "root-certificates" in config and "insecure" not in config
    assert "--enable-supernode-auth" in log and "--insecure" not in log
    # authentication on: a node with an unregistered key was refused and exited
    intruder = (work / "intruder.log").read_text()
    assert int((work / "unregistered-exit").read_text()) != 0
    assert "Exit Code: 305" in intruder and "SuperNode ID" not in intruder

    registered = dict(line.split() for line in (work / "registered.txt").read_text().splitlines())
    assert sorted(registered) == ["site-0", "site-1", "site-2"]
    target_id = int(registered["site-1"])

    # every start of every node logged its registered id; site-1 started twice, same id
    for i in range(3):
        ids = re.findall(r"SuperNode ID: (\d+)", (work / f"supernode-{i}.log").read_text())
        assert ids == [registered[f"site-{i}"]]
    again = re.findall(r"SuperNode ID: (\d+)", (work / "supernode-1-restarted.log").read_text())
    assert again == [str(target_id)]
    assert "back online before round 4" in (work / "restarted").read_text()

    results = load_results(out)
    req = results["requests"][0]
    assert req["round"] == 3
    assert [(t["name"], t["node_id"]) for t in req["targets"]] == [("site-1", target_id)]
    assert results["excluded_node_ids"] == [target_id]
    assert_forgotten(results, 1)  # site-1 is partition 1: in rounds 1-2, in no recovery round
    assert [r["participants"] for r in rounds(results)] == [[0, 1, 2], [0, 1, 2], [0, 2], [0, 2]]

    # the node list at the end: the target is the same registered node, online again
    text = (work / "nodes-end.json").read_text()
    assert f'"node-id": "{target_id}"' in text

    started = [int(line.split()[1]) for line in (work / "pids").read_text().splitlines()]
    stopped = [int(p) for p in (work / "stopped-pids").read_text().split()]
    assert not [p for p in set(started) | set(stopped) if pid_alive(p)]
    assert not processes_mentioning(f":{port}")
