"""The record of one unlearning: model hashes, canonical JSON and ``unlearning-record.json``.

:func:`sha256_arrays` hashes a model (the byte layout is in its docstring, so that an
auditor can recompute it from a checkpoint with any tool), :func:`canonical_json` gives
the bytes that log hashes are taken over, :func:`build_record` assembles the record and
:func:`write_record` writes it atomically. The hash-chained log the records are appended
to is :mod:`not_flower.audit.log`; :mod:`not_flower.audit.cli` describes both and is the
command line.

Only the standard library is imported at module level (numpy and torch are used by
:func:`sha256_arrays` only when given such objects, and :func:`write_record` writes
through :func:`not_flower.common.store.atomic_write_bytes`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "RECORD_FILE",
    "RECORD_VERSION",
    "build_record",
    "canonical_json",
    "sha256_arrays",
    "write_record",
]

#: Version of the record layout written by :func:`build_record`.
RECORD_VERSION = 1
#: File name of the record in the run's output folder.
RECORD_FILE = "unlearning-record.json"
_HEX = frozenset("0123456789abcdef")


# --------------------------------------------------------------------------- hashing


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as canonical JSON (the bytes that log hashes are taken over).

    Parameters
    ----------
    obj : Any
        JSON-serialisable value (dicts with string keys, lists, str, int, float, bool,
        None).

    Returns
    -------
    bytes
        ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False)`` encoded as UTF-8.

    Raises
    ------
    ValueError
        ``obj`` holds a NaN or an infinity (JSON has no such numbers).
    TypeError
        ``obj`` holds a value JSON cannot represent.
    """
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as err:
        raise ValueError(
            f"cannot write canonical JSON: {err} (NaN and infinity have no "
            "JSON form; replace them with null)"
        ) from None
    return text.encode("utf-8")


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _as_numpy(key: str, value: Any):
    """Return ``value`` as a numpy array plus the dtype name to hash (bfloat16 kept)."""
    import numpy as np

    module = type(value).__module__
    if isinstance(value, np.ndarray):
        return value, value.dtype.name
    if module.startswith("torch"):
        tensor = value.detach().cpu()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()
        name = str(tensor.dtype).removeprefix("torch.")
        if name == "bfloat16":  # numpy has no bfloat16: hash its raw 16-bit words
            import torch

            return tensor.view(torch.int16).numpy(), name
        return tensor.numpy(), np.dtype(tensor.numpy().dtype).name
    if hasattr(value, "numpy") and callable(value.numpy):  # flwr Array
        array = value.numpy()
        return array, array.dtype.name
    raise TypeError(
        f"cannot hash entry {key!r}: a {type(value).__name__}; expected a "
        "torch.Tensor, a numpy.ndarray or a flwr Array"
    )


def sha256_arrays(arrays: Any) -> str:
    """SHA-256 of a model, the same whether it is an ArrayRecord, a state dict or numpy.

    Parameters
    ----------
    arrays : ArrayRecord or Mapping of str to Tensor or Mapping of str to ndarray
        The model's tensors by name.

    Returns
    -------
    str
        64 lowercase hex digits.

    Notes
    -----
    The hash is ``hashlib.sha256`` fed, for each key in ``sorted()`` order of the keys
    (Unicode code points, which is also the byte order of their UTF-8 forms), with::

        key.encode("utf-8") + b"\\0"
        + dtype.encode("ascii") + b"\\0"
        + shape.encode("ascii") + b"\\0"
        + data

    where ``dtype`` is the numpy dtype name (``"float32"``, ``"int64"``, ``"bool"``;
    ``"bfloat16"`` for torch's bfloat16, hashed as its raw 16-bit words), ``shape`` is
    the shape as a JSON list without spaces (``"[64,1,3,3]"``, ``"[]"`` for a scalar)
    and ``data`` is the array's raw bytes in C (row-major) order, little-endian
    (``numpy.asarray(a, order="C").astype(a.dtype.newbyteorder("<")).tobytes()``).
    A torch tensor is taken as ``t.detach().cpu().contiguous()``. Nothing else goes in:
    no separator between entries, no count, no Flower metadata, so a checkpoint written
    by ``torch.save`` and the same weights in an ``ArrayRecord`` hash the same.

    Raises
    ------
    TypeError
        ``arrays`` is not a mapping of tensors/arrays, or a key is not a string.
    """
    import numpy as np

    if not hasattr(arrays, "items") or not hasattr(arrays, "keys"):
        raise TypeError(
            f"cannot hash a {type(arrays).__name__}: expected an ArrayRecord or "
            "a dict of torch tensors or numpy arrays"
        )
    for key in arrays.keys():
        if not isinstance(key, str):
            raise TypeError(f"cannot hash key {key!r}: model keys must be strings")
    digest = hashlib.sha256()
    for key in sorted(arrays.keys()):
        array, dtype_name = _as_numpy(key, arrays[key])
        array = np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        if array.dtype.byteorder == ">" or (
            array.dtype.byteorder == "=" and sys.byteorder == "big"
        ):
            array = array.astype(array.dtype.newbyteorder("<"))
        shape = json.dumps([int(n) for n in array.shape], separators=(",", ":"))
        digest.update(key.encode("utf-8") + b"\0")
        digest.update(dtype_name.encode("ascii") + b"\0")
        digest.update(shape.encode("ascii") + b"\0")
        digest.update(array.tobytes(order="C"))
    return digest.hexdigest()


