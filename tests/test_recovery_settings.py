"""The recovery settings record: its checks, NoT/FT built from it, the app's mapping."""

from __future__ import annotations

import dataclasses

import pytest
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM

from not_flower.app.strategy_builders import recovery_settings
from not_flower.common.config import parse_run_config
from strategies import NoT, RecoverySettings
from strategies.baselines import FT
from strategies.negation_arrays import NegationPlan
from strategies.recovery_schedule import RecoverySchedule

PLAN = NegationPlan(layers=("conv",), keys=("conv.weight", "conv.bias"))


# ------------------------------------------------------------------ the one check
@pytest.mark.parametrize(
    "fields,message",
    [
        (
            {"server_optimizer": "rmsprop"},
            r"RecoverySettings.server_optimizer must be one of \('sgd', 'adam', 'yogi'\), "
            r"got 'rmsprop'",
        ),
        ({"server_momentum": 1.0}, r"server_momentum must be in \[0, 1\), got 1.0"),
        ({"server_momentum": -0.1}, r"server_momentum must be in \[0, 1\), got -0.1"),
        ({"server_momentum": "x"}, r"server_momentum must be a number, got 'x'"),
        ({"server_lr": 0.0}, r"RecoverySettings.server_lr must be > 0, got 0.0"),
        ({"server_lr": None}, r"server_lr must be a number, got None"),
        (
            {"server_optimizer": "adam", "server_momentum": 0.5},
            r"server_momentum applies to server_optimizer='sgd' only; "
            r"got server_momentum=0.5 with 'adam'",
        ),
        (
            {"lr": -0.01},
            r"RecoverySettings.lr must be >= 0 \(None or 0: the training's\), got -0.01",
        ),
        ({"lr": True}, r"RecoverySettings.lr must be a number or None, got True"),
        ({"local_epochs": -1}, r"local_epochs must be an integer >= 0 or None, got -1"),
        ({"local_epochs": 1.5}, r"local_epochs must be an integer >= 0 or None, got 1.5"),
        ({"fraction_train": 0.0}, r"fraction_train must be in \(0, 1\] or None, got 0.0"),
        ({"fraction_train": 1.5}, r"fraction_train must be in \(0, 1\] or None, got 1.5"),
        ({"fraction_train": "half"}, r"fraction_train must be a number or None, got 'half'"),
        ({"layerwise_rounds": -1}, r"layerwise_rounds must be an integer >= 0, got -1"),
        ({"warmup_rounds": 2.5}, r"warmup_rounds must be an integer >= 0, got 2.5"),
        ({"base_lr": "x"}, r"base_lr must be a number or None, got 'x'"),
        (
            {"warmup_rounds": 2},
            r"warm-up \(warmup_rounds=2\) needs base_lr > 0 .*got base_lr=None, lr=None",
        ),
        (
            {"warmup_rounds": 2, "base_lr": 0.0, "lr": 0.1},
            r"needs base_lr > 0 .*got base_lr=0.0, lr=0.1",
        ),
        ({"distill_weight": -0.5}, r"distill_weight must be >= 0 \(0: off\), got -0.5"),
        ({"distill_weight": None}, r"distill_weight must be a number, got None"),
        ({"distill_temperature": 0.0}, r"distill_temperature must be > 0, got 0.0"),
    ],
)
def test_bad_values_are_refused_naming_field_and_value(fields, message):
    with pytest.raises(ValueError, match=message):
        RecoverySettings(**fields)


