"""Recovery-only settings (recovery.server-momentum, -server-lr, -lr, -local-epochs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

import tests.fakegrid  # noqa: F401  # sets flwr's TaskIdentity so that Messages can be built
from not_flower.app.client_app import app
from not_flower.app.server_app import make_strategy
from not_flower.app.strategy_builders import recovery_settings
from not_flower.common.config import ConfigError, parse_run_config
from not_flower.task.models import build_model
from strategies import NoT, RecoverySettings, plan_negation
from strategies.baselines import FT

RUN = {"local-epochs": 1, "lr": 0.05, "seed": 0, "batch-size": 64}  # 64: a fast test


def _train(run_config: dict, config: dict) -> dict[str, np.ndarray]:
    """One real ``train`` message through not-flower's ClientApp handler."""
    torch.manual_seed(0)
    torch_model = build_model("cnn", (1, 8, 8), 10)
    arrays = ArrayRecord(torch_model.state_dict())
    msg = Message(
        RecordDict({"arrays": arrays, "config": ConfigRecord(config)}),
        dst_node_id=1,
        message_type="train",
    )
    ctx = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 3},
        state=RecordDict(),
        run_config=dict(run_config),
    )
    reply = app(msg, ctx)  # the real ClientApp (with its mods), as a SuperNode calls it
    before = {k: v.numpy() for k, v in arrays.items()}
    after = {k: v.numpy() for k, v in reply.content["arrays"].items()}
    return {k: after[k] - before[k] for k in before}


def _same(a: dict, b: dict) -> bool:
    return all(np.allclose(a[k], b[k], atol=1e-7) for k in a)


def test_client_takes_lr_and_epochs_from_the_message_config():
    base = _train(RUN, {"server-round": 3, "lr": 0.05})
    # the message's lr and local-epochs override the run config's...
    assert _same(_train(RUN, {"server-round": 3, "lr": 0.05, "local-epochs": 1}), base)
    two = _train(RUN, {"server-round": 3, "lr": 0.05, "local-epochs": 2})
    assert _same(two, _train({**RUN, "local-epochs": 2}, {"server-round": 3}))
    assert not _same(two, base)
    tiny = _train(RUN, {"server-round": 3, "lr": 1e-6})
    size = lambda d: sum(float(np.abs(v).sum()) for v in d.values())  # noqa: E731
    assert size(tiny) < 1e-3 * size(base)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("recovery.server-momentum", 1.0, r"recovery.server-momentum must be in \[0, 1\), got 1.0"),
        ("recovery.server-momentum", -0.1, r"recovery.server-momentum must be in \[0, 1\)"),
        ("recovery.server-lr", 0.0, r"recovery.server-lr must be > 0, got 0.0"),
        ("recovery.lr", -0.01, r"recovery.lr must be >= 0 \(0: the same as lr\), got -0.01"),
        ("recovery.local-epochs", -1, r"recovery.local-epochs"),
        ("recovery.fraction-train", 1.5, r"recovery.fraction-train must be in \[0, 1\], got 1.5"),
        ("recovery.lr", "fast", r"recovery.lr must be a number, got 'fast'"),
        (
            "recovery.server-optimizer",
            "rmsprop",
            r"recovery.server-optimizer.*'rmsprop'.*sgd.*adam.*yogi",
        ),
    ],
)
def test_bad_recovery_settings_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_run_config({key: value})


def test_recovery_settings_from_run_config():
    cfg = parse_run_config(
        {
            "recovery.server-momentum": 0.7,
            "recovery.server-lr": 1.5,
            "recovery.lr": 0.1,
            "recovery.local-epochs": 3,
        }
    )
    settings = recovery_settings(cfg)
    assert (settings.server_optimizer, settings.server_momentum, settings.server_lr) == (
        "sgd",
        0.7,
        1.5,
    )
    assert dict(settings.train_config()) == {"lr": 0.1, "local-epochs": 3}
    assert settings.fraction_train is None
    # defaults: plain FedAvg recovery with the training's settings (the paper's)
    default = parse_run_config({})
    assert recovery_settings(default) == RecoverySettings(base_lr=default.lr)  # warm-up's only
    assert dict(recovery_settings(default).train_config()) == {}
    adam = parse_run_config({"recovery.server-optimizer": "adam", "recovery.server-lr": 0.01})
    assert recovery_settings(adam).server_optimizer == "adam"


