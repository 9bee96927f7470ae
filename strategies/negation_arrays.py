"""Negating model weights as arrays (numpy only, no torch): :func:`negate` and the plan type.

A :class:`NegationPlan` names the ``state_dict`` keys NoT multiplies by -1; making one by
tracing a torch model is :func:`strategies.negation.plan_negation` (which needs torch).
Applying a plan to an ``ArrayRecord`` or a dict of numpy arrays needs numpy only, so the
server side of NoT imports without torch; a torch ``state_dict`` is negated too when torch
is already loaded.

:func:`negate` works out of place: the listed keys are multiplied by -1 (a sign-bit flip,
so negating twice gives back the exact bits, NaN payloads included), every other entry is
the *same object* as in the input, key order is kept, and the input is never modified.
Keys are a set: a key listed twice is negated once. Unknown and non-floating keys are
refused with :class:`NegationError`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = ["NegationError", "NegationPlan", "negate", "npy_payload"]

_A = TypeVar("_A")


class NegationError(ValueError):
    """A negation request that cannot be honoured (bad selector, key, policy or layer set)."""


@dataclass(frozen=True)
class NegationPlan:
    """What NoT negates: the selected layers and the exact ``state_dict`` keys.

    Parameters
    ----------
    layers : tuple of str
        Selected module names, in forward order.
    keys : tuple of str
        ``state_dict`` keys that negation multiplies by -1.
    selector : str
        The selector the plan was made from (for reports).
    include_bias : bool
        Bias policy the plan was made with (for reports).
    batchnorm : str
        BatchNorm policy the plan was made with (for reports).
    """

    layers: tuple[str, ...]
    keys: tuple[str, ...]
    selector: str = ""
    include_bias: bool = True
    batchnorm: str = "keep"

    def apply(self, arrays: _A) -> _A:
        """Negate this plan's keys in ``arrays``; see :func:`negate`.

        Parameters
        ----------
        arrays : ArrayRecord or dict of str to Tensor or dict of str to ndarray
            Model weights.

        Returns
        -------
        Same type as ``arrays``
            A new object with :attr:`keys` negated.
        """
        return negate(arrays, self.keys)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description of the plan.

        Returns
        -------
        dict
            ``layers``, ``keys``, ``selector``, ``include_bias`` and ``batchnorm``.
        """
        return {
            "layers": list(self.layers),
            "keys": list(self.keys),
            "selector": self.selector,
            "include_bias": self.include_bias,
            "batchnorm": self.batchnorm,
        }


def _key_tuple(keys: str | Iterable[str]) -> tuple[str, ...]:
    return (keys,) if isinstance(keys, str) else tuple(dict.fromkeys(keys))


def _unknown_key(key: str, available: Iterable[str]) -> NegationError:
    names = list(available)
    shown = ", ".join(repr(k) for k in names[:8]) + (", ..." if len(names) > 8 else "")
    return NegationError(f"key {key!r} is not in the arrays ({len(names)} entries: {shown})")


def _not_float(key: str, dtype: Any) -> NegationError:
    return NegationError(
        f"key {key!r} has dtype {dtype}; only floating-point entries can be negated"
    )


def _negate_value(key: str, value: Any) -> Any:
    """Return ``-value`` for a tensor or ndarray (a new object), refusing non-floats."""
    torch = sys.modules.get("torch")  # a torch tensor can only exist if torch is loaded
    if torch is not None and isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise _not_float(key, value.dtype)
        return torch.neg(value.detach())
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise _not_float(key, value.dtype)
        return np.asarray(np.negative(value))
    raise NegationError(
        f"key {key!r} holds a {type(value).__name__}; expected a torch.Tensor, "
        "a numpy.ndarray or a flwr Array"
    )


