"""Checks of a run config that need no data and no connected node: before anything starts.

:mod:`not_flower.common.config` checks each value alone and the values together. This
module adds what is known without loading data or connecting nodes: the classes of each
data set (one table, also used by :mod:`not_flower.task.data`), bounds that need only the
number of clients, and the files the run reads or writes. ``not_flower/launch/cli.py``
calls :func:`check_before_start` before any SuperLink or simulation starts; the ServerApp
(:mod:`not_flower.app.preflight`) calls the node-count checks again once the nodes are
connected, where the number of clients is known for certain. Standard library only (no
torch): the launcher imports this module from a checkout. Each check raises
:class:`not_flower.common.config.ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path

from not_flower.common.config import ConfigError, RunConfig

#: Classes of each data set (labels ``0`` to ``n - 1``).
NUM_CLASSES: dict[str, int] = {
    "digits": 10,
    "mnist": 10,
    "fashion-mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
}


def check_classes(cfg: RunConfig, num_classes: int) -> None:
    """Refuse ``unlearn.classes`` that the data set does not have.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.
    num_classes : int
        Classes of the run's data set.

    Raises
    ------
    ConfigError
        Naming the labels out of range and the allowed range.
    """
    bad = [c for c in cfg.unlearn_classes if int(c) >= num_classes]
    if cfg.unlearn_mode == "class" and bad:
        raise ConfigError(
            f"unlearn.classes {','.join(bad)}: out of range; data set "
            f"{cfg.dataset!r} has {num_classes} classes (labels 0 to "
            f"{num_classes - 1})"
        )


def check_someone_left(cfg: RunConfig, num_partitions: int) -> None:
    """Refuse client-wise requests that together name every client (nobody to recover with).

    Parameters
    ----------
    cfg : RunConfig
        The run configuration (targets by ``partition-id``; others are checked when
        the request applies).
    num_partitions : int
        Partitions of the federation.

    Raises
    ------
    ConfigError
        Naming ``unlearn.clients`` and the number of clients.
    """
    if cfg.unlearn_mode != "client" or cfg.identify_by != "partition-id" or num_partitions < 1:
        return
    named = {c for c in cfg.unlearn_clients if c.isdigit()}
    if named >= {str(p) for p in range(num_partitions)}:
        raise ConfigError(
            f"unlearn.clients {';'.join(','.join(g) for g in cfg.unlearn_groups)!r} names "
            f"every one of the {num_partitions} clients (partition ids 0 to "
            f"{num_partitions - 1}): no client would be left to train or recover; leave at "
            "least one out"
        )


def check_train_subset(cfg: RunConfig, num_partitions: int) -> None:
    """Refuse a ``train-subset`` too small to give every client one example of each split.

    A necessary bound only (each client needs one training example, and one validation
    example when ``val-fraction`` > 0); the partition sizes themselves (a Dirichlet split
    can leave a client empty above it) are checked by the ServerApp before round 1.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration (``train-subset`` 0 means the whole data set: not checked).
    num_partitions : int
        Clients of the federation.

    Raises
    ------
    ConfigError
        Naming ``train-subset``, the number of clients, ``val-fraction`` and the least
        value allowed.
    """
    per_client = 2 if cfg.val_fraction > 0 else 1
    least = per_client * num_partitions
    if cfg.train_subset and num_partitions > 0 and cfg.train_subset < least:
        raise ConfigError(
            f"train-subset={cfg.train_subset} with {num_partitions} clients and "
            f"val-fraction={cfg.val_fraction} leaves a client without a training or "
            f"validation example; every client needs at least one of each: raise "
            f"train-subset (at least {least} here), use fewer clients, or set val-fraction=0"
        )


def check_paths(cfg: RunConfig) -> None:
    """Refuse an ``init-checkpoint`` that is not a file, and an output path under a file.

    Only absolute paths (after ``~``) are checked: a relative one is resolved by the
    ServerApp in its own working directory (the SuperLink's), which is not known here.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration (``init-checkpoint``, ``audit-log``, ``out-dir``).

    Raises
    ------
    ConfigError
        Naming the key, the path and what is wrong with it.
    """
    checkpoint = Path(cfg.init_checkpoint).expanduser()
    if cfg.init_checkpoint and checkpoint.is_absolute() and not checkpoint.is_file():
        what = "is a directory" if checkpoint.is_dir() else "does not exist"
        raise ConfigError(
            f"init-checkpoint {cfg.init_checkpoint!r} {what}; give the path of a "
            "checkpoint file (a .pt the app saved), or unset init-checkpoint"
        )
    for key, value in (("audit-log", cfg.audit_log), ("out-dir", cfg.out_dir)):
        path = Path(value).expanduser()
        if not value or not path.is_absolute():
            continue
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise ConfigError(
                f"{key} {value!r} is under {str(blocking)!r}, which is a file, not a "
                f"directory; give a path whose parent folders are directories (or can be "
                "created)"
            )


def check_before_start(cfg: RunConfig, num_partitions: int | None, *, paths: bool) -> None:
    """Every check of this module that the facts known before starting allow.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration (parsed: each value already checked alone).
    num_partitions : int | None
        Clients of the federation when known (a simulation's ``num-supernodes``), else
        ``None``: the node-count checks are left to the ServerApp.
    paths : bool
        Whether the paths name files on this machine (the ServerApp runs here).

    Raises
    ------
    ConfigError
        From the first check that fails.
    """
    check_classes(cfg, NUM_CLASSES[cfg.dataset])
    if num_partitions is not None:
        check_someone_left(cfg, num_partitions)
        check_train_subset(cfg, num_partitions)
    if paths:
        check_paths(cfg)