# ---------------------------------------------------------------------------- record


def _text(value: Any) -> str:
    """``str(value)`` that UTF-8 can encode (a lone surrogate from a request file is escaped)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, tuples to lists, NaN/inf to None."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def request_part(request: dict) -> dict:
    """Who asked, when, for whom, identified how; accepts a plain dict or an event's request."""
    if not isinstance(request, dict):
        raise TypeError(f"request must be a dict, got {type(request).__name__}")
    rule = request.get("rule") if isinstance(request.get("rule"), dict) else {}
    targets = request.get("targets", rule.get("values", []))
    if isinstance(targets, (str, int)):
        targets = [targets]
    out = {
        "requested_by": str(request.get("requested_by", "operator")),
        "requested_at": request.get("requested_at"),
        "targets": [str(t) for t in targets],
        "by": str(request.get("by", rule.get("by", "partition-id"))),
    }
    if request.get("reason"):
        out["reason"] = str(request["reason"])
    if request.get("kind") in ("class", "instance"):  # what of the targets is forgotten
        out["kind"] = request["kind"]
        out["classes"] = [int(c) for c in request.get("classes") or []]
        out["samples"] = [int(i) for i in request.get("samples") or []]
    return out


def _target_part(target: dict) -> dict:
    return {
        "node_id": target.get("node_id"),
        "name": target.get("name", ""),
        "by": target.get("by"),
        "value": None if target.get("value") is None else str(target["value"]),
        "identity": _plain(target.get("identity")),
    }


def _participant(p: Any) -> dict:
    if isinstance(p, dict):
        return {
            "node_id": p.get("node_id"),
            "name": p.get("name", ""),
            "partition_id": p.get("partition_id", p.get("partition-id")),
        }
    return {"node_id": p, "name": "", "partition_id": None}  # a bare node id


def _check_hashes_and_round(
    sha_before: Any, sha_negated: Any, sha_after: Any, applied_round: Any
) -> None:
    """Refuse a hash that is not 64 lowercase hex digits (``sha_after`` may be ``None``)
    or a round that is not a non-negative integer, naming the bad value."""
    for name, value in (
        ("sha_before", sha_before),
        ("sha_negated", sha_negated),
        ("sha_after", sha_after),
    ):
        if not _is_sha256(value) and not (name == "sha_after" and value is None):
            raise ValueError(
                f"{name} must be a SHA-256 hex digest (64 lowercase hex "
                f"digits, from sha256_arrays), got {value!r}"
            )
    if isinstance(applied_round, bool) or not isinstance(applied_round, int) or applied_round < 0:
        raise ValueError(f"round must be a non-negative integer, got {applied_round!r}")


def _recovery_part(recovery_rounds: list[dict]) -> list[dict]:
    """``{"round", "participants"[, "evaluated"]}`` per recovery round, normalised."""
    rounds = []
    for entry in recovery_rounds:
        row = {
            "round": int(entry["round"]),
            "participants": [_participant(p) for p in entry.get("participants", [])],
        }
        if "evaluated" in entry:  # partition ids whose evaluate replies were counted
            row["evaluated"] = [int(p) for p in entry["evaluated"]]
        rounds.append(row)
    return rounds