def npy_payload(array) -> tuple[bytes, np.ndarray] | None:
    """Header and zero-copy view of a numpy-serialized flwr ``Array``'s values, or ``None``.

    The ``.npy`` payload is read in place (``np.frombuffer``, no ``np.load``, whose header
    parsing through ``ast.literal_eval`` costs more than reading a small tensor). Only
    C-ordered payloads whose header agrees with the Array's dtype and whose length matches
    its shape are accepted; ``None`` means "use the general path".

    Parameters
    ----------
    array : flwr.app.Array
        The serialized tensor.

    Returns
    -------
    tuple of (bytes, np.ndarray) or None
        The ``.npy`` header (magic to end of header dict) and a read-only 1-D view of the
        values.
    """
    if array.stype != "numpy.ndarray" or array.data[:6] != b"\x93NUMPY":
        return None
    data = array.data
    # .npy layout: magic (6 bytes), version (2), header length (2 bytes in v1, 4 in v2),
    # then the header dict; the payload follows. Only the fields we rely on are checked.
    major = data[6]
    if major == 1:
        offset = 10 + int.from_bytes(data[8:10], "little")
    elif major in (2, 3):
        offset = 12 + int.from_bytes(data[8:12], "little")
    else:
        return None
    header = data[:offset]
    try:
        dtype = np.dtype(array.dtype)
    except TypeError:
        return None
    if (
        dtype.hasobject
        or b"'fortran_order': False" not in header
        or f"'descr': '{dtype.str}'".encode() not in header
    ):
        return None
    count = int(np.prod(array.shape, dtype=np.int64))
    if offset + count * dtype.itemsize != len(data):
        return None
    return header, np.frombuffer(data, dtype=dtype, count=count, offset=offset)


def _negate_serialized(array) -> Any:
    """Negate a numpy-serialized flwr ``Array`` without deserializing it, or ``None``.

    The payload is read in place (:func:`npy_payload`), negated into one new buffer and
    joined behind the unchanged header: one pass over the tensor's bytes, no
    ``np.load``/``np.save`` round trip. ``None`` (use the general path) for anything else
    than a C-ordered floating-point ``.npy`` payload.
    """
    from flwr.app import Array

    parsed = npy_payload(array)
    if parsed is None or parsed[1].dtype.kind != "f":
        return None
    header, source = parsed
    result = np.negative(source)
    payload = b"".join((header, memoryview(result).cast("B")))
    return Array(dtype=array.dtype, shape=tuple(array.shape), stype=array.stype, data=payload)


def negate(arrays: _A, keys: str | Iterable[str]) -> _A:
    """Return a copy of ``arrays`` in which ``keys`` are multiplied by -1.

    Parameters
    ----------
    arrays : ArrayRecord or dict of str to Tensor or dict of str to ndarray
        Model weights; never modified.
    keys : iterable of str
        Keys to negate (a single string is one key; repeats count once).

    Returns
    -------
    Same type as ``arrays``
        A new object with the same keys in the same order; listed entries are negated
        (sign bit flipped), every other entry is the same object as in ``arrays``.

    Raises
    ------
    NegationError
        A key is missing from ``arrays`` or its entry is not floating point.
    """
    from flwr.app import Array, ArrayRecord

    if not isinstance(arrays, (ArrayRecord, dict)):
        raise NegationError(
            f"cannot negate a {type(arrays).__name__}: expected an ArrayRecord "
            "or a dict of torch tensors or numpy arrays"
        )
    wanted = _key_tuple(keys)
    for key in wanted:
        if key not in arrays:
            raise _unknown_key(key, arrays.keys())
    if isinstance(arrays, ArrayRecord):
        negated: dict[str, Any] = {}
        for key in wanted:
            fast = _negate_serialized(arrays[key])
            if fast is not None:
                negated[key] = fast
                continue
            value = arrays[key].numpy()
            if not np.issubdtype(value.dtype, np.floating):
                raise _not_float(key, value.dtype)
            negated[key] = Array(np.asarray(np.negative(value)))
        # ArrayRecord(dict_of_Array) would rebuild every Array; item assignment keeps the
        # untouched Array objects themselves and the key order.
        record = ArrayRecord()
        for key, value in arrays.items():
            record[key] = negated.get(key, value)
        return record  # type: ignore[return-value]
    negated = {key: _negate_value(key, arrays[key]) for key in wanted}
    out = arrays.copy()  # keeps the dict type (OrderedDict) and key order
    out.update(negated)
    metadata = getattr(arrays, "_metadata", None)  # torch state_dict version info
    if metadata is not None:
        out._metadata = metadata  # type: ignore[attr-defined]
    return out  # type: ignore[return-value]