def test_defaults_are_the_papers_recovery_and_zero_reads_as_none():
    default = RecoverySettings()
    assert not default.scheduled
    assert default.train_config() == ConfigRecord({})
    assert RecoverySettings(lr=0.0, local_epochs=0) == default
    assert default.warmup_base_lr == 0.0
    settings = RecoverySettings(lr=0.02, local_epochs=4, warmup_rounds=3)
    assert dict(settings.train_config()) == {"lr": 0.02, "local-epochs": 4}
    assert settings.scheduled and settings.warmup_base_lr == 0.02  # base_lr None: lr
    assert RecoverySettings(lr=0.02, base_lr=0.1).warmup_base_lr == 0.1
    for field in ("layerwise_rounds", "distill_weight"):
        assert RecoverySettings(**{field: 1}).scheduled
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lr = 0.5  # type: ignore[misc]


# ------------------------------------------------------------------ NoT / FT from it
def _same_strategy(a: NoT, b: NoT) -> None:
    """The same settings in every place NoT puts them."""
    assert a.recovery == b.recovery
    assert a.recovery_config == b.recovery_config
    assert (a.recovery_optimizer, a.recovery_momentum, a.recovery_server_lr) == (
        b.recovery_optimizer,
        b.recovery_momentum,
        b.recovery_server_lr,
    )
    ra, rb = a.recovery_strategy, b.recovery_strategy
    assert type(ra) is type(rb)
    if isinstance(ra, RecoverySchedule):
        fields = ("train_keys", "layerwise_rounds", "warmup_rounds", "base_lr", "distill_weight")
        assert [getattr(ra, f) for f in fields] == [getattr(rb, f) for f in fields]
        assert ra.distill_temperature == rb.distill_temperature
        ra, rb = ra.strategy, rb.strategy
        assert type(ra) is type(rb)
    if ra is not None:
        assert vars(ra).keys() == vars(rb).keys()
        for key, value in vars(ra).items():
            if not callable(value):
                assert value == vars(rb)[key], key


@pytest.mark.parametrize(
    "record,keywords",
    [
        (RecoverySettings(), {}),
        (
            RecoverySettings(server_momentum=0.5, server_lr=1.5, lr=0.123, local_epochs=2),
            dict(
                recovery_momentum=0.5,
                recovery_server_lr=1.5,
                recovery_config={"lr": 0.123, "local-epochs": 2},
            ),
        ),
        (
            RecoverySettings(server_optimizer="adam", server_lr=0.05, fraction_train=0.5),
            dict(recovery_optimizer="adam", recovery_server_lr=0.05, recovery_fraction_train=0.5),
        ),
        (RecoverySettings(fraction_train=0.5), dict(recovery_fraction_train=0.5)),
        (
            RecoverySettings(layerwise_rounds=2, warmup_rounds=3, base_lr=0.1, distill_weight=0.5),
            dict(
                recovery_schedule={
                    "layerwise_rounds": 2,
                    "warmup_rounds": 3,
                    "base_lr": 0.1,
                    "distill_weight": 0.5,
                }
            ),
        ),
    ],
)
def test_not_from_the_record_equals_not_from_the_former_keywords(record, keywords):
    _same_strategy(NoT(PLAN, recovery=record), NoT(PLAN, **keywords))
    if not record.layerwise_rounds:  # FT negates nothing: no layer-wise rounds
        _same_strategy(FT(recovery=record), FT(**keywords))


def test_the_record_builds_flowers_server_updates():
    assert NoT(PLAN).recovery_strategy is None  # the paper's: a fresh copy of its FedAvg
    momentum = NoT(PLAN, recovery=RecoverySettings(server_momentum=0.9)).recovery_strategy
    assert isinstance(momentum, FedAvgM) and momentum.server_momentum == 0.9
    adam = NoT(PLAN, recovery=RecoverySettings(server_optimizer="adam", server_lr=0.05))
    assert isinstance(adam.recovery_strategy, FedAdam) and adam.recovery_strategy.eta == 0.05
    sampled = NoT(PLAN, fraction_train=0.8, recovery=RecoverySettings(fraction_train=0.3))
    assert type(sampled.recovery_strategy) is FedAvg
    assert sampled.recovery_strategy.fraction_train == 0.3 and sampled.fraction_train == 0.8
    distill = NoT(PLAN, recovery=RecoverySettings(distill_weight=0.5, distill_temperature=3.0))
    assert isinstance(distill.recovery_strategy, RecoverySchedule)
    assert distill.recovery_strategy.distill_temperature == 3.0


