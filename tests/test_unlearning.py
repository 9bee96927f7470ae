"""The Unlearning wrapper around real Flower strategies (FedAvg, FedProx, FedAdam, server-side DP).

Over the fake Grid of real ClientApps (tests/fakegrid.py): without a request the wrapper
is the wrapped strategy exactly (same messages to the same nodes, bitwise-equal models,
given replies in node order, the order the wrapper aggregates them in);
with one, the negated model is what is sent, and the target never receives a message
after the request, nor does a reply it still sends reach the wrapped strategy.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
from flwr.app import Message, RecordDict
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
)

from strategies import ExcludingGrid, Negation, NegationPlan, Unlearning
from tests.fakegrid import FakeGrid
from tests.test_strategy import KEYS, initial_arrays, make_grid, node_of

PLAN = NegationPlan(layers=("conv",), keys=("conv.weight", "conv.bias"))
SAMPLING = dict(
    fraction_train=0.6,
    fraction_evaluate=0.4,
    min_train_nodes=2,
    min_evaluate_nodes=2,
    min_available_nodes=2,
)


def _fedavg():
    return FedAvg(**SAMPLING)


def _fedprox():
    return FedProx(proximal_mu=0.1, **SAMPLING)


def _fedadam():
    return FedAdam(eta=0.05, **SAMPLING)


def _dp():
    return DifferentialPrivacyServerSideFixedClipping(
        FedAvg(**SAMPLING), noise_multiplier=0.5, clipping_norm=10.0, num_sampled_clients=3
    )


STRATEGIES = {"FedAvg": _fedavg, "FedProx": _fedprox, "FedAdam": _fedadam, "DP": _dp}


class RecordingGrid(FakeGrid):
    """FakeGrid that also keeps every message it was asked to send."""

    def __init__(self, nodes):
        super().__init__(nodes)
        self.messages: list[Message] = []

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        self.messages.extend(messages)
        return super().send_and_receive(messages, timeout=timeout)


def recording_grid() -> RecordingGrid:
    return RecordingGrid(make_grid(with_query=True, with_mod=True).nodes)


def start(strategy, grid, rounds, evaluate_fn=None):
    random.seed(3)
    np.random.seed(3)  # the DP wrapper's noise
    return strategy.start(grid, initial_arrays(), num_rounds=rounds, evaluate_fn=evaluate_fn)


@pytest.mark.parametrize("name", STRATEGIES)
def test_without_a_request_the_wrapper_is_the_wrapped_strategy(name):
    grid_a, grid_b = recording_grid(), recording_grid()
    # the wrapper aggregates in node order (here node-id order = partition order), not in
    # the order replies arrive: the plain strategy gets its replies in that order too
    grid_a.replies_in_node_order = True
    plain = start(STRATEGIES[name](), grid_a, rounds=5)
    wrapped = start(Unlearning(STRATEGIES[name](), Negation(PLAN)), grid_b, rounds=5)
    assert grid_a.sent == grid_b.sent  # same sampled nodes, same messages, same order
    for a, b in zip(grid_a.messages, grid_b.messages):
        assert dict(a.content.config_records) == dict(b.content.config_records)
    for key in KEYS:
        assert plain.arrays[key].numpy().tobytes() == wrapped.arrays[key].numpy().tobytes()
    assert plain.train_metrics_clientapp == wrapped.train_metrics_clientapp
    assert plain.evaluate_metrics_clientapp == wrapped.evaluate_metrics_clientapp


@pytest.mark.parametrize("name", STRATEGIES)
def test_request_sends_the_negated_model_and_never_the_target(name, caplog):
    grid = recording_grid()
    target = node_of(grid, 2)
    grid.rogue[target] = True  # it keeps answering although nobody asks it
    seen, sent_before = {}, {}

    def central(server_round, arrays):
        seen[server_round] = {k: arrays[k].numpy().copy() for k in KEYS}
        sent_before[server_round] = len(grid.messages)

    strategy = Unlearning(STRATEGIES[name](), Negation(PLAN))
    strategy.request_unlearning([2], at_round=3)
    with caplog.at_level(logging.WARNING, logger="flwr"):
        start(strategy, grid, rounds=5, evaluate_fn=central)

    after = grid.messages[sent_before[2] :]
    assert after and all(m.metadata.dst_node_id != target for m in after)
    assert [t for t, d in grid.sent[: sent_before[2]] if d == target]  # it did train before
    round3 = [m for m in after if m.metadata.message_type == "train"][:2]
    for msg in round3:  # the negated round-2 model, bit for bit
        arrays = msg.content["arrays"]
        for key in KEYS:
            expected = -seen[2][key] if key in PLAN.keys else seen[2][key]
            assert arrays[key].numpy().tobytes() == expected.tobytes()
    for r in (3, 4, 5):
        assert target not in strategy.rounds[r].train_replied
        assert target not in strategy.rounds[r].train_sampled
    assert "dropped a train reply from excluded node %d" % target in caplog.text
    assert strategy.excluded_node_ids == {target}


def test_recovery_strategy_is_used_after_the_request_and_fresh_at_each():
    grid = make_grid(n=5, with_query=True, with_mod=True)
    seen = {}
    kwargs = dict(min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1)
    strategy = Unlearning(
        FedAvg(**kwargs), Negation(PLAN), recovery_strategy=FedAvgM(server_momentum=0.5, **kwargs)
    )
    strategy.request_unlearning([4], at_round=3)
    strategy.request_unlearning([3], at_round=5)
    start(
        strategy,
        grid,
        rounds=6,
        evaluate_fn=lambda r, a: seen.__setitem__(r, a["fc.weight"].numpy().copy()),
    )

    def shift(pids):  # FedAvg's step when clients ``pids`` each add 0.1 * (pid + 1)
        w = np.array([10 + p for p in pids], float)
        return float(np.dot(w / w.sum(), [0.1 * (p + 1) for p in pids]))

    np.testing.assert_allclose(seen[2] - seen[1], shift(range(5)), rtol=1e-5)  # FedAvg
    s1, s2 = shift([0, 1, 2, 3]), shift([0, 1, 2])
    np.testing.assert_allclose(seen[3] - seen[2], s1, rtol=1e-5)  # momentum starts at 0
    np.testing.assert_allclose(seen[4] - seen[3], 1.5 * s1, rtol=1e-5)  # 0.5 v + d
    np.testing.assert_allclose(seen[5] - seen[4], s2, rtol=1e-5)  # fresh at the 2nd request
    np.testing.assert_allclose(seen[6] - seen[5], 1.5 * s2, rtol=1e-5)
    assert isinstance(strategy.active_strategy, FedAvgM)
    assert strategy.active_strategy is not strategy.recovery_strategy


def test_excluding_grid_hides_excluded_nodes_and_refuses_to_message_them():
    grid = make_grid(n=3)
    hidden = node_of(grid, 1)
    view = ExcludingGrid(grid, {hidden}.__contains__)
    assert list(view.get_node_ids()) == [n for n in grid.get_node_ids() if n != hidden]
    assert [i.node_id for i in view.get_nodes()] == list(view.get_node_ids())
    with pytest.raises(ValueError, match=rf"excluded node\(s\) \[{hidden}\]"):
        view.send_and_receive([Message(RecordDict(), dst_node_id=hidden, message_type="train")])


def test_wrapper_refuses_what_is_not_a_strategy():
    with pytest.raises(TypeError, match="needs a flwr Strategy, got dict"):
        Unlearning({}, Negation(PLAN))
    with pytest.raises(TypeError, match="recovery_strategy must be a flwr Strategy"):
        Unlearning(FedAvg(), Negation(PLAN), recovery_strategy="adam")
