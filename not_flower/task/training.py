"""Torch training and evaluation, and the federation's data, shared by both apps.

Every node and the ServerApp rebuild the same partitions from the run's data spec (data
set, partitioner, seed; :class:`not_flower.task.spec.DataSpec`): a client's data is
``client_data(spec, partition_id, num_partitions)``.
The ServerApp uses the same function to measure forget (targets' training data) and retain
(other clients' training data) accuracy: an evaluation harness, which in a real federation
would need the clients' cooperation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from not_flower.task.backdoor import poison
from not_flower.task.canary import CanarySet, client_canary_seed, make_canaries
from not_flower.task.data import Dataset, load_dataset
from not_flower.task.mislabel import invert, mislabel
from not_flower.task.partition import partition, train_val_split
from not_flower.task.recovery_train import RecoveryTraining
from not_flower.task.spec import DataSpec


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_threads(num_threads: int) -> None:
    """Let torch use ``num_threads`` CPU threads in this process (run-config ``torch-threads``).

    Chosen, not left to torch's default (one per core): a ClientApp actor of Flower's
    simulation gets one CPU, and the ServerApp's own training (reference models of the
    membership attack, FUKD's distillation) shares the cores with them; more threads than
    cores slow everything down on a loaded machine (2 reference models: 167.7 s with the
    default, 12.4 s with one thread), and a fixed count keeps float results the same from
    run to run.

    Parameters
    ----------
    num_threads : int
        Threads, >= 1.
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"torch threads must be an integer >= 1, got {num_threads!r}")
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


@dataclass(frozen=True)
class ClientData:
    """One client's data, exactly as it trains on it (poisoned samples included)."""

    partition_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    poisoned: np.ndarray  # indices into x_train that carry the trigger
    # indices into x_train whose label is wrong (mislabel.clients; not_flower/task/mislabel.py)
    mislabelled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # indices into x_train of the client's in-canaries (canary.clients): the last samples
    canaries: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _require_spec(spec: DataSpec) -> None:
    """Refuse anything but a :class:`DataSpec` (the whole run config, say): the data caches
    are keyed on exactly the data's values, so runs that differ elsewhere share them."""
    if not isinstance(spec, DataSpec):
        raise TypeError(f"expected a DataSpec, got {type(spec).__name__}")


def dataset_for(spec: DataSpec) -> Dataset:
    """Load (cached per process) the run's data set, cut to ``train-subset`` / ``test-subset``.

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (``dataset``, ``data_dir``, ``train_subset``, ``test_subset``).

    Returns
    -------
    Dataset
    """
    _require_spec(spec)
    data = load_dataset(spec.dataset, spec.data_dir or None)
    if spec.train_subset <= 0 and spec.test_subset <= 0:
        return data
    return _subset(data, spec.train_subset, spec.test_subset)


def stratified_choice(labels: np.ndarray, size: int, *, what: str, name: str) -> np.ndarray | None:
    """Sorted indices of a fixed (seed-independent) stratified subset of ``size`` samples.

    Each class keeps its share (largest-remainder rounding, so the sizes add up to
    ``size``); the samples are drawn with a generator seeded 0, so every seed of a
    comparison uses the same ones.

    Parameters
    ----------
    labels : np.ndarray
        The labels of the whole set.
    size : int
        Samples to keep, ``1 <= size <= len(labels)``.
    what, name : str
        The run-config key (``train-subset``) and the data set's name, for the error.

    Returns
    -------
    np.ndarray or None
        The indices, or None when ``size`` is the whole set.

    Raises
    ------
    ValueError
        If ``size`` exceeds the set.
    """
    total = len(labels)
    if size > total:
        kind = "training" if what == "train-subset" else "test"
        raise ValueError(
            f"{what}={size} exceeds the {total} {kind} images of "
            f"{name!r}; use at most {total} (0 = all)"
        )
    if size == total:
        return None
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / total
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: size - int(take.sum())]] += 1
    rng = np.random.default_rng(0)
    return np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == label), int(k), replace=False)
                for label, k in zip(classes, take)
            ]
        )
    )


