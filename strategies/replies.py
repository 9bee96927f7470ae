"""Checks and measures of reply messages: what a strategy may aggregate.

Pure functions, numpy only.

:func:`check_train_reply` says why a train reply must not be aggregated (wrong keys,
shapes, dtypes, NaN/inf, a bad weight); :func:`majority_metric_keys` finds the metric
keys most replies agree on (FedAvg refuses a round whose replies differ); the rest
measure what went over the wire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from flwr.app import ArrayRecord, Message, RecordDict

from .negation_arrays import npy_payload


def arrayrecord_nbytes(arrays: ArrayRecord) -> int:
    """Bytes of the tensors an ArrayRecord carries (what goes over the wire, less framing).

    Parameters
    ----------
    arrays : ArrayRecord
        The record.

    Returns
    -------
    int
    """
    return sum(len(array.data) for array in arrays.values())


def messages_nbytes(messages: Iterable[Message]) -> int:
    """Bytes of the tensors a list of messages carries, every ArrayRecord of each counted.

    Parameters
    ----------
    messages : Iterable[Message]
        Messages (sharing a content or not: each counts as sent).

    Returns
    -------
    int
    """
    return sum(
        arrayrecord_nbytes(rec) for m in messages for rec in m.content.array_records.values()
    )


def reply_metrics(content: RecordDict) -> dict:
    """All MetricRecord entries of a reply, merged into one dict."""
    out: dict = {}
    for record in content.metric_records.values():
        out.update(record)
    return out


def array_layout(arrays: ArrayRecord) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype) of an ArrayRecord: what a valid reply must match."""
    return {key: (tuple(array.shape), str(array.dtype)) for key, array in arrays.items()}


def all_finite(array) -> bool:
    """Whether a flwr ``Array`` holds no NaN or inf (integer arrays always do).

    Reads a ``.npy`` payload in place (:func:`strategies.negation_arrays.npy_payload`); anything
    else goes through ``Array.numpy()``.
    """
    parsed = npy_payload(array)
    values = parsed[1] if parsed is not None else array.numpy()
    return values.dtype.kind not in "fc" or bool(np.isfinite(values).all())


def same_dtype_kind(reply_dtype: str, global_dtype: str) -> bool:
    """Whether a reply's tensor dtype may stand for the global model's: equal, or both
    floating point."""
    if reply_dtype == global_dtype:
        return True
    try:
        return np.dtype(reply_dtype).kind == "f" and np.dtype(global_dtype).kind == "f"
    except TypeError:
        return False


def check_train_reply(
    content: RecordDict,
    layout: dict[str, tuple[tuple[int, ...], str]],
    weighted_by_key: str,
    metrics: dict | None = None,
) -> str | None:
    """Why a train reply must not be aggregated, or ``None`` if it is fine.

    A valid reply holds exactly one ArrayRecord with the global model's keys, shapes and
    dtypes and only finite values, and a positive, finite ``weighted_by_key`` metric. A
    floating-point tensor may come back in another float width (Flower's FedAdam keeps
    a float64 global model while torch clients reply in float32); every other dtype must
    be the global model's.

    Parameters
    ----------
    content : RecordDict
        The reply's content.
    layout : dict
        :func:`array_layout` of the model that was sent.
    weighted_by_key : str
        The weighting metric (``num-examples``).
    metrics : dict or None
        :func:`reply_metrics` of ``content`` if already computed.

    Returns
    -------
    str or None
        The reason for rejection.
    """
    records = list(content.array_records.values())
    if len(records) != 1:
        return f"expected exactly one ArrayRecord, got {len(records)}"
    record = records[0]
    missing = sorted(set(layout) - set(record.keys()))
    extra = sorted(set(record.keys()) - set(layout))
    if missing or extra:
        return f"keys differ from the global model: missing {missing[:3]}, unexpected {extra[:3]}"
    for key, array in record.items():
        shape, dtype = layout[key]
        if tuple(array.shape) != shape or not same_dtype_kind(str(array.dtype), dtype):
            return (
                f"tensor {key!r} is {tuple(array.shape)} {array.dtype}, the global model's "
                f"is {shape} {dtype}"
            )
        if not all_finite(array):
            return f"tensor {key!r} holds NaN or inf"
    weight = (reply_metrics(content) if metrics is None else metrics).get(weighted_by_key)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not np.isfinite(weight)
        or weight <= 0
    ):
        return f"metric {weighted_by_key!r} must be a positive number, got {weight!r}"
    return None


