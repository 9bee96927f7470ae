"""Run configuration: every key the app reads, declared once, and its validation.

Each :class:`RunConfig` field is declared with :func:`not_flower.common.settings.setting`:
its run-config key, default, group, allowed values and one line of help. The keys of a
group live in a nested table of ``pyproject.toml`` (``[tool.flwr.app.config.recovery]``),
which Flower flattens to dotted keys (``recovery.rounds``); ``pyproject.toml`` holds the
same defaults (a test checks that the two agree) and the docs' settings reference is
generated from the declarations. :func:`parse_run_config` turns Flower's
``context.run_config`` into a :class:`RunConfig` or raises :class:`ConfigError` naming
the bad key, the bad value and what is allowed (a key's old flat name: "renamed to").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from not_flower.common.config_checks import check_run_config
from not_flower.common.methods import BASELINE_METHODS as _BASELINES
from not_flower.common.methods import METHOD_NAMES, REGISTRY
from not_flower.common.run_settings import DATASETS, MODELS, PARTITIONERS, RunSettings
from not_flower.common.scenario_settings import ScenarioSettings
from not_flower.common.settings import (
    ConfigError,
    check_keys,
    declarations,
    parse_value,
    to_text,
)
from not_flower.common.unlearning_settings import (
    BATCHNORM_POLICIES,
    RECOVERY_OPTIMIZERS,
    UNLEARN_MODES,
    UnlearningSettings,
)

#: The allowed ``method`` values: every method of the registry (:mod:`not_flower.common.methods`).
METHODS = METHOD_NAMES
#: The baseline unlearning methods besides FT and Retrain (PGD, FedEraser, FUKD in the
#: registry): client-wise forgetting only.
BASELINE_METHODS = _BASELINES

__all__ = [
    "BASELINE_METHODS",
    "BATCHNORM_POLICIES",
    "DATASETS",
    "METHODS",
    "MODELS",
    "PARTITIONERS",
    "RECOVERY_OPTIMIZERS",
    "UNLEARN_MODES",
    "ConfigError",
    "RunConfig",
    "parse_run_config",
    "to_run_config",
]


@dataclass(frozen=True)
class RunConfig(ScenarioSettings, UnlearningSettings, RunSettings):
    """Typed run configuration: one declared field per run-config key.

    The fields are declared in :class:`not_flower.common.run_settings.RunSettings`
    (top-level keys), :class:`not_flower.common.unlearning_settings.UnlearningSettings` and
    :class:`not_flower.common.scenario_settings.ScenarioSettings` (the tables), in that order.
    """

    @property
    def unlearn_clients(self) -> tuple[str, ...]:
        """Every client named in ``unlearn.clients`` (all requests of a sequence)."""
        return tuple(dict.fromkeys(c for group in self.unlearn_groups for c in group))

    @property
    def num_requests(self) -> int:
        """Requests the run config schedules (``unlearn.clients="0;3"`` is two)."""
        return len(self.unlearn_groups)

    def request_round(self, index: int) -> int:
        """Round before which the ``index``-th scheduled request applies (1-based rounds)."""
        if not REGISTRY[self.method].recovers:  # Retrain: the targets are out from round 1
            return 1
        return self.num_train_rounds + index * self.recovery_rounds + 1

    @property
    def total_rounds(self) -> int:
        """Rounds of the whole run.

        ``not``/``ft``: ``num-train-rounds + recovery.rounds`` (a request made during the
        run, from ``request-dir`` or a ``forget-me`` node, gets the rounds left after it);
        ``retrain``: as many rounds as the original training, without the targets.
        """
        if not REGISTRY[self.method].recovers:
            return self.num_train_rounds
        return self.num_train_rounds + self.recovery_rounds * max(1, self.num_requests)


def parse_run_config(run_config: Mapping) -> RunConfig:
    """Validate Flower's run config and return a :class:`RunConfig`.

    Parameters
    ----------
    run_config : Mapping
        ``context.run_config`` (dotted keys, as Flower flattens the tables). Missing keys
        take the defaults.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        For an unknown or renamed key or a value out of range; the message names both.
    """
    check_keys(run_config, RunConfig)
    values = {
        name: parse_value(decl, run_config[decl.key])
        for name, decl in declarations(RunConfig)
        if decl.key in run_config
    }
    cfg = RunConfig(**values)
    check_run_config(cfg)
    return cfg


def to_run_config(cfg: RunConfig) -> dict:
    """Inverse of :func:`parse_run_config`: a dict with Flower's (dotted) keys."""
    return {decl.key: to_text(decl, getattr(cfg, name)) for name, decl in declarations(RunConfig)}