def build_record(
    *,
    request: dict,
    round: int,
    targets: list[dict],
    layers: list[str],  # noqa: A002
    keys: list[str],
    sha_before: str,
    sha_negated: str,
    sha_after: str | None,
    recovery_rounds: list[dict],
    stopping: dict,
    final_metrics: dict,
    method: str,
    run_id: str | None = None,
    written_at: str | None = None,
) -> dict:
    """Assemble the unlearning record (the content of ``unlearning-record.json``).

    Parameters
    ----------
    request : dict
        The request: ``requested_by``, ``requested_at``, ``targets`` and ``by`` (a dict
        from ``UnlearningEvent.to_dict()["request"]``, with ``rule: {by, values}``, is
        accepted as it is); an optional ``reason`` is kept.
    round : int
        Round at whose boundary the request was applied.
    targets : list of dict
        The nodes forgotten: ``node_id``, ``name``, ``by``, ``value``, ``identity``
        (``UnlearningEvent.targets``).
    layers, keys : list of str
        Layers and ``state_dict`` keys negated (empty for FT/retrain).
    sha_before, sha_negated : str
        :func:`sha256_arrays` of the global model just before and just after negation.
    sha_after : str or None
        :func:`sha256_arrays` of the model after recovery (``None`` if recovery did not
        finish).
    recovery_rounds : list of dict
        ``{"round": r, "participants": [{"node_id", "name", "partition_id"}, ...]}``
        per recovery round (a bare node id is accepted as a participant).
    stopping : dict
        Why recovery stopped (rule, round, values compared).
    final_metrics : dict
        Metrics of the final model.
    method : str
        ``"not"``, ``"ft"`` or ``"retrain"``.
    run_id : str, optional
        Flower run id.
    written_at : str, optional
        ISO time; default: now (UTC).

    Returns
    -------
    dict
        ``version``, ``method``, ``run_id``, ``request``, ``applied_round``, ``targets``,
        ``layers_negated``, ``keys_negated``, ``model_sha256`` (``before_negation``,
        ``after_negation``, ``after_recovery``), ``recovery_rounds``, ``stopping``,
        ``final_metrics``, ``written_at``. Numpy scalars become Python numbers, tuples
        lists, non-finite floats ``null`` and lone surrogates in strings (possible in a
        request file) backslash escapes, so the record is always valid UTF-8 JSON.

    Raises
    ------
    ValueError
        A hash that is not 64 lowercase hex digits, or a negative round.
    """
    _check_hashes_and_round(sha_before, sha_negated, sha_after, round)
    rounds = _recovery_part(recovery_rounds)
    return {
        "version": RECORD_VERSION,
        "method": _text(method),
        "run_id": None if run_id is None else _text(run_id),
        "request": _plain(request_part(request)),
        "applied_round": round,
        "targets": [_plain(_target_part(t)) for t in targets],
        "layers_negated": [_text(x) for x in layers],
        "keys_negated": [_text(x) for x in keys],
        "model_sha256": {
            "before_negation": sha_before,
            "after_negation": sha_negated,
            "after_recovery": sha_after,
        },
        "recovery_rounds": _plain(rounds),
        "stopping": _plain(stopping),
        "final_metrics": _plain(final_metrics),
        "written_at": written_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(out_dir: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` to ``out_dir/unlearning-record.json`` atomically.

    The JSON text is made first (sorted keys, indented, NaN refused); it goes to a
    temporary file in ``out_dir`` that is fsynced, renamed over the target and followed
    by an fsync of the folder. A failure at any step leaves the previous file as it was
    and no temporary file behind.

    Parameters
    ----------
    out_dir : str or PathLike
        Folder (created if missing).
    record : dict
        From :func:`build_record`.

    Returns
    -------
    Path
        The record file.

    Raises
    ------
    ValueError
        The record holds NaN or infinity.
    TypeError
        The record holds a value JSON cannot represent.
    """
    try:
        text = json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        raise ValueError(
            f"unlearning record not written: {err} (NaN and infinity have no "
            "JSON form; replace them with null)"
        ) from None
    # imported here: the module itself imports only the standard library (see above)
    from not_flower.common.store import atomic_write_bytes

    return atomic_write_bytes(Path(out_dir) / RECORD_FILE, (text + "\n").encode("utf-8"))