def majority_metric_keys(keysets: Iterable[frozenset], weighted_by_key: str) -> frozenset | None:
    """The most common set of metric keys among replies (ties: the one with the weight key).

    Parameters
    ----------
    keysets : Iterable[frozenset]
        Metric keys of each reply.
    weighted_by_key : str
        The weighting metric; a set holding it wins a tie.

    Returns
    -------
    frozenset or None
        ``None`` when there are no replies.
    """
    counts: dict[frozenset, int] = {}
    for keys in keysets:
        counts[keys] = counts.get(keys, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda k: (counts[k], weighted_by_key in k))


def node_config_key(identity: Mapping) -> tuple:
    """Sort key of a declared node config: numbers as numbers (``partition-id`` 2 before
    10), other values as text."""

    def sortable(value) -> tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, float(value), "")
        return (1, 0.0, str(value))

    return tuple(sorted((str(k), sortable(v)) for k, v in identity.items()))


def node_order(node_ids: Iterable[int], identities: Mapping[int, Mapping | None]) -> list[int]:
    """Node ids in an order that is the same in every run of the same federation.

    Flower draws node ids at random (in simulation, new ones every run) and lists them in
    no fixed order; the node config (``partition-id`` ...) is what stays the same from run
    to run. When every node's config is known the nodes are sorted by it (then by node id);
    otherwise by node id alone (one node of unknown config must not reorder the others).

    Parameters
    ----------
    node_ids : Iterable[int]
        The nodes.
    identities : Mapping[int, Mapping or None]
        Node id -> the node config it declared (missing or ``None``: not known).

    Returns
    -------
    list[int]
        The same node ids, sorted.
    """
    ids = list(node_ids)
    if all(identities.get(n) for n in ids):
        return sorted(ids, key=lambda n: (node_config_key(identities[n]), int(n)))
    return sorted(ids)


def in_node_order(
    messages: Iterable[Message], identities: Mapping[int, Mapping | None]
) -> list[Message]:
    """Messages sorted by :func:`node_order` of their senders, whatever order they arrived in.

    Aggregating in a fixed order makes the aggregate the same bits in every run (a float
    sum depends on its order).

    Parameters
    ----------
    messages : Iterable[Message]
        Replies (error replies included: sorted by ``metadata.src_node_id`` as well).
    identities : Mapping[int, Mapping or None]
        Node id -> declared node config, as for :func:`node_order`.

    Returns
    -------
    list[Message]
        A new list; replies of one sender keep their order.
    """
    messages = list(messages)
    senders = {m.metadata.src_node_id for m in messages}
    rank = {n: i for i, n in enumerate(node_order(senders, identities))}
    return sorted(messages, key=lambda m: rank[m.metadata.src_node_id])


def seconds_reported(metrics: dict) -> float:
    """Client compute a reply reports: the sum of its ``*-seconds`` metrics."""
    return float(
        sum(v for k, v in metrics.items() if k.endswith("-seconds") and isinstance(v, (int, float)))
    )


__all__ = [
    "all_finite",
    "array_layout",
    "arrayrecord_nbytes",
    "check_train_reply",
    "in_node_order",
    "majority_metric_keys",
    "messages_nbytes",
    "node_config_key",
    "node_order",
    "reply_metrics",
    "same_dtype_kind",
    "seconds_reported",
]
