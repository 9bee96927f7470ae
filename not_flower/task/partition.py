"""Deterministic partitioning of a data set's sample indices across clients.

All functions are pure (numpy only): the same inputs and seed give identical
output.  Every partitioner returns a list of sorted ``int64`` index arrays that
are pairwise disjoint and together cover ``0 .. num_samples - 1`` exactly once.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "PARTITIONERS",
    "dirichlet_partition",
    "iid_partition",
    "partition",
    "train_val_split",
]

PARTITIONERS: tuple[str, ...] = ("iid", "dirichlet")

#: How many Dirichlet draws are tried before giving up on ``min_partition_size``.
MAX_DIRICHLET_TRIES = 100


def _check_num_partitions(num_partitions: int, num_samples: int) -> None:
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, (int, np.integer)):
        raise ValueError(f"num_partitions must be an integer, got {num_partitions!r}")
    if not 1 <= num_partitions <= num_samples:
        raise ValueError(
            f"num_partitions must be between 1 and the number of samples ({num_samples}), "
            f"got {num_partitions}"
        )


def iid_partition(num_samples: int, num_partitions: int, seed: int) -> list[np.ndarray]:
    """Split ``range(num_samples)`` uniformly at random into equal-size parts.

    Parameters
    ----------
    num_samples : int
        Number of samples to split (``>= 1``).
    num_partitions : int
        Number of partitions, ``1 <= num_partitions <= num_samples``.
    seed : int
        Seed of the random permutation.

    Returns
    -------
    list of np.ndarray
        ``num_partitions`` sorted ``int64`` index arrays whose sizes differ by
        at most one.

    Raises
    ------
    ValueError
        If ``num_samples < 1`` or ``num_partitions`` is out of range.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    _check_num_partitions(num_partitions, num_samples)
    perm = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, num_partitions)]


def _round_counts(proportions: np.ndarray, n: int) -> np.ndarray:
    """Largest-remainder rounding of ``proportions * n`` to integers summing to ``n``.

    Flooring the cumulative sums instead (the common implementation) always
    rounds in the same direction by position and so starves the first
    partitions of small classes.
    """
    exact = proportions * n
    counts = np.floor(exact).astype(np.int64)
    remainder = n - int(counts.sum())
    if remainder > 0:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:remainder]] += 1
    return counts


def _check_dirichlet_args(
    labels: np.ndarray, num_partitions: int, alpha: float, min_partition_size: int
) -> float:
    """Check the arguments of :func:`dirichlet_partition`; return ``alpha`` as a float.

    Raises
    ------
    ValueError
        On labels that are not a non-empty 1-D array, a bad ``num_partitions``, ``alpha``
        not finite and positive, or a ``min_partition_size`` that is negative or too
        large for the number of samples.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    num_samples = len(labels)
    if num_samples < 1:
        raise ValueError("labels must not be empty")
    _check_num_partitions(num_partitions, num_samples)
    alpha = float(alpha)
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"dirichlet-alpha must be > 0, got {alpha}")
    if min_partition_size < 0:
        raise ValueError(f"min_partition_size must be >= 0, got {min_partition_size}")
    if min_partition_size * num_partitions > num_samples:
        raise ValueError(
            f"cannot give each of {num_partitions} partitions at least {min_partition_size} "
            f"samples with only {num_samples} samples; lower num_partitions or min_partition_size"
        )
    return alpha


def _dirichlet_draw(
    rng: np.random.Generator,
    class_indices: Sequence[np.ndarray],
    num_partitions: int,
    alpha: float,
) -> list[list[np.ndarray]]:
    """One draw of :func:`dirichlet_partition`: each class's shuffled indices, cut by Dir(alpha).

    Parameters
    ----------
    rng : np.random.Generator
        The partition's generator (advanced by one permutation and one Dirichlet draw
        per class, in class order).
    class_indices : sequence of np.ndarray
        Indices of each class, in sorted label order.
    num_partitions : int
        Number of partitions.
    alpha : float
        Dirichlet concentration.

    Returns
    -------
    list of list of np.ndarray
        Per partition, its piece of every class.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
    for idx in class_indices:
        idx = rng.permutation(idx)
        proportions = rng.dirichlet(np.full(num_partitions, alpha))
        cuts = np.cumsum(_round_counts(proportions, len(idx)))[:-1]
        for p, piece in enumerate(np.split(idx, cuts)):
            parts[p].append(piece)
    return parts


