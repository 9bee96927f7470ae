"""Avg Gap: how far a method's metrics are from Retrain's, in points.

**Avg Gap** is the mean of ``|method - retrain|`` over retain, forget and test
accuracy and MIA-efficacy (:data:`GAP_KEYS`, as in the NoT paper, Khalil et al.
CVPR 2025), or with MIA-efficacy replaced by the per-example attack's AUC
(:data:`GAP_KEYS_LIRA`). Inputs are fractions in ``[0, 1]``; the gap is in points
(fractions times 100), as the unlearning literature reports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["GAP_KEYS", "GAP_KEYS_LIRA", "avg_gap"]

#: Metrics averaged by :func:`avg_gap` by default (the paper's four).
GAP_KEYS: tuple[str, ...] = ("retain_acc", "forget_acc", "test_acc", "mia_efficacy")

#: The second gap, "Avg Gap (LiRA)": the paper's four with MIA-efficacy replaced by the
#: per-example attack's AUC on the forget set against held-out samples
#: (:mod:`not_flower.evaluation.membership`), which does not saturate or flip with the population
#: attack's decision boundary.
GAP_KEYS_LIRA: tuple[str, ...] = ("retain_acc", "forget_acc", "test_acc", "lira_auc")


def avg_gap(
    method: Mapping[str, float],
    retrain: Mapping[str, float],
    keys: Sequence[str] = GAP_KEYS,
) -> float:
    """Average gap to Retrain, in points.

    Parameters
    ----------
    method : Mapping[str, float]
        The method's metrics as fractions in ``[0, 1]``.
    retrain : Mapping[str, float]
        Retrain's metrics (same seed), fractions in ``[0, 1]``.
    keys : sequence of str, default ``GAP_KEYS``
        Metrics to average: retain, forget, test accuracy and MIA-efficacy.

    Returns
    -------
    float
        ``mean_k |method[k] - retrain[k]| * 100``.

    Raises
    ------
    ValueError
        If ``keys`` is empty, a key is missing from either mapping, or a
        value is not a finite number in ``[0, 1]`` (e.g. already in points).
    """
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)
    if not keys:
        raise ValueError("keys must name at least one metric")
    gaps = []
    for key in keys:
        vals = []
        for name, d in (("method", method), ("retrain", retrain)):
            if key not in d:
                raise ValueError(f"metric {key!r} missing from {name}; it has {sorted(d)}")
            v = d[key]
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{name}[{key!r}] must be a number; got {v!r}") from None
            if not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}[{key!r}] must be a fraction in [0, 1]; got {v!r}")
            vals.append(v)
        gaps.append(abs(vals[0] - vals[1]) * 100.0)
    return float(np.mean(gaps))