def _read_only(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


@lru_cache(maxsize=4)
def _subset(data: Dataset, train_size: int, test_size: int) -> Dataset:
    """``data`` cut to fixed stratified subsets (:func:`stratified_choice`; 0 = keep whole).

    Parameters
    ----------
    data : Dataset
        The full data set.
    train_size, test_size : int
        Training / test images to keep (``train-subset`` / ``test-subset``; 0 = all).

    Returns
    -------
    Dataset
        ``data`` itself when nothing is cut, else a new read-only one.
    """
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    chosen = (
        stratified_choice(y, train_size, what="train-subset", name=data.name)
        if train_size > 0
        else None
    )
    if chosen is not None:
        x, y = x[chosen], y[chosen]
        _read_only(x, y)
    chosen_test = (
        stratified_choice(yt, test_size, what="test-subset", name=data.name)
        if test_size > 0
        else None
    )
    if chosen_test is not None:
        xt, yt = xt[chosen_test], yt[chosen_test]
        _read_only(xt, yt)
    if chosen is None and chosen_test is None:
        return data
    return Dataset(data.name, x, y, xt, yt, num_classes=data.num_classes)


@lru_cache(maxsize=8)
def server_indices(spec: DataSpec) -> np.ndarray:
    """Training-set indices the server keeps for itself (``fukd.server-data-fraction``).

    A stratified random share (per class, ``round(fraction * class size)`` samples, seeded
    by ``seed``) of the training set that no client ever holds: FUKD's server-side
    unlabelled data (the server uses the images only, never the labels). Empty when
    ``fukd.server-data-fraction`` is 0, the default.

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (``server_data_fraction``, ``seed``, the data set).

    Returns
    -------
    np.ndarray
        Sorted ``int64`` indices into the training set.
    """
    _require_spec(spec)
    if spec.server_data_fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    labels = dataset_for(spec).y_train
    rng = np.random.default_rng(spec.seed + 7919)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen.append(
            rng.choice(members, int(round(spec.server_data_fraction * len(members))), replace=False)
        )
    return np.sort(np.concatenate(chosen)).astype(np.int64)


@lru_cache(maxsize=8)
def _partitions(spec: DataSpec, num_partitions: int) -> tuple[np.ndarray, ...]:
    data = dataset_for(spec)
    # the clients share what the server does not keep (everything, by default)
    pool = np.setdiff1d(np.arange(len(data.y_train)), server_indices(spec))
    return tuple(
        pool[part]
        for part in partition(
            data.y_train[pool],
            num_partitions,
            spec.partitioner,
            alpha=spec.dirichlet_alpha,
            seed=spec.seed,
        )
    )


@lru_cache(maxsize=64)
def client_data(
    spec: DataSpec, partition_id: int, num_partitions: int, *, canary_seed: int | None = None
) -> ClientData:
    """Return the data of one partition (deterministic per data spec).

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (data set, partitioner, seed, backdoor, mislabel, style and
        canary settings).
    partition_id : int
        Which partition, ``0 <= partition_id < num_partitions``.
    num_partitions : int
        Number of partitions in the federation.
    canary_seed : int or None
        A deployed client's own secret canary seed (node config ``canary-seed``,
        :func:`not_flower.task.canary.node_canary_seed`): it plants ``canary.count``
        canaries of that seed whatever ``canary.clients`` says. ``None``: the run
        config's ``canary.clients`` and ``canary.seed`` decide.

    Returns
    -------
    ClientData
    """
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id must be in [0, {num_partitions}), got {partition_id}")
    data = dataset_for(spec)
    indices = _partitions(spec, num_partitions)[partition_id]
    train_idx, val_idx = train_val_split(indices, spec.val_fraction, spec.seed + partition_id)
    x_train, y_train = data.x_train[train_idx], data.y_train[train_idx]
    poisoned = np.zeros(0, dtype=np.int64)
    if str(partition_id) in spec.backdoor_clients:
        x_train, y_train, poisoned = poison(
            x_train,
            y_train,
            spec.backdoor_fraction,
            spec.backdoor_target,
            seed=spec.seed + 1000 + partition_id,
            size=spec.backdoor_trigger_size,
        )
    mislabelled = np.zeros(0, dtype=np.int64)
    if str(partition_id) in spec.mislabel_clients:
        y_train, mislabelled = mislabel(
            y_train, spec.mislabel_fraction, data.num_classes, seed=spec.seed + 2000 + partition_id
        )
    if str(partition_id) in spec.style_clients:
        x_train = invert(x_train)
    canaries = np.zeros(0, dtype=np.int64)
    planted = (
        client_canaries(spec, partition_id)
        if canary_seed is None
        else make_canaries(canary_seed, data.input_shape, data.num_classes, spec.canary_count)
    )
    if planted is not None:  # appended: the ids of the client's own samples do not change
        canaries = np.arange(len(y_train), len(y_train) + len(planted.y_in), dtype=np.int64)
        x_train = np.concatenate([x_train, planted.x_in.astype(x_train.dtype)])
        y_train = np.concatenate([y_train, planted.y_in.astype(y_train.dtype)])
    return ClientData(
        partition_id=partition_id,
        x_train=x_train,
        y_train=y_train,
        x_val=data.x_train[val_idx],
        y_val=data.y_train[val_idx],
        poisoned=poisoned,
        canaries=canaries,
        mislabelled=mislabelled,
    )


@lru_cache(maxsize=16)
def client_canaries(spec: DataSpec, partition_id: int) -> CanarySet | None:
    """The canaries client ``partition_id`` plants and keeps (``canary.clients``), if any.

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (``canary_clients``, ``canary_count``, ``canary_seed``).
    partition_id : int
        The client.

    Returns
    -------
    CanarySet or None
        ``canary.count`` in- and as many out-canaries, from the client's seed
        (:func:`not_flower.task.canary.client_canary_seed`); None for a client without.
    """
    _require_spec(spec)
    if str(partition_id) not in spec.canary_clients:
        return None
    data = dataset_for(spec)
    return make_canaries(
        client_canary_seed(spec.canary_seed, partition_id),
        data.input_shape,
        data.num_classes,
        spec.canary_count,
    )


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer (which cannot train on a one-sample batch)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def batch_bounds(n: int, batch_size: int, min_batch: int = 1) -> list[tuple[int, int]]:
    """``(start, end)`` of the mini-batches over ``n`` samples, none smaller than ``min_batch``.

    Batches of ``batch_size`` in order; a last batch smaller than ``min_batch`` is merged
    into the one before it (so one batch may hold up to ``batch_size + min_batch - 1``
    samples). With fewer than ``min_batch`` samples in all there is no batch.

    Parameters
    ----------
    n : int
        Number of samples.
    batch_size : int
        Mini-batch size (>= 1).
    min_batch : int (default: 1)
        Smallest batch allowed: 2 for models with BatchNorm, which fails on (or, in
        training mode, cannot normalise) a one-sample batch.

    Returns
    -------
    list[tuple[int, int]]
    """
    if batch_size < 1 or min_batch < 1:
        raise ValueError(f"batch_size and min_batch must be >= 1, got {batch_size}, {min_batch}")
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if bounds and bounds[-1][1] - bounds[-1][0] < min_batch:
        last = bounds.pop()
        if bounds:
            bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    seed: int,
    dev: torch.device | None = None,
    recovery: RecoveryTraining | None = None,
) -> dict[str, float]:
    """Train ``model`` in place with SGD and return ``train-loss`` and ``train-seconds``.

    Parameters
    ----------
    model : nn.Module
        The model, already holding the global weights.
    x, y : np.ndarray
        Training samples and labels.
    epochs, batch_size : int
        Local epochs and mini-batch size. For a model with BatchNorm a last batch smaller
        than half a batch (and never one of a single sample) is merged into the one before
        it (:func:`batch_bounds`).
    lr, momentum : float
        SGD settings (a fresh optimizer every round, as in FedAvg).
    seed : int
        Seeds the shuffling, so a round is reproducible.
    dev : torch.device, optional
        Where to train; default :func:`device`.
    recovery : RecoveryTraining or None
        A recovery round's schedule (:mod:`not_flower.task.recovery_train`): only its
        ``train_keys`` train, and its distillation term joins the loss.

    Returns
    -------
    dict[str, float]
        Mean training (cross-entropy) loss over the last epoch and the CPU seconds this
        process spent (``time.process_time``: all its threads; unlike wall seconds it does
        not grow when other processes share the cores).
    """
    dev = dev or device()
    t0 = time.process_time()
    model.to(dev).train()
    recovery = recovery or RecoveryTraining()
    if recovery.teacher is not None:
        recovery.teacher.to(dev)
    params = model.parameters() if recovery.train_keys is None else recovery.parameters(model)
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    xt = torch.from_numpy(np.array(x, dtype=np.float32)).to(dev)
    yt = torch.from_numpy(np.array(y, dtype=np.int64)).to(dev)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    total, count = 0.0, 0
    # BatchNorm cannot train on a one-sample batch, and a last batch of a few samples gives
    # it noisy batch statistics (which also go into its running statistics): with BatchNorm
    # a last batch smaller than half a batch joins the one before it
    min_batch = max(2, batch_size // 2) if has_batchnorm(model) else 1
    bounds = batch_bounds(len(xt), batch_size, min_batch=min_batch)
    with recovery.frozen(model):
        for _ in range(epochs):
            total, count = 0.0, 0
            order = torch.randperm(len(xt), generator=gen).to(dev)
            for start, end in bounds:
                idx = order[start:end]
                opt.zero_grad(set_to_none=True)
                logits = model(xt[idx])
                loss = loss_fn(logits, yt[idx])
                extra = recovery.extra_loss(logits, xt[idx])
                (loss if extra is None else loss + extra).backward()
                opt.step()
                total += loss.item() * len(idx)
                count += len(idx)
    return {"train-loss": total / max(count, 1), "train-seconds": time.process_time() - t0}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 512,
    dev: torch.device | None = None,
) -> tuple[float, float]:
    """Return ``(accuracy, mean cross-entropy loss)`` of ``model`` on ``(x, y)``.

    Parameters
    ----------
    model : nn.Module
        The model to evaluate (put in eval mode; its flag is restored).
    x, y : np.ndarray
        Samples and labels; empty arrays give ``(nan, nan)``.
    batch_size : int
        Evaluation batch size.
    dev : torch.device, optional
        Where to evaluate.

    Returns
    -------
    tuple[float, float]
    """
    if len(x) == 0:
        return float("nan"), float("nan")
    dev = dev or device()
    was_training = model.training
    model.to(dev).eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.array(x[start : start + batch_size], dtype=np.float32)).to(dev)
        yb = torch.from_numpy(np.array(y[start : start + batch_size], dtype=np.int64)).to(dev)
        logits = model(xb)
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return correct / len(x), loss_sum / len(x)
