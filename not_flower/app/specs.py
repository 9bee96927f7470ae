"""The small specs the lower layers take, built from the run config.

The task and evaluation layers never see the whole :class:`RunConfig`: the data pipeline
takes a :class:`~not_flower.task.spec.DataSpec` (:func:`data_spec`), the membership
attack's reference models a :class:`~not_flower.evaluation.reference_models.ReferenceSpec`
(:func:`reference_spec`). Both are pure functions of the run config.
"""

from __future__ import annotations

from not_flower.common.config import RunConfig
from not_flower.evaluation.reference_models import ReferenceSpec
from not_flower.task.spec import DataSpec

__all__ = ["data_spec", "reference_epochs", "reference_spec"]


def data_spec(cfg: RunConfig) -> DataSpec:
    """The run config's data spec: every value the data pipeline reads, nothing else.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.

    Returns
    -------
    DataSpec
        Equal (and so sharing the data caches) for two run configs that differ only in
        keys the data does not depend on.
    """
    return DataSpec(
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        train_subset=cfg.train_subset,
        test_subset=cfg.test_subset,
        partitioner=cfg.partitioner,
        dirichlet_alpha=cfg.dirichlet_alpha,
        seed=cfg.seed,
        val_fraction=cfg.val_fraction,
        server_data_fraction=cfg.server_data_fraction,
        backdoor_clients=cfg.backdoor_clients,
        backdoor_fraction=cfg.backdoor_fraction,
        backdoor_target=cfg.backdoor_target,
        backdoor_trigger_size=cfg.backdoor_trigger_size,
        mislabel_clients=cfg.mislabel_clients,
        mislabel_fraction=cfg.mislabel_fraction,
        style_clients=cfg.style_clients,
        canary_clients=cfg.canary_clients,
        canary_count=cfg.canary_count,
        canary_seed=cfg.canary_seed,
    )


def reference_epochs(cfg: RunConfig) -> int:
    """``mia.reference-epochs``, or ``num-train-rounds x local-epochs`` when it is 0.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.

    Returns
    -------
    int
        Central epochs of each reference model.
    """
    if cfg.mia_reference_epochs > 0:
        return cfg.mia_reference_epochs
    return max(1, cfg.num_train_rounds) * cfg.local_epochs


def reference_spec(cfg: RunConfig) -> ReferenceSpec:
    """The run config's reference models of the membership attack (``mia-*`` keys).

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.

    Returns
    -------
    ReferenceSpec
        ``num_models`` 0 when the attack is off (``mia.reference-models = 0``).
    """
    return ReferenceSpec(
        num_models=cfg.mia_reference_models,
        epochs=reference_epochs(cfg),
        cache_dir=cfg.mia_cache_dir,
        model=cfg.model,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        momentum=cfg.momentum,
    )
