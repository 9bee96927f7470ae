"""Array helpers the step methods (PGD, FedEraser, FUKD) share: float keys, numpy copies, sizes.

The methods themselves are unlearners (:mod:`strategies.unlearner`) driven by
:class:`strategies.unlearning.Unlearning`; this module holds only the small conversions
between ``ArrayRecord`` and dicts of numpy arrays they all use.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from .unlearner import REQUIREMENT_KEYS  # noqa: F401  (kept importable from here)


def float_keys(arrays: ArrayRecord | dict) -> list[str]:
    """Keys of the floating-point tensors (the ones that are trained)."""
    return [k for k, a in arrays.items() if np.dtype(str(a.dtype)).kind == "f"]


def to_numpy(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    """An ArrayRecord as a dict of numpy arrays (copies)."""
    return {k: np.array(a.numpy()) for k, a in arrays.items()}


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    """A dict of numpy arrays as an ArrayRecord (key order kept)."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def nbytes(arrays: dict[str, np.ndarray]) -> int:
    """Bytes of a dict of numpy arrays."""
    return int(sum(a.nbytes for a in arrays.values()))


__all__ = ["REQUIREMENT_KEYS", "float_keys", "nbytes", "to_numpy", "to_record"]