def test_record_and_former_keywords_are_not_mixed():
    with pytest.raises(TypeError, match=r"not both: \['server_momentum'\] given beside recovery"):
        NoT(PLAN, recovery=RecoverySettings(), recovery_momentum=0.5)
    with pytest.raises(TypeError, match=r"not both: \['lr'\] given beside recovery"):
        NoT(PLAN, recovery=RecoverySettings(), recovery_config={"lr": 0.1})
    with pytest.raises(TypeError, match="recovery must be a RecoverySettings, got dict"):
        NoT(PLAN, recovery={"server_momentum": 0.5})
    with pytest.raises(TypeError, match=r"recovery_schedule: unknown keys \['warmup'\]"):
        NoT(PLAN, recovery_schedule={"warmup": 2})
    # other train-config entries go on beside the record's
    extra = NoT(PLAN, recovery=RecoverySettings(lr=0.1), recovery_config={"proximal-mu": 0.01})
    assert extra.recovery_config == {"lr": 0.1, "proximal-mu": 0.01}
    # a former keyword's bad value is refused by the record, naming its field
    with pytest.raises(ValueError, match=r"RecoverySettings.server_lr must be > 0, got 0.0"):
        FT(recovery_server_lr=0.0)


# ------------------------------------------------------------------ the app's mapping
def test_recovery_settings_maps_every_recovery_key_of_the_run_config():
    cfg = parse_run_config(
        {
            "method": "not",
            "lr": 0.03,
            "recovery.server-optimizer": "sgd",
            "recovery.server-momentum": 0.6,
            "recovery.server-lr": 1.2,
            "recovery.lr": 0.07,
            "recovery.local-epochs": 3,
            "recovery.fraction-train": 0.4,
            "recovery.layerwise-rounds": 2,
            "recovery.lr-warmup-rounds": 4,
            "recovery.distill-weight": 0.25,
            "recovery.distill-temperature": 3.5,
        }
    )
    assert recovery_settings(cfg) == RecoverySettings(
        server_optimizer="sgd",
        server_momentum=0.6,
        server_lr=1.2,
        lr=0.07,
        local_epochs=3,
        fraction_train=0.4,
        layerwise_rounds=2,
        warmup_rounds=4,
        base_lr=0.07,
        distill_weight=0.25,
        distill_temperature=3.5,
    )
    # recovery.lr 0: the warm-up ramps to lr, the clients keep the training's lr
    ft = parse_run_config({"method": "ft", "lr": 0.03, "recovery.lr-warmup-rounds": 4})
    assert recovery_settings(ft) == RecoverySettings(warmup_rounds=4, base_lr=0.03)
    yogi = parse_run_config({"recovery.server-optimizer": "yogi", "recovery.server-lr": 0.02})
    assert recovery_settings(yogi).server_optimizer == "yogi"
    assert recovery_settings(yogi).server_lr == 0.02


@pytest.mark.parametrize("method", ["pgd", "federaser", "fukd"])
def test_baselines_get_the_server_update_and_client_settings_but_no_schedule(method):
    run_config = {"method": method, "recovery.server-momentum": 0.5, "recovery.lr": 0.1}
    if method == "fukd":  # it distils on data no client gets
        run_config["fukd.server-data-fraction"] = 0.1
    cfg = parse_run_config(run_config)
    assert recovery_settings(cfg) == RecoverySettings(server_momentum=0.5, lr=0.1)


def test_retrain_gets_the_defaults():
    cfg = parse_run_config(
        {"method": "retrain", "recovery.server-momentum": 0.5, "recovery.lr": 0.1}
    )
    assert recovery_settings(cfg) == RecoverySettings()
