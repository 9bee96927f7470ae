"""examples/deploy/netns.sh: each SuperNode in its own network namespace (its own host and
address), the SuperLink on a bridge; one non-target node's namespace is killed during
recovery and the run must still finish without it.

Needs root (CAP_NET_ADMIN): skipped, with the reason, where `ip netns add` is refused.
"""

from __future__ import annotations

import os
import random
import shutil
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
    rounds,
    run_script,
)

pytestmark = pytest.mark.e2e  # starts Flower / Ray / processes: see tests/conftest.py


def _netns_refused() -> str | None:
    """Why network namespaces cannot be used here (None when they can): tried for real."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"nf-probe-{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"`ip netns add` is not permitted here ({res.stderr.strip()}); needs root"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    res = subprocess.run(
        ["ip", "link", "add", f"nfbr-p{os.getpid() % 10000}", "type", "bridge"],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        return f"cannot create a bridge ({res.stderr.strip()})"
    subprocess.run(["ip", "link", "del", f"nfbr-p{os.getpid() % 10000}"], capture_output=True)
    return None


def test_netns_nodes_survive_a_killed_node(tmp_path):
    reason = _netns_refused()
    if reason:
        pytest.skip(reason)
    out, work, port = tmp_path / "out", tmp_path / "work", free_port()
    tag = f"t{random.randrange(16**4):04x}"
    subnet = f"10.77.{random.randrange(1, 250)}"
    proc = run_script(
        [
            "bash",
            str(DEPLOY / "netns.sh"),
            "--nodes",
            "3",
            "--port",
            str(port),
            "--tag",
            tag,
            "--subnet",
            subnet,
            "--train-rounds",
            "2",
            "--recovery-rounds",
            "2",
            "--unlearn",
            "0",
            "--kill-node",
            "2",
            "--kill-at-round",
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
    try:
        assert proc.returncode == 0, log[-4000:]
        assert f"--superlink {subnet}.1:{port}" in log
        assert (work / "killed").read_text().startswith("killed partition-id=2")

        results = load_results(out)
        assert [r["round"] for r in results["rounds"]] == [0, 1, 2, 3, 4]
        assert_forgotten(results, 0)  # the target: in rounds 1-2, in no recovery round
        rows = rounds(results)
        assert all(r["participants"] == [0, 1, 2] for r in rows[:2])
        # node 2 was killed when round 3 started: its reply failed, then it is gone
        assert all(2 not in r["participants"] for r in rows[2:])
        assert rows[-1]["participants"] == [1]
    finally:
        # no namespace, interface or process of this run is left
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        leaked_ns = [n for n in names.split() if n.startswith(f"nf-{tag}-")]
        leaked_links = [link for link in links.splitlines() if tag in link.split()[0]]
        for ns in leaked_ns:  # clean up what the script did not, then fail
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        assert not leaked_ns and not leaked_links, (leaked_ns, leaked_links)
    started = [int(line.split()[1]) for line in (work / "pids").read_text().splitlines()]
    stopped = [int(p) for p in (work / "stopped-pids").read_text().split()]
    assert not [p for p in set(started) | set(stopped) if pid_alive(p)]
    assert not processes_mentioning(f":{port}")