def dirichlet_partition(
    labels: np.ndarray | Sequence[int],
    num_partitions: int,
    alpha: float,
    seed: int,
    min_partition_size: int = 2,
) -> list[np.ndarray]:
    """Label-skewed partition: each class is split by proportions ~ Dir(alpha).

    For every class ``k`` (in sorted label order) its shuffled indices are cut
    into ``num_partitions`` pieces with proportions ``p`` drawn from
    ``Dirichlet(alpha * 1_num_partitions)``; piece sizes are ``p * n_k``
    rounded by the largest-remainder method (each within one sample of
    ``p * n_k``, with no bias towards any partition position).  Small ``alpha`` (e.g. 0.1) gives
    partitions dominated by a few classes; large ``alpha`` (e.g. 100) gives
    near-uniform label distributions.  The whole draw is repeated (from the same
    seeded generator, so still deterministic) until every partition holds at
    least ``min_partition_size`` samples.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Class label of every sample.
    num_partitions : int
        Number of partitions, ``1 <= num_partitions <= N``.
    alpha : float
        Dirichlet concentration, ``> 0``.
    seed : int
        Seed of the random generator.
    min_partition_size : int, optional
        Minimum number of samples per partition (default 2), with
        ``min_partition_size * num_partitions <= N``.

    Returns
    -------
    list of np.ndarray
        ``num_partitions`` sorted ``int64`` index arrays, disjoint and covering
        ``0 .. N-1``.

    Raises
    ------
    ValueError
        On invalid arguments, or if no draw satisfying ``min_partition_size`` is
        found within :data:`MAX_DIRICHLET_TRIES` tries.
    """
    labels = np.asarray(labels)
    alpha = _check_dirichlet_args(labels, num_partitions, alpha, min_partition_size)
    num_samples = len(labels)
    rng = np.random.default_rng(seed)
    class_indices = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    sizes = np.zeros(num_partitions, dtype=np.int64)
    for _ in range(MAX_DIRICHLET_TRIES):
        parts = _dirichlet_draw(rng, class_indices, num_partitions, alpha)
        sizes = np.array([sum(len(piece) for piece in pieces) for pieces in parts])
        if sizes.min() >= min_partition_size:
            return [np.sort(np.concatenate(pieces)).astype(np.int64) for pieces in parts]
    raise ValueError(
        f"could not draw a dirichlet partition (dirichlet-alpha={alpha}, "
        f"num_partitions={num_partitions}, {num_samples} samples) in which every partition has "
        f"at least {min_partition_size} samples "
        f"after {MAX_DIRICHLET_TRIES} tries (smallest partition in the last try: {sizes.min()}); "
        f"increase dirichlet-alpha, reduce num_partitions or lower min_partition_size"
    )


def partition(
    labels: np.ndarray | Sequence[int],
    num_partitions: int,
    method: str = "iid",
    *,
    alpha: float = 0.5,
    seed: int = 0,
) -> list[np.ndarray]:
    """Partition sample indices with the named method.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Class label of every sample (only its length is used by ``iid``).
    num_partitions : int
        Number of partitions, ``1 <= num_partitions <= N``.
    method : str, optional
        One of :data:`PARTITIONERS` (default ``"iid"``).
    alpha : float, optional
        Dirichlet concentration for ``"dirichlet"`` (default 0.5).
    seed : int, optional
        Seed (default 0).

    Returns
    -------
    list of np.ndarray
        Sorted, disjoint ``int64`` index arrays covering ``0 .. N-1``.

    Raises
    ------
    ValueError
        If ``method`` is unknown (the message lists :data:`PARTITIONERS`) or the
        chosen partitioner rejects its arguments.
    """
    if method not in PARTITIONERS:
        raise ValueError(
            f"unknown partitioner {method!r}; choose one of: {', '.join(PARTITIONERS)}"
        )
    labels = np.asarray(labels)
    if method == "iid":
        return iid_partition(len(labels), num_partitions, seed)
    return dirichlet_partition(labels, num_partitions, alpha, seed)


def train_val_split(
    indices: np.ndarray | Sequence[int], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a partition's indices into train and validation indices.

    The validation size is ``round(val_fraction * n)``, clipped to at least one
    sample when ``val_fraction > 0`` and ``n >= 2``, and always leaving at least
    one training sample.

    Parameters
    ----------
    indices : array-like of int
        The indices to split (non-empty).
    val_fraction : float
        Fraction for validation, in ``[0, 1)``.
    seed : int
        Seed of the random choice.

    Returns
    -------
    tuple of np.ndarray
        ``(train, val)``: sorted ``int64`` arrays, disjoint, whose union is
        ``indices``.

    Raises
    ------
    ValueError
        If ``val_fraction`` is outside ``[0, 1)`` or ``indices`` is empty.
    """
    val_fraction = float(val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val-fraction must be in [0, 1), got {val_fraction}")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0:
        raise ValueError(
            "indices must be a non-empty 1-D array (at least 1 training sample), "
            f"got shape {indices.shape}"
        )
    n = len(indices)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    val = np.sort(indices[perm[:n_val]])
    train = np.sort(indices[perm[n_val:]])
    return train, val
