"""Scheduled unlearning targets are checked against the connected nodes before round 1."""

from __future__ import annotations

import pytest

from not_flower.app import client_app as ca
from not_flower.app.server_app import run_experiment
from not_flower.common.config import parse_run_config
from strategies.identity import make_rule
from strategies.not_strategy import UnlearningError, UnlearningRequest
from strategies.target_check import check_targets, known_values
from tests.fakegrid import FakeGrid, FakeNode

IDS = [1000 + i for i in range(10)]
IDENTITIES = {n: {"partition-id": i, "num-partitions": 10} for i, n in enumerate(IDS)}
NAMES = {n: f"site-{i}" for i, n in enumerate(IDS)}


def _request(values, by="partition-id", **kw) -> UnlearningRequest:
    return UnlearningRequest(rule=make_rule(values, by), requested_by="operator (run config)", **kw)


def test_unknown_partition_id_fails_naming_target_and_known_ones():
    with pytest.raises(UnlearningError) as err:
        check_targets(
            [_request("3"), _request("99", at_round=21)], IDS, NAMES, IDENTITIES, expected_nodes=10
        )
    assert str(err.value) == (
        "unlearning target partition-id=99 (requested by operator (run config), for round 21) "
        "matches none of the 10 connected nodes; they have partition-id in "
        "['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']; the run stops before round 1"
    )
    assert check_targets([_request("3,7")], IDS, NAMES, IDENTITIES, expected_nodes=10) == []


def test_node_id_and_name_targets_are_checked_too():
    with pytest.raises(UnlearningError, match=r"node-id=5 .* they have node-id in \['1000', "):
        check_targets([_request("5", by="node-id")], IDS, NAMES, IDENTITIES, expected_nodes=10)
    with pytest.raises(UnlearningError, match=r"supernode-name=site-x .*'site-0', 'site-1'"):
        check_targets([_request("site-x", by="supernode-name")], IDS, NAMES, {}, expected_nodes=10)
    assert (
        check_targets([_request("site-2", by="supernode-name")], IDS, NAMES, {}, expected_nodes=10)
        == []
    )


def test_incomplete_federation_warns_unless_the_target_can_never_connect():
    five = IDS[:5]  # partition ids 0-4 of 10 connected
    (warning,) = check_targets([_request("7")], five, NAMES, IDENTITIES, expected_nodes=10)
    assert "partition-id=7" in warning and "5 of 10 nodes connected so far" in warning
    with pytest.raises(UnlearningError, match="partition-id=99"):  # ids stop at 9
        check_targets([_request("99")], five, NAMES, IDENTITIES, expected_nodes=10)


def test_unknown_identities_requests_from_outside_and_star_are_not_failed():
    (warning,) = check_targets(
        [_request("99")], IDS, NAMES, {n: None for n in IDS}, expected_nodes=10
    )
    assert "cannot be checked before round 1" in warning and "query handler" in warning
    assert known_values(make_rule("1", "partition-id"), IDS, NAMES, {}) is None
    assert (
        check_targets(
            [_request("99", strict=False), _request("*")], IDS, NAMES, IDENTITIES, expected_nodes=10
        )
        == []
    )


def test_run_fails_before_round_1_on_an_unknown_target(tmp_path):
    """Through the ServerApp's run with not-flower's own ClientApp: only identity queries
    are sent, nothing is trained or written."""
    run_config = {"unlearn.clients": "2;99", "num-train-rounds": 20, "out-dir": str(tmp_path)}
    nodes = {}
    for pid in range(4):
        node = FakeNode(ca.app, {"partition-id": pid, "num-partitions": 4})
        node.context.run_config = dict(run_config)
        nodes[500 + pid] = node
    grid = FakeGrid(nodes)
    with pytest.raises(
        UnlearningError,
        match=(
            r"partition-id=99 \(requested by operator \(run config\), for round 36\) matches "
            r"none of the 4 connected nodes; they have partition-id in \['0', '1', '2', '3'\]"
        ),
    ):
        run_experiment(grid, parse_run_config(run_config), tmp_path)
    assert {t for t, _ in grid.sent} == {"query.identity"}
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "state.json").exists()
