"""Same command, same numbers: a simulated run is bitwise reproducible on one machine.

Unit tests: the order in which nodes are listed and replies are aggregated is the node
order of :func:`strategies.replies.node_order` (by declared node config, whatever ids
Flower drew and whatever order the replies arrived in), so shuffled replies give the same
aggregate bits. End to end (``e2e``): the same small simulated command, run twice through
Flower's simulation engine, writes the same ``results.json`` except for the fields that
measure the machine or the clock, and the ids Flower draws for each run.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from strategies import Unlearning
from strategies.grid_view import ExcludingGrid
from strategies.replies import in_node_order, node_order
from tests.fakegrid import FakeGrid  # noqa: F401  (sets Flower's task identity: messages can be built)


def _identities(node_ids, num=12):
    return {n: {"partition-id": pid, "num-partitions": num} for pid, n in enumerate(node_ids)}


def test_node_order_is_by_partition_id_as_a_number_whatever_the_node_ids():
    ids = [9_000_000_000_000_000_001, 17, 5, 42, 3, 8, 11, 2, 99, 7, 6, 1]  # pid 0..11
    identities = _identities(ids)
    expected = ids  # partition 0, 1, ..., 11 (10 after 9, not after 1)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert node_order(shuffled, identities) == expected
    assert node_order(reversed(ids), identities) == expected


def test_node_order_falls_back_to_node_ids_while_a_config_is_unknown():
    identities = _identities([30, 10, 20])
    assert node_order([20, 10, 30], identities) == [30, 10, 20]
    identities[10] = None  # one node not identified yet: no partial reordering
    assert node_order([20, 10, 30], identities) == [10, 20, 30]
    assert node_order([20, 40, 30], identities) == [20, 30, 40]  # 40: never seen


def _reply(node_id: int, values: np.ndarray, weight: int) -> Message:
    query = Message(RecordDict(), dst_node_id=node_id, message_type="train")
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.asarray(values))}),
            "metrics": MetricRecord({"num-examples": weight}),
        }
    )
    reply = Message(content, reply_to=query)
    reply.metadata.__dict__["_src_node_id"] = node_id  # as Flower sets it
    return reply


def _replies(seed: int = 0, n: int = 7) -> list[Message]:
    rng = np.random.default_rng(seed)
    node_ids = [int(i) for i in rng.integers(1, 2**63, size=n)]
    # magnitudes far apart: a float sum of these depends on its order
    return [
        _reply(
            node_id,
            (rng.standard_normal(64) * 10.0 ** rng.integers(-6, 7)),
            int(rng.integers(10, 100)),
        )
        for node_id in node_ids
    ]


def test_in_node_order_sorts_replies_by_their_senders_node_order():
    replies = _replies()
    identities = _identities([m.metadata.src_node_id for m in replies])
    shuffled = replies[::-1]
    assert in_node_order(shuffled, identities) == replies  # partition 0, 1, ...
    assert [m.metadata.src_node_id for m in in_node_order(shuffled, {})] == sorted(
        m.metadata.src_node_id for m in replies
    )


def _aggregate(strategy, replies) -> bytes:
    arrays, _ = strategy.aggregate_train(1, replies)
    return arrays["w"].numpy().tobytes()


def test_shuffled_replies_give_the_same_aggregate_bits():
    replies = _replies()
    identities = _identities([m.metadata.src_node_id for m in replies])
    wrapped = Unlearning(FedAvg())
    wrapped.book.identities.update(identities)
    expected = _aggregate(wrapped, replies)
    plain = set()
    for seed in range(8):
        shuffled = replies[:]
        random.Random(seed).shuffle(shuffled)
        assert _aggregate(wrapped, shuffled) == expected
        assert wrapped.rounds[1].train_replied == [m.metadata.src_node_id for m in replies]
        plain.add(_aggregate(FedAvg(), shuffled))
    assert len(plain) > 1  # without the fixed order the bits do depend on arrival order


class _ShuffledGrid:
    """A grid that lists nodes and returns replies in a different order at every call."""

    def __init__(self, node_ids):
        self.node_ids = list(node_ids)
        self.rng = random.Random(5)

    def get_node_ids(self):
        ids = self.node_ids[:]
        self.rng.shuffle(ids)
        return ids

    def send_and_receive(self, messages, *, timeout=None):
        replies = [_reply(m.metadata.dst_node_id, np.ones(2), 1) for m in messages]
        self.rng.shuffle(replies)
        return replies


def test_seeded_sampling_picks_the_same_partitions_whatever_order_flower_lists_nodes():
    node_ids = [int(n) for n in np.random.default_rng(3).integers(1, 2**63, size=10)]
    identities = _identities(node_ids, num=10)
    view = ExcludingGrid(_ShuffledGrid(node_ids), lambda _: False, identities=identities)
    picks = set()
    for _ in range(5):
        random.seed(0)
        messages = FedAvg(fraction_train=0.5).configure_train(
            1, ArrayRecord({"w": Array(np.zeros(2))}), ConfigRecord(), view
        )
        picks.add(tuple(identities[m.metadata.dst_node_id]["partition-id"] for m in messages))
        replies = view.send_and_receive(messages)
        assert [m.metadata.src_node_id for m in replies] == node_order(
            [m.metadata.dst_node_id for m in messages], identities
        )
    assert len(picks) == 1


def _sampled_partitions(wrapped, grid, identities, server_round):
    messages = wrapped.configure_train(
        server_round, ArrayRecord({"w": Array(np.zeros(2))}), ConfigRecord(), grid
    )
    return sorted(identities[m.metadata.dst_node_id]["partition-id"] for m in messages)


def test_sampling_seed_ignores_what_else_draws_from_the_process_wide_random():
    # Flower's heartbeat and retry jitter draw from `random` a timing-dependent number of
    # times: seeding it once at start does not fix round 2's sample. sampling_seed does.
    node_ids = [int(n) for n in np.random.default_rng(4).integers(1, 2**63, size=10)]
    identities = _identities(node_ids, num=10)
    runs, plain = [], set()
    for extra_draws in (0, 1, 7):
        wrapped = Unlearning(FedAvg(fraction_train=0.5), sampling_seed=3)
        wrapped.book.identities.update(identities)
        unseeded = Unlearning(FedAvg(fraction_train=0.5))
        unseeded.book.identities.update(identities)
        random.seed(3)
        picks = []
        for server_round in (1, 2, 3):
            for _ in range(extra_draws):
                random.uniform(0.7, 0.9)  # what a heartbeat thread does between rounds
            picks.append(
                _sampled_partitions(wrapped, _ShuffledGrid(node_ids), identities, server_round)
            )
        runs.append(picks)
        random.seed(3)
        for _ in range(extra_draws):
            random.uniform(0.7, 0.9)
        plain.add(tuple(_sampled_partitions(unseeded, _ShuffledGrid(node_ids), identities, 2)))
    assert runs[0] == runs[1] == runs[2]
    assert all(len(p) == 5 for p in runs[0]) and runs[0][0] != runs[0][1]  # a new draw per round
    assert len(plain) > 1  # without it, the draws in between change the sample
    wrapped = Unlearning(FedAvg(fraction_train=0.5), sampling_seed=4)
    wrapped.book.identities.update(identities)
    other = [
        _sampled_partitions(wrapped, _ShuffledGrid(node_ids), identities, r) for r in (1, 2, 3)
    ]
    assert other != runs[0]  # another seed, another sample


# ---------------------------------------------------------------- end to end (Ray)

#: Fields of results.json that measure the machine or the clock (seconds, times of day),
#: or hold what differs by design between two runs: the ids Flower draws at random for
#: the nodes of each run, the output folder and what depends on them (the audit log's
#: hash chain holds node ids and times). Everything else must be equal, bit for bit.
MEASURED = (
    "client_seconds",
    "server_seconds",
    "wall_seconds",
    "negation_seconds",
    "train_seconds",
    "requested_at",
)
PER_RUN = (
    "participant_node_ids",
    "node_id",
    "excluded_node_ids",
    "out_dir",
    "out-dir",
    "checkpoints",
    "audit",
    "cache",  # membership: each run's own reference-model cache folder (as configured)
    "mia.cache-dir",
)


def comparable(value):
    """``value`` without the :data:`MEASURED` and :data:`PER_RUN` fields, at any depth."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in MEASURED + PER_RUN}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def differences(a, b, path: str = "") -> list[str]:
    """The paths (``models.original.asr``) at which two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b), key=str)
            for d in differences(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b or (a != a and b != b) else [f"{path}: {a!r} != {b!r}"]


def test_differences_names_the_paths_that_differ():
    assert differences({"m": {"x": [1, 2]}, "y": 1}, {"m": {"x": [1, 3]}, "y": 1}) == [
        "m.x[1]: 2 != 3"
    ]
    assert differences({"a": float("nan")}, {"a": float("nan")}) == []


@pytest.mark.e2e  # two runs of Flower's simulation engine (Ray), backdoor and LiRA included
def test_the_same_simulated_command_twice_gives_the_same_results(tmp_path):
    from not_flower.experiments.simulation import simulate  # pylint: disable=import-outside-toplevel

    results = []
    for name in ("first", "second"):
        config = {
            "out-dir": str(tmp_path / name),
            "num-train-rounds": 2,
            "recovery.rounds": 2,
            "unlearn.clients": "1",
            "lr": 0.02,
            "fraction-train": 0.75,
            "eval-recovery-rounds": "1,2",
            "recovery.run-to-cap": True,
            # ASR and the membership figures (LiRA included) are claimed exact too: a
            # backdoor client and 2 reference models, each run training its own
            "backdoor.clients": "1",
            "mia.reference-models": 2,
            "mia.reference-epochs": 1,
            "mia.cache-dir": str(tmp_path / f"{name}-mia-cache"),
        }
        results.append(simulate(config, num_supernodes=4))
    first, second = results
    # the node ids are Flower's random draw: they differ, the partitions they stand for not
    assert first["excluded_node_ids"] != second["excluded_node_ids"]
    assert [r["participants"] for r in first["rounds"]] == [
        r["participants"] for r in second["rounds"]
    ]
    assert json.dumps(comparable(first), sort_keys=True) == json.dumps(
        comparable(second), sort_keys=True
    ), differences(comparable(first), comparable(second))[:20]
    assert first["models"]["recovered"]["test_acc"] > 0.5  # it did learn
    # the compared fields include ASR and the membership attacks' figures (LiRA included)
    models = comparable(first)["models"]
    for model in ("original", "negated", "recovered"):
        for key in ("asr", "mia_efficacy", "lira_auc", "lira_tpr_fpr1"):
            assert models[model].get(key) is not None, (model, key)
    assert comparable(first)["membership"]["reference_models"] == 2
    assert first["membership"]["loaded_from_cache"] is False  # trained by each run
    # what is left out is what was measured: present in both, the machine's own numbers
    assert (
        first["costs"]["train"]["client_seconds"] > 0 < second["costs"]["train"]["client_seconds"]
    )
