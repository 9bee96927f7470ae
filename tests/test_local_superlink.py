"""Per-checkout local SuperLink ports (not_flower/launch/local_superlink.py,
scripts/flwr-env.sh)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from not_flower.launch.local_superlink import (
    CONTROL_PORT_VAR,
    ENV_FILE,
    HTTP_PORT_VAR,
    candidate_ports,
    choose_ports,
    format_env,
    parse_env,
    ports_for_home,
    read_cmdlines,
    superlink_pids,
)

ROOT = Path(__file__).resolve().parents[1]


def test_candidates_cover_the_range_once_in_an_order_set_by_the_key():
    a = list(candidate_ports("/home/a/.flwr-home", 100, 199))
    assert sorted(a) == list(range(100, 200))
    assert a == list(candidate_ports("/home/a/.flwr-home", 100, 199))  # deterministic
    b = list(candidate_ports("/home/b/.flwr-home", 100, 199))
    assert a[0] != b[0]  # two checkouts start at different places
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        list(candidate_ports("k", 0, 10))


def test_choose_skips_busy_ports_and_fails_when_too_few_are_free():
    order = list(candidate_ports("k", 100, 109))
    busy = set(order[:3])
    assert choose_ports("k", lambda p: p not in busy, 2, 100, 109) == order[3:5]
    with pytest.raises(RuntimeError, match=r"only 1 free port\(s\) in \[100, 109\], 2 needed"):
        choose_ports("k", lambda p: p == order[7], 2, 100, 109)


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"{HTTP_PORT_VAR}=20001\n",
        f"{HTTP_PORT_VAR}=20001\n{CONTROL_PORT_VAR}=20001\n",
        f"{HTTP_PORT_VAR}=x\n{CONTROL_PORT_VAR}=20002\n",
        f"{HTTP_PORT_VAR}=70000\n{CONTROL_PORT_VAR}=2\n",
    ],
)
def test_parse_env_rejects_incomplete_or_bad_files(text):
    assert parse_env(text) is None


def test_format_and_parse_round_trip_and_tolerate_comments_and_quotes():
    ports = {HTTP_PORT_VAR: 20001, CONTROL_PORT_VAR: 20002}
    assert parse_env(format_env(ports)) == ports
    assert (
        parse_env(f"# x\n\n{HTTP_PORT_VAR}='20001'\nexport {CONTROL_PORT_VAR}=\"20002\"\n") == ports
    )


def test_ports_are_chosen_once_and_kept(tmp_path):
    calls = []

    def is_free(port):
        calls.append(port)
        return True

    home_a, home_b = tmp_path / "a", tmp_path / "b"
    first = ports_for_home(home_a, is_free)
    assert len(calls) == 2 and first[HTTP_PORT_VAR] != first[CONTROL_PORT_VAR]
    assert parse_env((home_a / ENV_FILE).read_text()) == first
    assert ports_for_home(home_a, lambda p: False) == first  # kept, even if now in use
    assert len(calls) == 2
    second = ports_for_home(home_b, is_free)
    assert set(second.values()).isdisjoint(first.values())
    (home_a / ENV_FILE).write_text("garbage\n")  # a broken file is replaced
    assert parse_env((home_a / ENV_FILE).read_text()) is None
    assert parse_env(format_env(ports_for_home(home_a, is_free))) is not None


def test_superlink_pids_match_only_this_home_and_port(tmp_path):
    def superlink(home, port):
        return [
            "/venv/bin/python",
            "/venv/bin/flower-superlink",
            "--insecure",
            "--simulation",
            "--port",
            str(port),
            "--log-file",
            f"{home}/local-superlink/superlink.log",
        ]

    a, b = tmp_path / "a", tmp_path / "b"
    cmdlines = {
        10: superlink(a, 20001),
        11: superlink(b, 20005),
        12: superlink(a, 39091),
        13: ["grep", "--port", "20001", "--log-file", f"{a}/local-superlink/superlink.log"],
        14: [
            "/venv/bin/flower-superlink",
            "--port=20001",
            f"--log-file={a}/local-superlink/superlink.log",
        ],
        15: [],
    }
    assert superlink_pids(cmdlines, a, 20001) == [10, 14]
    assert superlink_pids(cmdlines, b, 20005) == [11]
    assert superlink_pids(cmdlines, b, 20001) == []


def test_read_cmdlines_sees_this_process():
    assert any(
        "pytest" in " ".join(argv) for pid, argv in read_cmdlines().items() if pid == os.getpid()
    )


def _source(home: Path, script: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (HTTP_PORT_VAR, CONTROL_PORT_VAR)}
    env["FLWR_HOME"] = str(home)
    return subprocess.run(
        ["bash", "-c", f"source scripts/flwr-env.sh && {script}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _pids(home: Path) -> list[int]:
    log = f"{home}/local-superlink/superlink.log"
    return sorted(
        pid
        for pid, argv in read_cmdlines().items()
        if any(os.path.basename(a) == "flower-superlink" for a in argv[:2]) and log in argv
    )


@pytest.mark.e2e
def test_two_flwr_homes_get_their_own_superlinks_and_stop_only_their_own(tmp_path):
    homes = [tmp_path / "checkout-a", tmp_path / "checkout-b"]
    try:
        ports = []
        for home in homes:
            shown = _source(home, f'echo "${HTTP_PORT_VAR} ${CONTROL_PORT_VAR}"; flwr ls')
            assert shown.returncode == 0, shown.stdout + shown.stderr
            ports.append(tuple(map(int, shown.stdout.split("\n", 1)[0].split())))
            assert _source(
                home, f'echo "${HTTP_PORT_VAR} ${CONTROL_PORT_VAR}"'
            ).stdout.split() == list(map(str, ports[-1]))  # kept
        assert len(set(ports[0] + ports[1])) == 4
        assert 39091 not in ports[0] + ports[1]
        running = [_pids(h) for h in homes]
        assert all(len(p) == 1 for p in running), running
        for pid, (http, _) in zip((p[0] for p in running), ports):
            assert f"--port {http}" in " ".join(read_cmdlines()[pid])

        assert _source(homes[1], "nf_stop_local_superlink").returncode == 0
        assert _pids(homes[1]) == [] and _pids(homes[0]) == running[0]  # A's still runs
        # A's SuperLink still answers on A's port
        again = _source(homes[0], "flwr ls")
        assert again.returncode == 0, again.stdout + again.stderr
        assert _pids(homes[0]) == running[0]  # reused, not a second one
    finally:
        for home in homes:
            _source(home, "nf_stop_local_superlink")
        deadline = time.time() + 10
        while time.time() < deadline and any(_pids(h) for h in homes):
            time.sleep(0.2)
    assert not any(_pids(h) for h in homes)
