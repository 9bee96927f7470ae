"""Strategy builders of the registered methods (:data:`not_flower.methods.REGISTRY`).

Each builder takes the run config, the negation plan and ``out_dir`` plus the keyword
arguments every method's strategy shares (FedAvg sampling, request sources, recovery
options; made by :func:`not_flower.server_app.make_strategy`) and returns the strategy.
"""

from __future__ import annotations

from pathlib import Path

from strategies.baselines import FT
from strategies.not_strategy import NoT

from .config import RunConfig
from .models import build_model
from .task import dataset_for, device, server_indices


def build_not(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs) -> NoT:
    """NoT: negate the plan's layers at the request, then recover."""
    return NoT(plan, **kwargs)


def build_ft(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs) -> FT:
    """FT (and Retrain, FT from a fresh model with the request at round 1)."""
    return FT(**kwargs)


def _builder(cfg: RunConfig):
    data = dataset_for(cfg)
    return data, lambda: build_model(cfg.model, data.input_shape, data.num_classes)


def build_pgd(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs):
    """PGD (:class:`strategies.pgd.PGD`): the target's projected gradient ascent."""
    from strategies.pgd import PGD, random_state_fn  # pylint: disable=import-outside-toplevel

    _, build = _builder(cfg)
    return PGD(epochs=cfg.pgd_epochs, lr=cfg.pgd_lr, momentum=cfg.momentum,
               stop_accuracy=cfg.pgd_stop_accuracy, radius_divisor=cfg.pgd_radius_divisor,
               random_model_fn=random_state_fn(build), seed=cfg.seed,
               param_keys=[name for name, _ in build().named_parameters()], **kwargs)


def build_federaser(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs):
    """FedEraser (:class:`strategies.federaser.FedEraser`), history in ``<out_dir>/federaser-history``."""
    from strategies.federaser import FedEraser  # pylint: disable=import-outside-toplevel

    if out_dir is None:
        raise ValueError("method 'federaser' needs out_dir (its history is stored there)")
    dataset_for(cfg)  # as before: the data set is loaded when the strategy is built
    return FedEraser(store_dir=out_dir / "federaser-history", local_epochs=cfg.local_epochs,
                     retain_interval=cfg.retain_interval,
                     calibration_ratio=cfg.calibration_ratio, **kwargs)


def build_fukd(cfg: RunConfig, plan, *, out_dir: Path | None = None, **kwargs):
    """FUKD (:class:`strategies.fukd.FUKD`), on the ``server-data-fraction`` no client gets."""
    from strategies.fukd import FUKD  # pylint: disable=import-outside-toplevel

    data, build = _builder(cfg)
    return FUKD(model=build(), server_x=data.x_train[server_indices(cfg)],
                epochs=cfg.fukd_epochs, temperature=cfg.fukd_temperature, lr=cfg.lr,
                momentum=cfg.momentum, batch_size=cfg.batch_size, seed=cfg.seed,
                device=device(), **kwargs)


__all__ = ["build_federaser", "build_fukd", "build_ft", "build_not", "build_pgd"]
