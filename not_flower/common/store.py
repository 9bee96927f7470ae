"""Files the app writes: atomic JSON and checkpoints.

Everything is written to a temporary file in the target's folder, fsynced, then renamed
over the target, so an interrupted write never leaves a truncated file and never destroys
the last good one.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord

from not_flower.common.faults import durable_write


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync of the folder).

    A failure at any step leaves the previous file as it was and no temporary file behind.

    Parameters
    ----------
    path : str or PathLike
        Destination; its folder is created if needed.
    data : bytes
        Content.
    mode : int, optional
        Permission bits for the file, less the process umask (as ``open`` does:
        ``0o666`` gives an ordinary file). ``None`` (default) keeps the temporary
        file's owner-only ``0o600``.

    Returns
    -------
    Path
        The destination path.
    """
    path = Path(path)
    durable_write(path, "before")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, mode & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    durable_write(path, "after")
    return path


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN/inf become ``null``)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def save_checkpoint(path: str | os.PathLike, arrays: ArrayRecord, meta: dict) -> Path:
    """Save a global model (``{"state_dict", "meta"}`` via ``torch.save``) atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination ``.pt`` file.
    arrays : ArrayRecord
        The global model.
    meta : dict
        Model name, data set, round, ... (JSON-able).

    Returns
    -------
    Path
    """
    buffer = io.BytesIO()
    torch.save({"state_dict": arrays.to_torch_state_dict(), "meta": _jsonable(meta)}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or PathLike
        The ``.pt`` file.

    Returns
    -------
    tuple[dict, dict]
        The state dict and its metadata.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is truncated, not a not-flower checkpoint, or holds NaN/inf.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign files raise many types
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read ({err.__class__.__name__}: "
            f"{err}); is it truncated?"
        ) from None
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a not-flower checkpoint "
            "(expected a dict with 'state_dict' and 'meta')"
        )
    for key, tensor in blob["state_dict"].items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"checkpoint {str(path)!r}: tensor {key!r} holds NaN or inf")
    return blob["state_dict"], blob.get("meta", {})
