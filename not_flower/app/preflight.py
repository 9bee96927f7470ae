"""Checks of a run that need the data or the connected nodes, done before round 1.

:mod:`not_flower.common.config` checks every value alone and the values together; what it cannot
know (the data set's classes, the clients' partition sizes, how many clients there are,
what an ``init-checkpoint`` was trained on) is checked here, once the nodes are connected
and before anything is trained or moved aside. The checks that need only the class table
or the number of clients are :mod:`not_flower.common.prestart`'s (``not_flower/launch/cli.py``
runs them before anything starts where it knows the number of clients); they run here
again with the nodes connected. Each check raises
:class:`not_flower.common.config.ConfigError` naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from not_flower.common.config import ConfigError, RunConfig
from not_flower.common.prestart import check_classes, check_someone_left
from not_flower.common.store import load_checkpoint

#: Checkpoint metadata that must match the run for an ``init-checkpoint`` to fit it.
CHECKPOINT_KEYS: tuple[str, ...] = ("dataset", "model", "input_shape", "num_classes")


def check_checkpoint_meta(path: str, run_meta: Mapping) -> None:
    """Refuse an ``init-checkpoint`` whose own metadata names another data set or model.

    Tensors of the same shapes load into another run (a Fashion-MNIST CNN into a digits
    run): the metadata the app saves with every checkpoint tells them apart. Keys the
    checkpoint does not record (a file from elsewhere) are not compared.

    Parameters
    ----------
    path : str
        The ``init-checkpoint`` file.
    run_meta : Mapping
        The run's ``dataset``, ``model``, ``input_shape`` and ``num_classes``.

    Raises
    ------
    ConfigError
        Naming the file and, per differing key, the checkpoint's and the run's value.
    """
    _, saved = load_checkpoint(Path(path).expanduser())
    differing = [
        f"{key}: checkpoint {saved[key]!r}, run {run_meta[key]!r}"
        for key in CHECKPOINT_KEYS
        if key in saved and key in run_meta and _same(saved[key]) != _same(run_meta[key])
    ]
    if differing:
        raise ConfigError(
            f"init-checkpoint {path!r} was saved by another kind of run "
            f"({'; '.join(differing)}); use a checkpoint of this data set and "
            "model, or change dataset/model to the checkpoint's"
        )


def _same(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def check_partitions(cfg: RunConfig, sizes: Sequence[tuple[int, int]]) -> None:
    """Refuse a federation in which a client would have no training or validation example.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.
    sizes : Sequence[tuple[int, int]]
        ``(training examples, validation examples)`` per partition id.

    Raises
    ------
    ConfigError
        Naming the client, its sizes, ``train-subset``, the number of clients and
        ``val-fraction``.
    """
    for pid, (train, val) in enumerate(sizes):
        if train == 0 or (cfg.val_fraction > 0 and val == 0):
            subset = f"train-subset={cfg.train_subset}" if cfg.train_subset else "the data set"
            raise ConfigError(
                f"{subset} with {len(sizes)} clients and val-fraction={cfg.val_fraction} "
                f"leaves client {pid} {train} training and {val} validation example(s); every "
                f"client needs at least one of each: raise train-subset (at least "
                f"{2 * len(sizes)} here), use fewer clients, or set val-fraction=0"
            )


def check_samples(cfg: RunConfig, num_train: Callable[[int], int], num_partitions: int) -> None:
    """Refuse ``unlearn.samples`` beyond the target client's training split.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration (``unlearn.mode`` ``instance``, targets by ``partition-id``;
        other targets are not known before the request applies and are not checked).
    num_train : Callable[[int], int]
        Partition id -> its number of training examples.
    num_partitions : int
        Partitions of the federation.

    Raises
    ------
    ConfigError
        Naming the sample ids out of range and the allowed range.
    """
    if (
        cfg.unlearn_mode != "instance"
        or cfg.identify_by != "partition-id"
        or cfg.unlearn_samples == ("poisoned",)
    ):
        return
    client = cfg.unlearn_clients[0]
    if not client.isdigit() or int(client) >= num_partitions:
        return  # an unknown target: check_targets names it
    size = num_train(int(client))
    bad = [s for s in cfg.unlearn_samples if int(s) >= size]
    if bad:
        raise ConfigError(
            f"unlearn.samples {','.join(bad[:5])}{', ...' if len(bad) > 5 else ''}"
            f": out of range; client {client} has {size} training examples "
            f"(sample ids 0 to {size - 1})"
        )


def check_federation(cfg: RunConfig, num_classes: int, num_partitions: int) -> None:
    """Every check of this module that needs the connected federation, in one call.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration.
    num_classes : int
        Classes of the run's data set.
    num_partitions : int
        Partitions of the federation (declared by the nodes, else the nodes connected).

    Raises
    ------
    ConfigError
        From the first check that fails.
    """
    from not_flower.app.specs import data_spec  # pylint: disable=import-outside-toplevel
    from not_flower.task.training import client_data  # pylint: disable=import-outside-toplevel

    spec = data_spec(cfg)
    check_classes(cfg, num_classes)
    check_someone_left(cfg, num_partitions)
    if cfg.identify_by == "partition-id":  # the partitions are the nodes' data
        sizes = [
            (len(d.x_train), len(d.x_val))
            for d in (client_data(spec, p, num_partitions) for p in range(num_partitions))
        ]
        check_partitions(cfg, sizes)
        check_samples(cfg, lambda p: sizes[p][0], num_partitions)
