"""Run-config parsing: defaults agree with pyproject.toml, bad values are named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from not_flower.common.config import ConfigError, RunConfig, parse_run_config, to_run_config
from not_flower.common.settings import flatten

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_defaults_are_the_config_defaults():
    """pyproject.toml's tables, flattened, are the declared keys, in the declared order,
    with the declared defaults."""
    flwr_config = flatten(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    )
    assert list(flwr_config) == list(to_run_config(RunConfig()))
    assert flwr_config == to_run_config(RunConfig())
    assert parse_run_config(flwr_config) == RunConfig()


def test_values_are_parsed():
    cfg = parse_run_config(
        {
            "unlearn.clients": "3, 1,3",
            "negate.bias": "false",
            "num-train-rounds": 7.0,
            "backdoor.clients": "0",
        }
    )
    assert cfg.unlearn_clients == ("3", "1") and cfg.negate_bias is False
    assert cfg.num_train_rounds == 7 and cfg.backdoor_clients == ("0",)
    assert parse_run_config({"unlearn.clients": ""}).total_rounds == 35
    assert parse_run_config({"unlearn.clients": "", "recovery.rounds": 0}).total_rounds == 20
    assert parse_run_config({"method": "retrain"}).total_rounds == 20
    # training may be skipped only when starting from a checkpoint
    assert parse_run_config({"init-checkpoint": "/x.pt", "num-train-rounds": 0}).total_rounds == 15
    with pytest.raises(ConfigError, match="num-train-rounds must be >= 1, got 0"):
        parse_run_config({"num-train-rounds": 0})


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("num-train-rounds", -1, "num-train-rounds must be >= 1, got -1"),
        ("num-train-rounds", 2.5, "num-train-rounds must be an integer, got 2.5"),
        ("recovery.rounds", 0, "recovery.rounds must be >= 1 when unlearn.clients is set, got 0"),
        ("dirichlet-alpha", 0, "dirichlet-alpha must be > 0, got 0.0"),
        ("fraction-train", 0.0, r"fraction-train must be in \(0, 1\], got 0.0"),
        ("fraction-train", 1.5, r"fraction-train must be in \(0, 1\], got 1.5"),
        ("val-fraction", 1.0, r"val-fraction must be in \[0, 1\), got 1.0"),
        ("dataset", "imagenet", "unknown dataset 'imagenet'; choose one of: digits, mnist"),
        ("model", "gpt", "unknown model 'gpt'; choose one of: cnn, mlp, resnet18, vit"),
        ("partitioner", "shards", "unknown partitioner 'shards'; choose one of: iid, dirichlet"),
        ("negate.batchnorm-policy", "flip", "unknown negate.batchnorm-policy 'flip'"),
        ("lr", "fast", "lr must be a number, got 'fast'"),
        ("lr", float("nan"), "lr must be a finite number"),
        ("negate.bias", "maybe", "negate.bias must be true or false, got 'maybe'"),
        ("no-such-key", 1, r"unknown run-config key\(s\) \['no-such-key'\]"),
        ("recovery-rounds", 3, "'recovery-rounds' was renamed to 'recovery.rounds'"),
        ("num-rounds", 3, r"\['num-rounds'\]; nearest: num-train-rounds"),
    ],
)
def test_bad_values_are_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_run_config({key: value})


def test_choice_lists_agree_with_the_strategies():
    from not_flower.common import config
    from strategies import negation, not_strategy

    assert config.BATCHNORM_POLICIES == negation.BATCHNORM_POLICIES
    assert config.RECOVERY_OPTIMIZERS == not_strategy.RECOVERY_OPTIMIZERS
