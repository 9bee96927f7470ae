"""FedAvg's aggregate, made safe: every tensor keeps its dtype, and empty rounds are noticed.

Flower's ``aggregate_arrayrecords`` multiplies every array by a Python float weight, so an
integer buffer (BatchNorm's ``num_batches_tracked``, int64) comes back as float64 and the
next round's replies, which carry int64 again, no longer match the global model.
:func:`restore_dtypes` casts the aggregate back to the dtypes of the model that was sent:

* floating tensors: the weighted mean, as FedAvg computes it, in their own dtype;
* integer tensors: the weighted mean **rounded to the nearest integer** (half to even) and
  clipped to the dtype's range. For ``num_batches_tracked`` (every client starts from the
  global count and adds its local steps) that is the weighted mean step count;
* boolean tensors: the weighted majority (weighted mean >= 0.5).

:class:`EmptyRoundGuard` counts rounds in which no train reply was aggregated (every reply
failed or was rejected): each one is logged as an error, and the run stops with
:class:`EmptyRoundsError` after ``max_in_a_row`` of them in a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from logging import ERROR

import numpy as np
from flwr.app import Array, ArrayRecord, Message
from flwr.common.logger import log


class EmptyRoundsError(RuntimeError):
    """Too many rounds in a row aggregated no train reply."""


def cast_like(values: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Cast an aggregated (weighted-mean) array to ``dtype``.

    Parameters
    ----------
    values : np.ndarray
        The weighted mean, usually float64 for integer inputs.
    dtype : np.dtype or str
        The dtype the tensor has in the global model.

    Returns
    -------
    np.ndarray
        Floating: ``values`` in ``dtype``. Integer: rounded to the nearest integer (half to
        even) and clipped to the range of ``dtype``. Boolean: ``values >= 0.5``.
    """
    dtype = np.dtype(dtype)
    values = np.asarray(values)
    if values.dtype == dtype:
        return values
    if dtype.kind == "b":
        return np.asarray(values >= 0.5)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.asarray(np.clip(np.rint(values), info.min, info.max)).astype(dtype)
    return values.astype(dtype)


def restore_dtypes(aggregate: ArrayRecord, layout: Mapping[str, tuple[tuple, str]]) -> ArrayRecord:
    """Return ``aggregate`` with every tensor in the dtype ``layout`` gives it.

    Parameters
    ----------
    aggregate : ArrayRecord
        FedAvg's aggregate.
    layout : Mapping
        Key -> ``(shape, dtype)`` of the model that was sent
        (:func:`strategies.not_strategy.array_layout`). Keys it does not name are kept.

    Returns
    -------
    ArrayRecord
        A new record; arrays already in the right dtype are shared, not copied.
    """
    out = ArrayRecord()
    for key, array in aggregate.items():
        want = layout.get(key)
        if want is None or str(array.dtype) == str(want[1]):
            out[key] = array
        else:
            out[key] = Array(np.asarray(cast_like(array.numpy(), want[1]), order="C"))
    return out


def failure_reasons(replies: Iterable[Message], rejected: Mapping[int, str]) -> dict[int, str]:
    """Node id -> why its train reply was not aggregated (error replies and rejections).

    Parameters
    ----------
    replies : Iterable[Message]
        The replies that reached the aggregate (error replies included).
    rejected : Mapping[int, str]
        Node id -> reason, for replies the strategy rejected before.

    Returns
    -------
    dict[int, str]
    """
    out = {
        m.metadata.src_node_id: f"error reply: {m.error.reason}" for m in replies if m.has_error()
    }
    out.update(rejected)
    return out


class EmptyRoundGuard:
    """Notice rounds that aggregated no train reply; stop after too many in a row.

    Parameters
    ----------
    max_in_a_row : int or None
        Stop (:class:`EmptyRoundsError`) at this many such rounds in a row; ``None`` or 0
        only logs them.
    """

    def __init__(self, max_in_a_row: int | None) -> None:
        if max_in_a_row is not None and (
            isinstance(max_in_a_row, bool) or not isinstance(max_in_a_row, int) or max_in_a_row < 0
        ):
            raise ValueError(
                f"max_empty_rounds must be an integer >= 0 or None, got {max_in_a_row!r}"
            )
        self.max_in_a_row = max_in_a_row or None
        self.empty: list[int] = []  # the current run of empty rounds

    def update(self, server_round: int, aggregated: int, reasons: Mapping[int, str]) -> None:
        """Record one round's outcome.

        Parameters
        ----------
        server_round : int
            The round.
        aggregated : int
            Train replies aggregated in it.
        reasons : Mapping[int, str]
            Node id -> why its reply was not aggregated (:func:`failure_reasons`).

        Raises
        ------
        EmptyRoundsError
            When this is the ``max_in_a_row``-th empty round in a row.
        """
        if aggregated > 0:
            self.empty = []
            return
        self.empty.append(server_round)
        shown = "; ".join(f"node {n}: {r}" for n, r in list(reasons.items())[:3]) or "no reply"
        if len(reasons) > 3:
            shown += f"; ... ({len(reasons)} nodes in all)"
        log(
            ERROR,
            "round %d aggregated no train reply (%d empty round(s) in a row); the "
            "global model did not change: %s",
            server_round,
            len(self.empty),
            shown,
        )
        if self.max_in_a_row is not None and len(self.empty) >= self.max_in_a_row:
            which = (
                f"{len(self.empty)} rounds in a row (rounds {self.empty[0]}-{self.empty[-1]})"
                if len(self.empty) > 1
                else f"round {server_round}"
            )
            raise EmptyRoundsError(
                f"{which} aggregated no train reply (limit {self.max_in_a_row}: run-config key "
                f"max-empty-rounds, NoT(max_empty_rounds=...)); the run stops. Round "
                f"{server_round}: {shown}"
            )
