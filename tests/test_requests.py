"""Requests from outside the ServerApp code: request files and nodes asking for themselves."""

from __future__ import annotations

import json
import logging

import pytest

from not_flower.app.requests import RequestFileError, RequestFolder, parse_request
from strategies import ExternalRequest, NoT
from tests.fakegrid import FakeGrid, FakeNode
from tests.test_strategy import PLAN, make_grid, node_of, quickstart_app, run


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"targets": 5, "extra": 1}', r"unknown key\(s\) \['extra'\]"),
        ('{"by": "partition-id"}', "missing 'targets'"),
        ('{"targets": []}', "'targets' must be a non-empty list"),
        ('{"targets": [true]}', "'targets' must be a non-empty list"),
        ('{"targets": [""]}', "'targets' must be a non-empty list"),
        ('{"targets": ["1"], "by": ""}', "'by' must be 'partition-id'"),
        ('{"targets": ["x"], "by": "node-id"}', "node ids are non-negative integers"),
        ('{"targets": ["1"], "requested_by": 3}', "'requested_by' must be a string"),
    ],
)
def test_malformed_request_files_are_named(text, message):
    with pytest.raises(RequestFileError, match=message):
        parse_request(text, "r.json")


def test_parse_request_normalises():
    assert parse_request('{"targets": [2, "3 "], "requested_by": "ops"}') == {
        "targets": ["2", "3"],
        "by": "partition-id",
        "requested_by": "ops",
    }
    assert parse_request('{"targets": 4}')["targets"] == ["4"]


def _drop(folder, name, obj):
    tmp = folder / f"{name}.tmp"
    tmp.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    tmp.rename(folder / name)


def test_request_folder_applies_valid_and_rejects_bad_without_stopping(tmp_path, caplog):
    folder = RequestFolder(tmp_path / "req")
    grid = make_grid(with_query=True)
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1, request_source=folder)

    def operator(server_round, arrays):
        if server_round == 2:
            _drop(folder.path, "bad.json", '{"targets": 5, "oops": 1}')
            _drop(folder.path, "ghost.json", {"targets": ["77"], "requested_by": "bob"})
            _drop(folder.path, "ok.json", {"targets": ["3"], "requested_by": "alice"})
        return None

    with caplog.at_level(logging.WARNING, logger="flwr"):
        result = run(strategy, grid, rounds=5, evaluate_fn=operator)
    assert result.arrays is not None and len(strategy.rounds) == 5  # training went on
    assert sorted(p.name for p in folder.accepted.iterdir()) == ["ok.json"]
    assert sorted(p.name for p in folder.rejected.glob("*.json")) == ["bad.json", "ghost.json"]
    assert "unknown key(s) ['oops']" in (folder.rejected / "bad.json.reason.txt").read_text()
    assert (
        "partition-id=77 matches no connected node"
        in (folder.rejected / "ghost.json.reason.txt").read_text()
    )
    assert "rejected request file" in caplog.text
    (event,) = strategy.events
    assert event.round == 3 and event.request.requested_by == "alice (file ok.json)"
    target = node_of(grid, 3)
    assert len(grid.sent_to(target, "train")) == 2 and strategy.excluded_node_ids == {target}


def test_node_asks_to_be_forgotten_itself():
    grid = make_grid(n=4, with_query=True)
    asker = node_of(grid, 2)
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1, forget_me_key="forget-me")

    def flip(server_round, arrays):
        if server_round == 2:  # the node restarts with forget-me=true
            node = grid.nodes[asker]
            grid.nodes[asker] = FakeNode(
                node.app, {**node.node_config, "forget-me": "true"}, name=node.name
            )
            strategy.book.identities.pop(asker)  # a restarted node is a node not seen before
            strategy.book.asked.discard(asker)
        return None

    run(strategy, grid, rounds=4, evaluate_fn=flip)
    (event,) = strategy.events
    assert event.round == 3 and event.request.requested_by == f"client:{asker}"
    assert event.request.rule.by == "node-id" and event.targets[0]["node_id"] == asker
    assert len(grid.sent_to(asker, "train")) == 2 and strategy.excluded_node_ids == {asker}


def test_forget_me_can_only_remove_the_asking_node():
    app = quickstart_app(with_query=True)
    nodes = {
        i: FakeNode(
            app, {"partition-id": i, "num-partitions": 3, "forget-me": "false" if i else "true"}
        )
        for i in range(3)
    }
    grid = FakeGrid(nodes)
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1, forget_me_key="forget-me")
    run(strategy, grid, rounds=2)
    assert strategy.excluded_node_ids == {0}
    assert [e.request.rule.values for e in strategy.events] == [("0",)]


class _Source:  # pylint: disable=too-few-public-methods
    """A user's own request source: typed requests and plain dicts, once each, at round 2."""

    def __init__(self, at_round: int, items: list) -> None:
        self.at_round, self.items, self.rounds, self.settled = at_round, items, 0, []

    def poll(self) -> list:
        self.rounds += 1
        return self.items if self.rounds == self.at_round else []


def test_a_request_source_yields_typed_requests_or_dicts_and_the_reason_is_kept():
    settled = []
    source = _Source(
        2,
        [
            ExternalRequest(
                targets=("3",),
                requested_by="dpo",
                reason="GDPR art. 17",
                on_settled=lambda _r, ok, why: settled.append(("typed", ok)),
            ),
            {"targets": "1", "requested_by": "ops"},  # a dict, as sources may also return
            {"targets": ["2"], "oops": 1, "on_settled": lambda _r, ok, why: settled.append(why)},
        ],
    )
    grid = make_grid(with_query=True)
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1, request_source=source)
    run(strategy, grid, rounds=4)
    first, second = strategy.events
    assert (first.request.requested_by, first.request.reason) == ("dpo", "GDPR art. 17")
    assert first.to_dict()["request"]["reason"] == "GDPR art. 17"
    assert second.request.requested_by == "ops" and "reason" not in second.to_dict()["request"]
    rejected, accepted = settled  # the bad dict at once, the typed request once applied
    assert "got keys ['on_settled', 'oops', 'targets']" in rejected  # named, not raised
    assert accepted == ("typed", True)
    assert strategy.excluded_node_ids == {node_of(grid, 1), node_of(grid, 3)}


def test_external_request_from_a_mapping():
    assert ExternalRequest.from_mapping({"targets": "0, 3", "by": "node-id"}) == ExternalRequest(
        targets=("0", "3"), by="node-id"
    )
    with pytest.raises(ValueError, match="a request needs 'targets'"):
        ExternalRequest.from_mapping({"by": "partition-id"})
