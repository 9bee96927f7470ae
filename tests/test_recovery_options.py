"""Recovery-only settings (recovery-server-momentum, -server-lr, -lr, -local-epochs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

import tests.fakegrid  # noqa: F401  # sets flwr's TaskIdentity so that Messages can be built
from not_flower.client_app import app
from not_flower.config import ConfigError, parse_run_config
from not_flower.models import build_model
from not_flower.server_app import make_strategy, recovery_options
from strategies import NoT, plan_negation
from strategies.baselines import FT

RUN = {"local-epochs": 1, "lr": 0.05, "seed": 0}


def _train(run_config: dict, config: dict) -> dict[str, np.ndarray]:
    """One real ``train`` message through not-flower's ClientApp handler."""
    torch.manual_seed(0)
    torch_model = build_model("cnn", (1, 8, 8), 10)
    arrays = ArrayRecord(torch_model.state_dict())
    msg = Message(RecordDict({"arrays": arrays, "config": ConfigRecord(config)}),
                  dst_node_id=1, message_type="train")
    ctx = Context(run_id=1, node_id=1, node_config={"partition-id": 0, "num-partitions": 3},
                  state=RecordDict(), run_config=dict(run_config))
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


@pytest.mark.parametrize("key,value,message", [
    ("recovery-server-momentum", 1.0, r"recovery-server-momentum must be in \[0, 1\), got 1.0"),
    ("recovery-server-momentum", -0.1, r"recovery-server-momentum must be in \[0, 1\)"),
    ("recovery-server-lr", 0.0, r"recovery-server-lr must be > 0, got 0.0"),
    ("recovery-lr", -0.01, r"recovery-lr must be >= 0 \(0: the same as lr\), got -0.01"),
    ("recovery-local-epochs", -1, r"recovery-local-epochs"),
    ("recovery-lr", "fast", r"recovery-lr must be a number, got 'fast'"),
])
def test_bad_recovery_settings_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_run_config({key: value})


def test_recovery_options_from_run_config():
    cfg = parse_run_config({"recovery-server-momentum": 0.7, "recovery-server-lr": 1.5,
                            "recovery-lr": 0.1, "recovery-local-epochs": 3})
    assert recovery_options(cfg) == {"recovery_momentum": 0.7, "recovery_server_lr": 1.5,
                                     "recovery_config": {"lr": 0.1, "local-epochs": 3}}
    # defaults: plain FedAvg recovery with the training settings (the paper's)
    assert recovery_options(parse_run_config({})) == {
        "recovery_momentum": 0.0, "recovery_server_lr": 1.0, "recovery_config": {}}


@pytest.mark.parametrize("method,applies", [("not", True), ("ft", True), ("retrain", False)])
def test_recovery_options_reach_not_and_ft_but_not_retrain(method, applies):
    cfg = parse_run_config({"method": method, "recovery-server-momentum": 0.5,
                            "recovery-lr": 0.1})
    model = build_model("cnn", (1, 8, 8), 10)
    from not_flower.models import example_input  # pylint: disable=import-outside-toplevel

    strategy = make_strategy(cfg, plan_negation(model, example_input((1, 8, 8))), None)
    assert isinstance(strategy, NoT if method == "not" else FT)
    assert strategy.recovery_momentum == (0.5 if applies else 0.0)
    assert strategy.recovery_config == ({"lr": 0.1} if applies else {})
