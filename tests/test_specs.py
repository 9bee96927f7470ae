"""The small specs the task and evaluation layers take instead of the whole run config."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from not_flower.app.specs import data_spec, reference_spec
from not_flower.common.config import RunConfig, parse_run_config
from not_flower.evaluation.reference_models import ReferenceSpec
from not_flower.task import DataSpec
from not_flower.task.training import client_canaries, client_data, dataset_for, server_indices

DATA_FIELDS = [f.name for f in fields(DataSpec)]


def _distinct_values() -> dict:
    """A value for every data field that differs from RunConfig's default (and each other)."""
    out = {}
    for i, name in enumerate(DATA_FIELDS):
        default = getattr(RunConfig(), name)
        if isinstance(default, tuple):
            out[name] = (str(i), str(i + 100))
        elif isinstance(default, str):
            out[name] = f"value-{i}"
        elif isinstance(default, float):
            out[name] = default + 0.001 * (i + 1)
        else:
            out[name] = default + i + 1
    return out


def test_every_data_field_is_a_run_config_field_with_the_same_default():
    names = {f.name for f in fields(RunConfig)}
    assert set(DATA_FIELDS) <= names, set(DATA_FIELDS) - names
    assert data_spec(RunConfig()) == DataSpec()
    assert data_spec(parse_run_config({})) == DataSpec()


def test_the_data_spec_takes_every_field_from_the_matching_run_config_value():
    values = _distinct_values()
    spec = data_spec(replace(RunConfig(), **values))
    for name in DATA_FIELDS:
        assert getattr(spec, name) == values[name], name


def test_the_data_spec_is_frozen_and_hashable():
    spec = data_spec(RunConfig())
    assert hash(spec) == hash(DataSpec())
    with pytest.raises(AttributeError):
        spec.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "other",
    [
        {"recovery.rounds": 3},
        {"method": "retrain"},
        {"local-epochs": 1, "lr": 0.01, "mia.reference-models": 2},
    ],
)
def test_run_configs_that_differ_only_off_the_data_give_one_spec_and_share_the_cache(other):
    base = parse_run_config({"partitioner": "dirichlet", "seed": 3})
    varied = parse_run_config({"partitioner": "dirichlet", "seed": 3, **other})
    assert varied != base
    assert data_spec(varied) == data_spec(base)
    assert hash(data_spec(varied)) == hash(data_spec(base))
    # one cache entry: the very same object, not an equal copy
    assert client_data(data_spec(varied), 1, 3) is client_data(data_spec(base), 1, 3)


@pytest.mark.parametrize(
    "key, value",
    [("seed", 4), ("val-fraction", 0.2), ("backdoor.clients", "1"), ("style.clients", "0")],
)
def test_a_data_key_changes_the_spec(key, value):
    assert data_spec(parse_run_config({key: value})) != data_spec(parse_run_config({}))


def test_the_low_layers_refuse_the_whole_run_config():
    cfg = parse_run_config({})
    for call in (
        lambda: dataset_for(cfg),
        lambda: server_indices(cfg),
        lambda: client_data(cfg, 0, 3),
        lambda: client_canaries(cfg, 0),
    ):
        with pytest.raises(TypeError, match="expected a DataSpec, got RunConfig"):
            call()


def test_the_reference_spec_takes_the_mia_and_training_values():
    cfg = parse_run_config(
        {
            "mia.reference-models": 4,
            "mia.reference-epochs": 3,
            "mia.cache-dir": "/tmp/refs",
            "model": "mlp",
            "batch-size": 32,
            "lr": 0.01,
            "momentum": 0.5,
        }
    )
    assert reference_spec(cfg) == ReferenceSpec(
        num_models=4,
        epochs=3,
        cache_dir="/tmp/refs",
        model="mlp",
        batch_size=32,
        lr=0.01,
        momentum=0.5,
    )


def test_reference_epochs_default_to_the_federated_training_length():
    cfg = parse_run_config({"num-train-rounds": 5, "local-epochs": 2})
    assert reference_spec(cfg).epochs == 10 and reference_spec(cfg).num_models == 0
    # Retrain-only runs with no training rounds still train the references one round's worth
    assert reference_spec(replace(cfg, num_train_rounds=0)).epochs == 2
