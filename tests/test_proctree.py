"""not_flower/launch/proctree.py: a run's processes found by lineage (tree, token), never by
name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from not_flower.launch import proctree


def test_parse_stat_reads_state_and_parent_even_with_odd_names():
    assert proctree.parse_stat("42 (flwr run) S 41 42 42 0 -1") == ("S", 41)
    assert proctree.parse_stat("7 (a) b) (c) Z 1 7 7") == ("Z", 1)


def test_descendants_walk_every_level_once_parents_first():
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20, 30: 99}
    assert proctree.descendants([10], parents) == [11, 12, 13]
    assert proctree.descendants([10, 20], parents) == [11, 12, 21, 13]
    assert proctree.descendants([13], parents) == []
    assert proctree.descendants([10, 11], parents) == [12, 13]  # a root is not repeated


def test_tokens_are_fresh_and_an_empty_token_matches_nothing():
    assert proctree.new_token() != proctree.new_token()
    assert len(proctree.new_token()) == 32
    assert proctree.token_holders("", [os.getpid()]) == []


def test_collect_never_includes_this_process_or_its_ancestors():
    me, parent = os.getpid(), os.getppid()
    assert me not in proctree.collect([me, parent])
    assert parent not in proctree.collect([parent])


# Middle process: starts a grandchild that outlives it, prints its pid, exits at once, so
# the grandchild is re-parented (to init or a subreaper) and no longer in our tree.
_ORPHAN_MAKER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
print(child.pid, flush=True)
"""


@pytest.mark.e2e  # starts processes
def test_stop_processes_finds_an_orphan_by_its_token():
    token = proctree.new_token()
    out = subprocess.run(
        [sys.executable, "-c", _ORPHAN_MAKER],
        capture_output=True,
        text=True,
        env={**os.environ, proctree.TOKEN_VAR: token},
        timeout=60,
        check=True,
    )
    orphan = int(out.stdout.split()[0])
    try:
        assert proctree.alive(orphan)
        assert orphan not in proctree.descendants([os.getpid()], proctree.process_table())
        assert proctree.token_holders(token, [orphan]) == [orphan]
        assert proctree.stop_processes([], [token], grace=5.0) == [orphan]
        deadline = time.monotonic() + 5
        while proctree.alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not proctree.alive(orphan)
    finally:
        if proctree.alive(orphan):
            proctree.send([orphan], signal.SIGKILL)
