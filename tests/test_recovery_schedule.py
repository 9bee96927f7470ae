"""Recovery schedules: layer-wise rounds, FedYogi, distillation, a learning-rate warm-up."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedYogi

import tests.fakegrid  # noqa: F401  # sets flwr's TaskIdentity so that Messages can be built
from not_flower.app.client_app import app
from not_flower.app.server_app import make_strategy
from not_flower.app.strategy_builders import recovery_settings
from not_flower.common.config import ConfigError, parse_run_config, to_run_config
from not_flower.task.models import build_model, example_input
from strategies import NoT, RecoverySettings, answer_identity, plan_negation
from strategies.negation import NegationPlan
from strategies.not_strategy import recovery_strategy_for
from strategies.recovery_schedule import RecoverySchedule, merge_partial, warmup_lr
from strategies.replies import arrayrecord_nbytes
from tests.fakegrid import FakeGrid, FakeNode

KEYS = ("conv.weight", "conv.bias", "fc.weight")
PLAN = NegationPlan(layers=("conv",), keys=("conv.weight", "conv.bias"))
TENSOR = len(Array(np.zeros((3, 2), np.float32)).data)  # bytes of one tensor on the wire
RUN = {"local-epochs": 1, "lr": 0.05, "seed": 0, "batch-size": 64}  # 64: a fast test


def initial_arrays() -> ArrayRecord:
    rng = np.random.default_rng(0)
    return ArrayRecord({k: Array(rng.normal(size=(3, 2)).astype(np.float32)) for k in KEYS})


def schedule_app(log: list, *, full_reply_from: int | None = None) -> ClientApp:
    """A fake ClientApp honouring ``train-keys``: each node shifts its tensors by 0.1 (pid+1);
    ``log`` gets (pid, config, has teacher) per train message."""
    fake = ClientApp()

    @fake.train()
    def train(msg: Message, context):
        pid = int(context.node_config["partition-id"])
        config = dict(msg.content["config"])
        log.append((pid, config, msg.content.get("teacher")))
        keys = list(config.get("train-keys", [])) or list(msg.content["arrays"].keys())
        if pid == full_reply_from:
            keys = list(msg.content["arrays"].keys())
        new = {
            k: Array((msg.content["arrays"][k].numpy() + 0.1 * (pid + 1)).astype(np.float32))
            for k in keys
        }
        metrics = MetricRecord({"train-loss": 0.0, "num-examples": 10 + pid})
        return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}), reply_to=msg)

    @fake.evaluate()
    def evaluate(msg: Message, context):
        return Message(
            RecordDict({"metrics": MetricRecord({"val-acc": 0.5, "num-examples": 5})}), reply_to=msg
        )

    fake.query("identity")(answer_identity)
    return fake


def fake_grid(n: int, client_app: ClientApp) -> FakeGrid:
    return FakeGrid(
        {100 + i: FakeNode(client_app, {"partition-id": i, "num-partitions": n}) for i in range(n)}
    )


def run_not(grid, rounds: int, **schedule) -> tuple[NoT, dict]:
    seen: dict = {}
    strategy = NoT(PLAN, min_train_nodes=1, min_evaluate_nodes=1, recovery_schedule=schedule)
    strategy.request_unlearning("0", at_round=3)
    random.seed(0)
    strategy.start(
        grid,
        initial_arrays(),
        num_rounds=rounds,
        evaluate_fn=lambda r, a: seen.__setitem__(r, {k: v.numpy().copy() for k, v in a.items()}),
    )
    return strategy, seen


# ------------------------------------------------------------------ layer-wise recovery
def test_layerwise_rounds_train_and_move_only_the_negated_tensors():
    log: list = []
    strategy, seen = run_not(fake_grid(3, schedule_app(log)), rounds=5, layerwise_rounds=2)
    mean_shift = float(np.dot([11 / 23, 12 / 23], [0.2, 0.3]))  # clients 1, 2 (FedAvg)
    for r in (3, 4):  # the first two recovery rounds: only conv.* trained and moved
        configs = [c for pid, c, _ in log[3 * 2 + 2 * (r - 3) :][:2]]
        assert all(c["train-keys"] == ["conv.weight", "conv.bias"] for c in configs)
        np.testing.assert_array_equal(seen[r]["fc.weight"], seen[2]["fc.weight"])
        assert strategy.rounds[r].bytes_up == 2 * 2 * TENSOR  # 2 replies, 2 tensors
    np.testing.assert_allclose(
        seen[3]["conv.weight"], -seen[2]["conv.weight"] + mean_shift, rtol=1e-5
    )
    np.testing.assert_allclose(seen[5]["fc.weight"], seen[4]["fc.weight"] + mean_shift, rtol=1e-5)
    assert "train-keys" not in log[-1][1]  # then normal recovery: every tensor
    assert strategy.rounds[5].bytes_up == 2 * 3 * TENSOR
    assert all("train-keys" not in c for _, c, _ in log[:6])  # never before the request


def test_layerwise_round_rejects_a_reply_with_other_keys():
    strategy, seen = run_not(
        fake_grid(3, schedule_app([], full_reply_from=2)), rounds=4, layerwise_rounds=1
    )
    reason = strategy.rounds[3].rejected_train[102]
    assert "unexpected ['fc.weight']" in reason
    np.testing.assert_allclose(seen[3]["conv.weight"], -seen[2]["conv.weight"] + 0.2, rtol=1e-5)
    assert 102 not in strategy.rounds[4].rejected_train  # round 4: full replies


def test_each_request_starts_its_own_layerwise_rounds():
    log: list = []
    strategy = NoT(
        PLAN, min_train_nodes=1, min_evaluate_nodes=1, recovery_schedule={"layerwise_rounds": 1}
    )
    strategy.request_unlearning("0", at_round=2)
    strategy.request_unlearning("1", at_round=4)
    random.seed(0)
    strategy.start(fake_grid(4, schedule_app(log)), initial_arrays(), num_rounds=5)
    keyed = [("train-keys" in c) for _, c, _ in log]
    # round 1: 4 clients; 2 (layer-wise), 3: 3 clients; 4 (layer-wise), 5: 2 clients
    assert keyed == [False] * 4 + [True] * 3 + [False] * 3 + [True] * 2 + [False] * 2


def test_merge_partial_keeps_the_other_arrays_and_dtypes():
    base = initial_arrays()
    merged = merge_partial(base, ArrayRecord({"conv.bias": Array(np.ones((3, 2)))}))
    assert list(merged.keys()) == list(KEYS)
    assert merged["fc.weight"].data == base["fc.weight"].data
    assert merged["conv.bias"].dtype == base["conv.bias"].dtype
    np.testing.assert_array_equal(merged["conv.bias"].numpy(), np.ones((3, 2), np.float32))


def test_layerwise_needs_negated_keys():
    with pytest.raises(ValueError, match="needs train_keys"):
        NoT(None, recovery_schedule={"layerwise_rounds": 2})


# ------------------------------------------------------------------ warm-up and teacher
def test_warmup_lr_rule():
    assert [warmup_lr(0.1, r, 4) for r in range(1, 7)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
    )
    assert warmup_lr(0.1, 1, 0) == 0.1
    log: list = []
    run_not(fake_grid(3, schedule_app(log)), rounds=5, warmup_rounds=2, base_lr=0.08)
    assert [c.get("lr") for _, c, _ in log] == [None] * 6 + [0.04] * 2 + [0.08] * 4


def test_distillation_sends_the_model_from_before_the_request():
    log: list = []
    strategy, seen = run_not(
        fake_grid(3, schedule_app(log)), rounds=4, distill_weight=0.5, distill_temperature=3.0
    )
    assert all(t is None for _, _, t in log[:6])
    for _, config, teacher in log[6:]:
        assert config["distill-weight"] == 0.5 and config["distill-temperature"] == 3.0
        for k in KEYS:  # the model before the negation (the end of round 2)
            np.testing.assert_array_equal(teacher[k].numpy(), seen[2][k])
    model_bytes = 3 * TENSOR
    # round 3: 2 train messages with model + teacher, 2 evaluate messages with the model
    assert strategy.rounds[3].bytes_down == 2 * 2 * model_bytes + 2 * model_bytes


# ------------------------------------------------------------------ FedYogi
def test_yogi_is_flowers_fedyogi():
    strategy = recovery_strategy_for(RecoverySettings(server_optimizer="yogi", server_lr=0.01))
    assert isinstance(strategy, FedYogi) and strategy.eta == 0.01
    assert (strategy.beta_1, strategy.beta_2, strategy.tau) == (0.9, 0.99, 1e-3)
    cfg = parse_run_config({"recovery.server-optimizer": "yogi"})
    assert cfg.recovery_server_optimizer == "yogi"
    with pytest.raises(ValueError, match="server_momentum applies to"):
        RecoverySettings(server_optimizer="yogi", server_momentum=0.5)


# ------------------------------------------------------------------ run config
@pytest.mark.parametrize(
    "config,message",
    [
        ({"recovery.layerwise-rounds": -1}, r"recovery.layerwise-rounds must be >= 0, got -1"),
        (
            {"recovery.layerwise-rounds": 1.5},
            r"recovery.layerwise-rounds must be an integer, got 1.5",
        ),
        (
            {"recovery.layerwise-rounds": 2, "method": "ft"},
            r"recovery.layerwise-rounds .* needs method 'not', got 'ft'",
        ),
        ({"recovery.lr-warmup-rounds": -2}, r"recovery.lr-warmup-rounds must be >= 0, got -2"),
        (
            {"recovery.distill-weight": -0.5},
            r"recovery.distill-weight must be >= 0 \(0: off\), got -0.5",
        ),
        ({"recovery.distill-weight": "x"}, r"recovery.distill-weight must be a number, got 'x'"),
        ({"recovery.distill-temperature": 0}, r"recovery.distill-temperature must be > 0, got 0.0"),
        (
            {"recovery.distill-weight": 1.0, "method": "pgd"},
            r"recovery.distill-weight: supported for methods 'not' and 'ft' only, got 'pgd'",
        ),
        ({"recovery.lr-warmup-rounds": 3, "resume": True}, r"not supported with resume = true"),
        (
            {"recovery.server-optimizer": "yogi", "recovery.server-momentum": 0.5},
            r"recovery.server-momentum applies to recovery.server-optimizer 'sgd' only.*'yogi'",
        ),
    ],
)
def test_bad_schedule_settings_are_named(config, message):
    with pytest.raises(ConfigError, match=message):
        parse_run_config(config)


def _plan():
    model = build_model("cnn", (1, 8, 8), 10)
    return plan_negation(model, example_input((1, 8, 8)))


def test_schedule_reaches_not_and_ft_but_not_retrain():
    off = make_strategy(parse_run_config({}), _plan(), None)
    assert off.recovery_strategy is None  # all off: the paper's plain FedAvg recovery
    cfg = parse_run_config(
        {
            "recovery.layerwise-rounds": 3,
            "recovery.lr-warmup-rounds": 2,
            "recovery.distill-weight": 0.5,
        }
    )
    schedule = make_strategy(cfg, _plan(), None).recovery_strategy
    assert isinstance(schedule, RecoverySchedule)
    assert schedule.train_keys == ("conv1.weight", "conv1.bias")
    assert (
        schedule.layerwise_rounds,
        schedule.warmup_rounds,
        schedule.base_lr,
        schedule.distill_weight,
    ) == (3, 2, cfg.lr, 0.5)
    ft = make_strategy(
        parse_run_config({"method": "ft", "recovery.distill-weight": 0.5, "recovery.lr": 0.1}),
        _plan(),
        None,
    )
    assert ft.recovery_strategy.distill_weight == 0.5 and ft.recovery_strategy.base_lr == 0.1
    retrain = parse_run_config({"method": "retrain", "recovery.lr-warmup-rounds": 2})
    assert recovery_settings(retrain) == RecoverySettings()


# ------------------------------------------------------------------ the real ClientApp
def _reply(run_config: dict, config: dict, teacher: ArrayRecord | None = None):
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10)
    arrays = ArrayRecord(model.state_dict())
    content = RecordDict({"arrays": arrays, "config": ConfigRecord(config)})
    if teacher is not None:
        content["teacher"] = teacher
    msg = Message(content, dst_node_id=1, message_type="train")
    ctx = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 3},
        state=RecordDict(),
        run_config=dict(run_config),
    )
    reply = app(msg, ctx)
    assert not reply.has_error(), reply.error.reason
    return arrays, reply.content["arrays"]


def test_client_trains_and_sends_only_the_train_keys():
    keys = ["conv1.weight", "conv1.bias"]
    before, after = _reply(RUN, {"server-round": 3, "train-keys": keys})
    assert list(after.keys()) == keys
    for k in keys:
        assert not np.allclose(after[k].numpy(), before[k].numpy())
    _, full = _reply(RUN, {"server-round": 3})
    assert not np.allclose(after["conv1.weight"].numpy(), full["conv1.weight"].numpy())
    from not_flower.app.client_app import _model  # the cached model: nothing stays frozen

    assert all(p.requires_grad for p in _model("cnn", (1, 8, 8), 10).parameters())
    with pytest.raises(ValueError, match="not tensors of the model"):
        _reply(RUN, {"server-round": 3, "train-keys": ["nope.weight"]})


def test_client_distils_from_the_teacher_it_is_sent():
    plain = _reply(RUN, {"server-round": 3})[1]
    torch.manual_seed(1)
    teacher = ArrayRecord(build_model("cnn", (1, 8, 8), 10).state_dict())
    zero = _reply(RUN, {"server-round": 3}, teacher)[1]  # no weight: the teacher is ignored
    for k in plain.keys():
        np.testing.assert_array_equal(zero[k].numpy(), plain[k].numpy())
    distilled = _reply(
        RUN, {"server-round": 3, "distill-weight": 1.0, "distill-temperature": 2.0}, teacher
    )[1]
    assert not np.allclose(distilled["fc2.weight"].numpy(), plain["fc2.weight"].numpy())
    with pytest.raises(ValueError, match="no .teacher. ArrayRecord"):
        _reply(RUN, {"server-round": 3, "distill-weight": 1.0})


def test_everything_on_through_not_flower_s_client_app():
    """NoT from the run config over real not-flower ClientApps (fake grid, digits)."""
    cfg = parse_run_config(
        {
            **RUN,
            "recovery.layerwise-rounds": 1,
            "recovery.distill-weight": 1.0,
            "recovery.lr-warmup-rounds": 2,
            "recovery.server-optimizer": "yogi",
            "recovery.server-lr": 0.01,
        }
    )
    nodes = {}
    for i in range(3):
        nodes[100 + i] = FakeNode(app, {"partition-id": i, "num-partitions": 3})
        nodes[100 + i].context.run_config = to_run_config(cfg)
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10)
    strategy = make_strategy(cfg, plan_negation(model, example_input((1, 8, 8))), None)
    strategy.keep_rounds = None
    strategy.request_unlearning("0", at_round=2)
    seen: dict = {}
    random.seed(0)
    strategy.start(
        FakeGrid(nodes),
        ArrayRecord(model.state_dict()),
        num_rounds=3,
        evaluate_fn=lambda r, a: seen.__setitem__(r, {k: v.numpy().copy() for k, v in a.items()}),
    )
    rounds = strategy.rounds
    assert not any(rounds[r].rejected_train for r in rounds)
    model_bytes = arrayrecord_nbytes(ArrayRecord(model.state_dict()))
    conv1 = arrayrecord_nbytes(
        ArrayRecord({k: v for k, v in model.state_dict().items() if k.startswith("conv1.")})
    )
    assert rounds[1].bytes_up == 3 * model_bytes
    assert rounds[2].bytes_up == 2 * conv1
    assert rounds[2].bytes_down == 2 * 2 * model_bytes + 2 * model_bytes  # + teacher
    for k in seen[1]:
        moved = not np.array_equal(seen[2][k], seen[1][k])
        assert moved == k.startswith("conv1.")
        assert not np.array_equal(seen[3][k], seen[2][k])  # FedYogi moves every tensor


@pytest.mark.e2e
def test_schedule_through_flowers_simulation(tmp_path):
    """Every option on, through the real app in Flower's simulation engine (3 nodes)."""
    from not_flower.experiments.simulation import simulate  # pylint: disable=import-outside-toplevel

    results = simulate(
        {
            "out-dir": str(tmp_path),
            "num-train-rounds": 2,
            "recovery.rounds": 2,
            "unlearn.clients": "0",
            "lr": 0.02,
            "local-epochs": 1,
            "recovery.layerwise-rounds": 1,
            "recovery.lr-warmup-rounds": 2,
            "recovery.distill-weight": 0.5,
            "recovery.server-optimizer": "yogi",
            "recovery.server-lr": 0.01,
            "recovery.run-to-cap": True,
        },
        num_supernodes=3,
    )
    state = build_model("cnn", (1, 8, 8), 10).state_dict()
    model_bytes = arrayrecord_nbytes(ArrayRecord(state))
    conv1 = arrayrecord_nbytes(ArrayRecord({k: state[k] for k in ("conv1.weight", "conv1.bias")}))
    rows = results["rounds"]
    assert [r["phase"] for r in rows] == ["init", "train", "train", "recovery", "recovery"]
    assert [r["bytes_up"] for r in rows[3:]] == [2 * conv1, 2 * model_bytes]
    # recovery: model + teacher down to the 2 trainers, the model to the 2 evaluators
    assert [r["bytes_down"] for r in rows[3:]] == [6 * model_bytes] * 2
    assert all(r["participants"] == [1, 2] for r in rows[3:])
    assert np.isfinite(results["models"]["recovered"]["test_acc"])
