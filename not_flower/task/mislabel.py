"""Data no other client covers: mislabelled samples, or a style of the client's own.

The ``mislabel`` comparison scenario gives the target client data that no other client
covers: a seeded share of its samples get a label drawn at random among the *other*
classes. Nothing else in the federation predicts those labels, so a model fits them only
by memorising each sample (in FedAvg on digits it does not: the other clients' samples of
the true class average them away). The ``style`` scenario inverts every image of the
target (:func:`invert`): a region of input space no other client covers nor contradicts,
which the global model learns from the target alone. The functions are pure (numpy
only).
"""

from __future__ import annotations

import numpy as np

__all__ = ["invert", "mislabel"]


def mislabel(
    y: np.ndarray, fraction: float, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Give a seeded share of the samples a label drawn uniformly among the other classes.

    Parameters
    ----------
    y : np.ndarray
        ``(N,)`` integer labels in ``[0, num_classes)``. Not modified.
    fraction : float
        Share of samples to relabel, in ``[0, 1]``: exactly ``round(fraction * N)``.
    num_classes : int
        Number of classes, ``>= 2``.
    seed : int
        Seeds the choice of samples and of their new labels.

    Returns
    -------
    tuple of np.ndarray
        ``(y_new, idx)``: a new label array in which every sample of ``idx`` (sorted
        ``int64`` indices) has a label different from its old one, all others unchanged.

    Raises
    ------
    ValueError
        If ``fraction`` is outside ``[0, 1]``, ``num_classes < 2`` or a label is out of
        range.
    """
    y = np.asarray(y)
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 to draw another label, got {num_classes}")
    if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= num_classes)):
        raise ValueError(f"y must be 1-d labels in [0, {num_classes}), got shape {y.shape}")
    rng = np.random.default_rng(int(seed))
    k = int(round(float(fraction) * len(y)))
    idx = np.sort(rng.choice(len(y), size=k, replace=False)).astype(np.int64)
    out = y.copy()
    # a shift of 1 .. num_classes - 1 never lands on the old label
    out[idx] = (y[idx] + rng.integers(1, num_classes, size=k)) % num_classes
    return out, idx


def invert(x: np.ndarray) -> np.ndarray:
    """Inverted images, ``1 - x`` (pixel values in ``[0, 1]``); a new array, same dtype.

    Parameters
    ----------
    x : np.ndarray
        Images, any shape, values in ``[0, 1]``. Not modified.

    Returns
    -------
    np.ndarray
    """
    x = np.asarray(x)
    return (1 - x).astype(x.dtype)
