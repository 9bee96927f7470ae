"""An instance-wise request whose target forgot no sample stops the run with the reason
(ids beyond a target's data used to be dropped silently, the run exiting 0)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from not_flower.app.forgotten_check import nothing_forgotten, target_keys
from not_flower.app.server_app import Experiment

TARGETS = [{"node_id": 77, "identity": {"partition-id": 3}}, {"node_id": 91}]


def test_target_keys_are_partition_ids_else_node_ids():
    assert target_keys(TARGETS) == {"3", "91"}


def test_nothing_forgotten_names_the_clients_and_ids():
    msg = nothing_forgotten({"3"}, {"3": 0, "1": 0}, list(range(999990, 1000002)))
    assert msg is not None and "client(s) 3 forgot none" in msg
    assert "999990, 999991" in msg and msg.count(",") >= 9 and "..." in msg
    assert "unlearn.samples" in msg


@pytest.mark.parametrize("forgotten", [{"3": 5}, {"1": 0}, {}])
def test_forgot_something_or_not_replied_yet_is_fine(forgotten):
    assert nothing_forgotten({"3"}, forgotten, [1, 2]) is None


def _experiment_with(event):
    return SimpleNamespace(_instance_events=[event])


def test_the_round_hook_raises_then_forgets_judged_events():
    event = SimpleNamespace(targets=TARGETS[:1], request=SimpleNamespace(samples=[5000]))
    exp = _experiment_with(event)
    Experiment._check_forgotten(exp, SimpleNamespace(forgotten_examples={"1": 0}))
    assert exp._instance_events == [event]  # the target did not reply: judged later
    with pytest.raises(ValueError, match="forgot none of the samples asked for \\(5000\\)"):
        Experiment._check_forgotten(exp, SimpleNamespace(forgotten_examples={"3": 0}))
    Experiment._check_forgotten(exp, SimpleNamespace(forgotten_examples={"3": 2}))
    assert exp._instance_events == []
