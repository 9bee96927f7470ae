"""Strategy builders of the registered methods (:data:`not_flower.common.methods.REGISTRY`).

Each builder takes the run config, the negation plan and ``out_dir`` plus the keyword
arguments every method's strategy shares (FedAvg sampling, request sources, and
``recovery``, the recovery settings of :func:`recovery_settings`; made by
:func:`not_flower.app.server_app.make_strategy`) and returns the strategy.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from not_flower.app.specs import data_spec
from not_flower.common.config import RunConfig
from not_flower.common.methods import REGISTRY
from not_flower.task.models import build_model
from not_flower.task.training import dataset_for, device, server_indices
from strategies.baselines import FT
from strategies.not_strategy import NoT
from strategies.recovery_settings import RecoverySettings


def recovery_settings(cfg: RunConfig) -> RecoverySettings:
    """The run's recovery settings, the one record every method's strategy gets.

    ``recovery.server-optimizer`` / ``-momentum`` / ``-lr`` are the server update
    (Flower's FedAvgM, FedAdam or FedYogi); ``recovery.lr`` and ``recovery.local-epochs``
    (0: as in training) go to the clients in the train config of recovery rounds, where
    :func:`not_flower.app.client_app.train_fn` reads them; ``recovery.fraction-train``
    (0: as ``fraction-train``) samples that share of the retained clients in recovery
    rounds only. Methods with a recovery schedule (the registry's ``recovery_schedule``:
    NoT and FT) also get ``recovery.layerwise-rounds``, ``recovery.lr-warmup-rounds``
    (ramping to ``recovery.lr``, or ``lr`` when that is 0), ``recovery.distill-weight``
    and ``-temperature``. Retrain, which does not recover, gets the defaults.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.

    Returns
    -------
    RecoverySettings
        See :class:`strategies.recovery_settings.RecoverySettings`.
    """
    spec = REGISTRY[cfg.method]
    if not spec.recovers:  # Retrain, the reference, trains as the original training did
        return RecoverySettings()
    settings = RecoverySettings(
        server_optimizer=cfg.recovery_server_optimizer,
        server_momentum=cfg.recovery_server_momentum,
        server_lr=cfg.recovery_server_lr,
        lr=cfg.recovery_lr or None,
        local_epochs=cfg.recovery_local_epochs or None,
        fraction_train=cfg.recovery_fraction_train or None,
    )
    if not spec.recovery_schedule:
        return settings
    return replace(
        settings,
        layerwise_rounds=cfg.recovery_layerwise_rounds,
        warmup_rounds=cfg.recovery_lr_warmup_rounds,
        base_lr=cfg.recovery_lr if cfg.recovery_lr > 0 else cfg.lr,
        distill_weight=cfg.recovery_distill_weight,
        distill_temperature=cfg.recovery_distill_temperature,
    )


def build_not(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs) -> NoT:
    """NoT: negate the plan's layers at the request, then recover."""
    return NoT(plan, **kwargs)


def build_ft(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs) -> FT:
    """FT (and Retrain, FT from a fresh model with the request at round 1)."""
    return FT(**kwargs)


def _builder(cfg: RunConfig):
    data = dataset_for(data_spec(cfg))
    return data, lambda: build_model(cfg.model, data.input_shape, data.num_classes)


def build_pgd(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs):
    """PGD (:class:`strategies.pgd.PGD`): the target's projected gradient ascent."""
    from strategies.pgd import PGD, random_state_fn  # pylint: disable=import-outside-toplevel

    _, build = _builder(cfg)
    return PGD(
        epochs=cfg.pgd_epochs,
        lr=cfg.pgd_lr,
        momentum=cfg.momentum,
        stop_accuracy=cfg.pgd_stop_accuracy,
        radius_divisor=cfg.pgd_radius_divisor,
        random_model_fn=random_state_fn(build),
        seed=cfg.seed,
        param_keys=[name for name, _ in build().named_parameters()],
        **kwargs,
    )


def build_federaser(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs):
    """FedEraser (:class:`strategies.federaser.FedEraser`).

    Its history is kept in ``<out_dir>/federaser-history``.
    """
    from strategies.federaser import FedEraser  # pylint: disable=import-outside-toplevel

    if out_dir is None:
        raise ValueError("method 'federaser' needs out_dir (its history is stored there)")
    dataset_for(data_spec(cfg))  # as before: the data set is loaded when the strategy is built
    return FedEraser(
        store_dir=out_dir / REGISTRY["federaser"].history_dir,
        local_epochs=cfg.local_epochs,
        retain_interval=cfg.retain_interval,
        calibration_ratio=cfg.calibration_ratio,
        **kwargs,
    )


def build_fukd(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs):
    """FUKD (:class:`strategies.fukd.FUKD`), on the ``fukd.server-data-fraction`` no client gets."""
    from strategies.fukd import FUKD  # pylint: disable=import-outside-toplevel

    data, build = _builder(cfg)
    return FUKD(
        model=build(),
        server_x=data.x_train[server_indices(data_spec(cfg))],
        epochs=cfg.fukd_epochs,
        temperature=cfg.fukd_temperature,
        lr=cfg.lr,
        momentum=cfg.momentum,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=device(),
        **kwargs,
    )


__all__ = [
    "build_federaser",
    "build_fukd",
    "build_ft",
    "build_not",
    "build_pgd",
    "recovery_settings",
]
