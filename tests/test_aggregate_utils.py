"""FedAvg keeps every tensor's dtype; rounds with nothing to aggregate are noticed and stop
the run."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from not_flower.app import client_app as ca
from not_flower.app.specs import data_spec
from not_flower.task.training import batch_bounds, has_batchnorm, train
from strategies import NoT
from strategies.aggregate_utils import (
    EmptyRoundGuard,
    EmptyRoundsError,
    cast_like,
    failure_reasons,
    restore_dtypes,
)
from strategies.not_strategy import array_layout
from tests.fakegrid import FakeGrid, FakeNode


# ---------------------------------------------------------------- pure helpers
def test_cast_like_rounds_integers_clips_and_keeps_floats():
    np.testing.assert_array_equal(
        cast_like(np.array([8.335, 16.5, 17.5, -0.6]), "int64"), np.array([8, 16, 18, -1])
    )  # nearest, half to even
    assert cast_like(np.array([8.3]), "int64").dtype == np.int64
    np.testing.assert_array_equal(cast_like(np.array([300.0, -5.0]), "uint8"), [255, 0])
    np.testing.assert_array_equal(
        cast_like(np.array([0.49, 0.5, 1.0]), "bool"), [False, True, True]
    )
    out = cast_like(np.array([1.25], dtype=np.float64), "float32")
    assert out.dtype == np.float32 and out[0] == np.float32(1.25)
    same = np.array([1, 2], dtype=np.int64)
    assert cast_like(same, "int64") is same


def test_restore_dtypes_follows_the_sent_models_layout():
    sent = ArrayRecord(
        {
            "w": Array(np.zeros((2, 2), np.float32)),
            "bn.num_batches_tracked": Array(np.array(7, dtype=np.int64)),
        }
    )
    aggregate = ArrayRecord(
        {"w": Array(np.ones((2, 2), np.float32)), "bn.num_batches_tracked": Array(np.array(8.335))}
    )  # float64
    out = restore_dtypes(aggregate, array_layout(sent))
    assert array_layout(out) == array_layout(sent)
    assert int(out["bn.num_batches_tracked"].numpy()) == 8
    assert out["w"] is aggregate["w"]  # already right: shared, not copied
    assert list(out.keys()) == list(aggregate.keys())


def test_empty_round_guard_logs_each_and_stops_after_n_in_a_row(caplog):
    guard = EmptyRoundGuard(3)
    with caplog.at_level(logging.ERROR, logger="flwr"):
        guard.update(1, 0, {11: "tensor 'x' is () int64"})
        guard.update(2, 0, {11: "boom"})
        guard.update(3, 2, {})  # a round with replies resets the count
        guard.update(4, 0, {})
        guard.update(5, 0, {11: "a", 12: "b", 13: "c", 14: "d"})
        with pytest.raises(EmptyRoundsError, match=r"3 rounds in a row \(rounds 4-6\)") as err:
            guard.update(6, 0, {11: "tensor 'bn1.num_batches_tracked' is () int64"})
    assert "limit 3: run-config key max-empty-rounds" in str(err.value)
    assert "node 11: tensor 'bn1.num_batches_tracked' is () int64" in str(err.value)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 5 and "round 1 aggregated no train reply" in errors[0].getMessage()
    assert "4 nodes in all" in errors[3].getMessage()
    quiet = EmptyRoundGuard(0)  # 0: log only, never stop
    for r in range(1, 20):
        quiet.update(r, 0, {})
    with pytest.raises(ValueError, match="max_empty_rounds must be an integer >= 0"):
        EmptyRoundGuard(-1)


def test_failure_reasons_names_error_replies_and_rejections():
    grid = _grid(lambda msg, ctx: (_ for _ in ()).throw(RuntimeError("out of memory")), n=1)
    msg = Message(RecordDict(), dst_node_id=1, message_type="train")
    (reply,) = grid.send_and_receive([msg])
    assert failure_reasons([reply], {2: "NaN"}) == {
        1: "error reply: RuntimeError: out of memory",
        2: "NaN",
    }


def test_batch_bounds_never_leaves_a_one_sample_batch_for_batchnorm():
    assert batch_bounds(129, 16) == [(i, min(i + 16, 129)) for i in range(0, 129, 16)]
    merged = batch_bounds(129, 16, min_batch=2)
    assert merged[-1] == (112, 129) and len(merged) == 8
    assert sum(e - s for s, e in merged) == 129 and min(e - s for s, e in merged) >= 2
    assert batch_bounds(130, 16, min_batch=2)[-1] == (128, 130)
    assert batch_bounds(1, 16, min_batch=2) == [] and batch_bounds(0, 4) == []
    assert batch_bounds(17, 16, min_batch=2) == [(0, 17)]
    with pytest.raises(ValueError):
        batch_bounds(10, 0)


def test_train_with_batchnorm_and_a_last_batch_of_one_sample():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(4),
        nn.Linear(4, 10),
    )
    assert has_batchnorm(model) and not has_batchnorm(nn.Linear(2, 2))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(17, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 17)
    stats = train(model, x, y, epochs=2, batch_size=16, lr=0.05, momentum=0.9, seed=0)
    assert np.isfinite(stats["train-loss"])
    assert int(model[1].num_batches_tracked) == 2  # one merged batch of 17 per epoch
    # with BatchNorm a last batch under half a batch joins the previous one: 20 = 16 + 4
    train(
        model,
        x[:16].repeat(2, 0)[:20],
        y[:16].repeat(2)[:20],
        epochs=1,
        batch_size=16,
        lr=0.05,
        momentum=0.9,
        seed=0,
    )
    assert int(model[1].num_batches_tracked) == 3
    assert batch_bounds(130, 16, min_batch=8)[-1] == (112, 130)
    assert batch_bounds(140, 16, min_batch=8)[-1] == (128, 140)  # 12 >= 8: its own batch


# ---------------------------------------------------------------- the strategy
def _grid(train_fn, n=3) -> FakeGrid:
    app = ClientApp()
    app.train()(train_fn)
    return FakeGrid(
        {i + 1: FakeNode(app, {"partition-id": i, "num-partitions": n}) for i in range(n)}
    )


def _buffer_model() -> ArrayRecord:
    return ArrayRecord(
        {
            "w": Array(np.zeros(3, np.float32)),
            "bn.num_batches_tracked": Array(np.array(0, dtype=np.int64)),
        }
    )


def _counting_train(msg: Message, context) -> Message:
    """Each client adds its own step count to the int64 counter, as BatchNorm does."""
    pid = int(context.node_config["partition-id"])
    arrays = msg.content["arrays"]
    steps = (9, 8, 8)[pid]
    out = ArrayRecord(
        {
            "w": Array(arrays["w"].numpy() + 1),
            "bn.num_batches_tracked": Array(
                np.asarray(arrays["bn.num_batches_tracked"].numpy() + steps)
            ),
        }
    )
    metrics = MetricRecord({"num-examples": (130, 129, 129)[pid]})
    return Message(RecordDict({"arrays": out, "metrics": metrics}), reply_to=msg)


def test_integer_buffers_stay_integer_round_after_round():
    """The reported bug: round 1's aggregate made the int64 counter float64, so every
    round-2 reply (int64 again) was rejected and the model stopped training."""
    grid = _grid(_counting_train)
    strategy = NoT(None, fraction_evaluate=0.0, min_train_nodes=1)
    result = strategy.start(grid, _buffer_model(), num_rounds=3)
    for r in (1, 2, 3):
        assert sorted(strategy.rounds[r].train_replied) == [1, 2, 3]
        assert not strategy.rounds[r].rejected_train
    counter = result.arrays["bn.num_batches_tracked"]
    assert str(counter.dtype) == "int64"
    # weighted mean (130, 129, 129) of the clients' counts, rounded, every round:
    # round 1: (130*9 + 258*8)/388 = 8.34 -> 8; round 2: 8 + 8.34 -> 16; round 3 -> 24
    assert int(counter.numpy()) == 24
    np.testing.assert_array_equal(result.arrays["w"].numpy(), np.full(3, 3.0, np.float32))


def test_every_round_rejected_stops_the_run_after_max_empty_rounds(caplog):
    def wrong_dtype(msg: Message, context) -> Message:
        arrays = msg.content["arrays"]
        out = ArrayRecord(
            {"w": arrays["w"], "bn.num_batches_tracked": Array(np.array(1.0))}
        )  # float64
        return Message(
            RecordDict({"arrays": out, "metrics": MetricRecord({"num-examples": 5})}), reply_to=msg
        )

    strategy = NoT(None, fraction_evaluate=0.0, min_train_nodes=1, max_empty_rounds=2)
    with (
        caplog.at_level(logging.ERROR, logger="flwr"),
        pytest.raises(
            EmptyRoundsError, match=r"2 rounds in a row \(rounds 1-2\) aggregated no train reply"
        ) as err,
    ):
        strategy.start(_grid(wrong_dtype), _buffer_model(), num_rounds=10)
    assert "tensor 'bn.num_batches_tracked' is () float64, the global model's is () int64" in str(
        err.value
    )
    assert sorted(strategy.rounds) == [1, 2]  # stopped at round 2 of 10
    assert "round 1 aggregated no train reply" in caplog.text


def test_crashing_clients_count_as_empty_rounds_and_zero_never_stops():
    def crash(msg, context):
        raise RuntimeError("Expected more than 1 value per channel when training")

    with pytest.raises(EmptyRoundsError, match="error reply: RuntimeError: Expected more than 1"):
        NoT(None, fraction_evaluate=0.0, min_train_nodes=1).start(
            _grid(crash), _buffer_model(), num_rounds=5
        )
    strategy = NoT(None, fraction_evaluate=0.0, min_train_nodes=1, max_empty_rounds=0)
    strategy.start(_grid(crash), _buffer_model(), num_rounds=4)
    assert sorted(strategy.rounds) == [1, 2, 3, 4]


@pytest.mark.e2e
def test_resnet18_replies_accepted_in_round_2_with_the_apps_clientapp():
    """not-flower's own ClientApp training ResNet-18 (BatchNorm) on digits: partitions 7
    and 8 of 10 hold 129 samples (a last batch of one with batch-size 16) and every reply
    carries an int64 num_batches_tracked; all are aggregated in both rounds."""
    from not_flower.common.config import parse_run_config
    from not_flower.task.models import build_model
    from not_flower.task.training import dataset_for

    run_config = {"model": "resnet18", "local-epochs": 1, "val-fraction": 0.1}
    cfg = parse_run_config(run_config)
    data = dataset_for(data_spec(cfg))
    model = build_model("resnet18", data.input_shape, data.num_classes)
    nodes = {}
    for pid in (0, 7, 8):
        node = FakeNode(ca.app, {"partition-id": pid, "num-partitions": 10})
        node.context.run_config = dict(run_config)
        nodes[100 + pid] = node
    grid = FakeGrid(nodes)
    strategy = NoT(None, fraction_evaluate=0.0, min_train_nodes=1)
    result = strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=2)
    for r in (1, 2):
        assert sorted(strategy.rounds[r].train_replied) == [100, 107, 108]
        assert not strategy.rounds[r].rejected_train
    counter = result.arrays["bn1.num_batches_tracked"]
    assert str(counter.dtype) == "int64"
    # 130 and 129 samples: 8 batches each (a last batch under half a batch, 2 or 1
    # samples, joins the 8th); two rounds
    assert int(counter.numpy()) == 16