@pytest.mark.parametrize("method,applies", [("not", True), ("ft", True), ("retrain", False)])
def test_recovery_settings_reach_not_and_ft_but_not_retrain(method, applies):
    cfg = parse_run_config({"method": method, "recovery.server-momentum": 0.5, "recovery.lr": 0.1})
    model = build_model("cnn", (1, 8, 8), 10)
    from not_flower.task.models import example_input  # pylint: disable=import-outside-toplevel

    strategy = make_strategy(cfg, plan_negation(model, example_input((1, 8, 8))), None)
    assert isinstance(strategy, NoT if method == "not" else FT)
    assert strategy.recovery_momentum == (0.5 if applies else 0.0)
    assert strategy.recovery_config == ({"lr": 0.1} if applies else {})


def test_adam_with_server_momentum_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"recovery.server-momentum applies to "
        r"recovery.server-optimizer 'sgd' only",
    ):
        parse_run_config({"recovery.server-optimizer": "adam", "recovery.server-momentum": 0.5})
    with pytest.raises(ValueError, match="server_momentum applies to server_optimizer='sgd'"):
        NoT(["fc.weight"], recovery_optimizer="adam", recovery_momentum=0.5)
    with pytest.raises(ValueError, match=r"server_optimizer must be one of .*'rmsprop'"):
        NoT(["fc.weight"], recovery_optimizer="rmsprop")


def fedadam_step(delta, m, v, server_round, eta, beta_1=0.9, beta_2=0.99, tau=1e-3):
    """Flower's FedAdam server step, written out: moments from zero, bias correction by
    the round number (``server_round + 1``)."""
    m = beta_1 * (0 if m is None else m) + (1 - beta_1) * delta
    v = beta_2 * (0 if v is None else v) + (1 - beta_2) * delta**2
    eta_norm = eta * np.sqrt(1 - beta_2 ** (server_round + 1)) / (1 - beta_1 ** (server_round + 1))
    return m, v, eta_norm * m / (np.sqrt(v) + tau)


def test_adam_applies_in_recovery_only():
    """recovery.server-optimizer 'adam' is Flower's FedAdam, a fresh one from the request."""
    from tests.test_strategy import make_grid, run

    grid = make_grid(n=3, with_query=True)
    seen = {}
    strategy = NoT(
        ["fc.weight"],
        min_train_nodes=1,
        min_evaluate_nodes=1,
        recovery_optimizer="adam",
        recovery_server_lr=0.05,
    )
    strategy.request_unlearning("0", at_round=3)
    run(
        strategy,
        grid,
        rounds=4,
        evaluate_fn=lambda r, a: seen.__setitem__(r, a["conv.weight"].numpy().copy()),
    )
    w3 = np.array([10.0, 11.0, 12.0])
    np.testing.assert_allclose(
        seen[2], seen[1] + float(np.dot(w3 / w3.sum(), [0.1, 0.2, 0.3])), rtol=1e-5
    )  # before the request: plain FedAvg
    w2 = np.array([11.0, 12.0])
    shift = np.full_like(seen[2], float(np.dot(w2 / w2.sum(), [0.2, 0.3])))  # clients 1, 2
    m, v, up = fedadam_step(shift, None, None, 3, 0.05)
    np.testing.assert_allclose(seen[3], seen[2] + up, rtol=1e-5)
    _, _, up = fedadam_step(shift, m, v, 4, 0.05)
    np.testing.assert_allclose(seen[4], seen[3] + up, rtol=1e-5)
    assert not np.allclose(seen[4] - seen[3], shift, rtol=1e-2)  # not FedAvg's step


def test_recovery_fraction_train_samples_recovery_rounds_only():
    """recovery.fraction-train: every client trains before the request; half of the
    retained ones per recovery round after it (the forgotten one never)."""
    from tests.test_strategy import make_grid, node_of, run

    grid = make_grid(n=5, with_query=True)
    target = node_of(grid, 0)
    cfg = parse_run_config({"recovery.fraction-train": 0.5})
    assert recovery_settings(cfg).fraction_train == 0.5
    strategy = NoT(
        ["fc.weight"], min_train_nodes=1, min_evaluate_nodes=1, recovery=recovery_settings(cfg)
    )
    strategy.request_unlearning("0", at_round=3)
    run(strategy, grid, rounds=5)
    assert [len(strategy.rounds[r].train_replied) for r in (1, 2)] == [5, 5]
    for r in (3, 4, 5):
        replied = strategy.rounds[r].train_replied
        assert len(replied) == 2 and target not in replied  # int(0.5 * 4 retained)
    with pytest.raises(ValueError, match=r"fraction_train must be in \(0, 1\] or None, got 0.0"):
        NoT(["fc.weight"], recovery_fraction_train=0.0)
