"""BadNets-style backdoor: a small solid square stamped in one image corner.

A poisoning client stamps the trigger on a share of its images and relabels
them to a target class.  After unlearning, the attack success rate (ASR, see
:func:`not_flower.evaluation.metrics.attack_success_rate`) on triggered test images should
fall to that of a model retrained without the poisoning client.

All functions are pure: they never modify their inputs (which may be
read-only) and always return new arrays.  Images are ``(N, C, H, W)`` arrays,
normally in ``[0, 1]``; stamp the trigger *before* any normalisation so that
``value`` keeps its meaning.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

__all__ = ["CORNERS", "stamp_trigger", "poison", "triggered_test_set"]

#: Corners accepted by :func:`stamp_trigger`.
CORNERS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")


def _check_images(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be a 4-D array (N, C, H, W); got shape {x.shape}")
    if x.shape[1] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{name} must have C, H, W >= 1; got shape {x.shape}")
    return x


def _check_labels(y: np.ndarray, n: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels; got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but there are {n} images")
    if not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
        raise ValueError(f"{name} must hold integer class labels; got dtype {y.dtype}")
    return y


def _check_target(target: int) -> int:
    if isinstance(target, bool) or not isinstance(target, Integral):
        raise ValueError(f"target must be an integer class index; got {target!r}")
    if target < 0:
        raise ValueError(f"target must be >= 0; got {target}")
    return int(target)


def _check_size(size: int, h: int, w: int) -> int:
    if isinstance(size, bool) or not isinstance(size, Integral):
        raise ValueError(f"size must be an integer; got {size!r}")
    limit = min(h, w)
    if not 1 <= size <= limit:
        raise ValueError(f"size must be in 1..{limit} (min(H, W) = min({h}, {w})); got {size}")
    return int(size)


def stamp_trigger(
    x: np.ndarray,
    size: int = 2,
    value: float = 1.0,
    corner: str = "bottom-right",
) -> np.ndarray:
    """Stamp a solid ``size x size`` square in one corner of every image.

    Parameters
    ----------
    x : np.ndarray
        Images, shape ``(N, C, H, W)``, normally in ``[0, 1]``.  ``N`` may be 0.
        Not modified.
    size : int, default 2
        Side of the square in pixels, ``1 <= size <= min(H, W)``.
    value : float, default 1.0
        Value written into the square, in every channel.  Must be finite.
    corner : {"top-left", "top-right", "bottom-left", "bottom-right"}
        Where the square goes.

    Returns
    -------
    np.ndarray
        A new array of the same shape and dtype as ``x`` in which the
        ``size x size`` corner square of every channel of every image equals
        ``value``; all other pixels are copied from ``x``.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D, ``size`` is out of range, ``value`` is not finite
        or ``corner`` is unknown.
    """
    x = _check_images(x)
    _, _, h, w = x.shape
    size = _check_size(size, h, w)
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}; got {corner!r}")
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"value must be a finite number; got {value!r}")

    rows = slice(0, size) if corner.startswith("top") else slice(h - size, h)
    cols = slice(0, size) if corner.endswith("left") else slice(w - size, w)
    out = np.array(x, copy=True)
    out[:, :, rows, cols] = value
    return out


def poison(
    x: np.ndarray,
    y: np.ndarray,
    fraction: float,
    target: int,
    seed: int,
    *,
    size: int = 2,
    value: float = 1.0,
    corner: str = "bottom-right",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poison a seeded random share of a data set with the trigger.

    Exactly ``round(fraction * N)`` samples (Python's ``round``, i.e. halves go
    to the even integer) are drawn without replacement with
    ``np.random.default_rng(seed)``; the trigger is stamped on them and their
    label set to ``target``.  Samples whose label already equals ``target``
    can be drawn too: they get the trigger and keep their label.

    Parameters
    ----------
    x : np.ndarray
        Images, shape ``(N, C, H, W)``.  Not modified; may be read-only.
    y : np.ndarray
        Integer labels, shape ``(N,)``.  Not modified; may be read-only.
    fraction : float
        Share of samples to poison, in ``[0, 1]``.
    target : int
        Backdoor target class, ``>= 0``.  Checking ``target < num_classes``
        is the caller's job.
    seed : int
        Non-negative seed; the same seed and ``N`` give the same indices.
    size, value, corner
        Trigger parameters, see :func:`stamp_trigger`.

    Returns
    -------
    x_new : np.ndarray
        Copy of ``x`` with the trigger stamped on the poisoned samples.
    y_new : np.ndarray
        Copy of ``y`` with the poisoned samples relabelled to ``target``.
    poisoned_indices : np.ndarray
        Sorted ``int64`` indices of the poisoned samples.

    Raises
    ------
    ValueError
        If shapes disagree, ``fraction`` is outside ``[0, 1]``, ``target`` or
        ``seed`` is negative or not an integer, or the trigger parameters are
        invalid.
    """
    x = _check_images(x)
    n = x.shape[0]
    y = _check_labels(y, n)
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, Real)
        or not math.isfinite(fraction)
        or not 0.0 <= fraction <= 1.0
    ):
        raise ValueError(f"fraction must be a number in [0, 1]; got {fraction!r}")
    target = _check_target(target)
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    # Validate the trigger even when nothing is poisoned.
    _check_size(size, x.shape[2], x.shape[3])

    k = int(round(float(fraction) * n))
    rng = np.random.default_rng(int(seed))
    idx = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)

    x_new = np.array(x, copy=True)
    y_new = np.array(y, copy=True)
    if k:
        x_new[idx] = stamp_trigger(x[idx], size=size, value=value, corner=corner)
        y_new[idx] = target
    else:
        stamp_trigger(x[:0], size=size, value=value, corner=corner)  # validation only
    return x_new, y_new, idx


def triggered_test_set(
    x_test: np.ndarray,
    y_test: np.ndarray,
    target: int,
    size: int = 2,
    *,
    value: float = 1.0,
    corner: str = "bottom-right",
) -> tuple[np.ndarray, np.ndarray]:
    """Stamp the trigger on every test image whose true label is not ``target``.

    Parameters
    ----------
    x_test : np.ndarray
        Test images, shape ``(N, C, H, W)``.  Not modified.
    y_test : np.ndarray
        Integer true labels, shape ``(N,)``.  Not modified.
    target : int
        Backdoor target class, ``>= 0``.
    size : int, default 2
        Trigger side, see :func:`stamp_trigger`.
    value, corner
        Trigger value and corner, see :func:`stamp_trigger`; use the same as
        in :func:`poison`.

    Returns
    -------
    x_triggered : np.ndarray
        Stamped copies of the images with ``y_test != target``, in their
        original order (possibly empty).
    y_true : np.ndarray
        Their true labels (none equals ``target``).

    Raises
    ------
    ValueError
        On bad shapes, a negative or non-integer ``target`` or invalid trigger
        parameters.
    """
    x_test = _check_images(x_test, "x_test")
    y_test = _check_labels(y_test, x_test.shape[0], "y_test")
    target = _check_target(target)
    keep = y_test != target
    x_trig = stamp_trigger(x_test[keep], size=size, value=value, corner=corner)
    return x_trig, np.array(y_test[keep], copy=True)
