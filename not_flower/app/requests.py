"""Unlearning requests from outside a running job: a watched request folder.

An operator drops a JSON file into ``request-dir``::

    {"targets": ["2"], "by": "partition-id", "requested_by": "alice"}

At every round boundary the strategy polls the folder (:class:`RequestFolder` is its
``request_source``). A file that is not a valid request is moved to ``rejected/`` at once,
with ``<name>.reason.txt`` beside it and a WARNING log line; training goes on. A valid one
is queued; once the strategy applied it, it is moved to ``accepted/``, or to ``rejected/``
if it named no connected node (or would leave no node to recover with).

Write request files atomically (write ``x.json.tmp``, then rename to ``x.json``): only
files whose name ends in ``.json`` (any case: ``x.JSON`` too) are read; others
(``x.json.tmp``, notes) are left alone. A ``reason`` (``"GDPR art. 17"``) is kept in the
record of forgetting, ``results.json`` and the audit log.

What is not a plain file is refused, with one WARNING line and a reason file, and moved
to ``rejected/``: a symbolic link (its target is neither read nor moved: a request must
be a file in the folder, so that nobody can make the ServerApp read a file elsewhere), a
dangling link, a folder named ``x.json``. A name already used in ``accepted/`` or
``rejected/`` gets a suffix (``x-2.json``): no earlier file is overwritten.
"""

from __future__ import annotations

import json
import os
from logging import WARNING
from pathlib import Path

from flwr.supercore import log

from strategies.unlearning_request import ExternalRequest

ALLOWED_KEYS = {"targets", "by", "requested_by", "reason"}
MAX_BYTES = 64 * 1024


class RequestFileError(ValueError):
    """A request file that is not a valid unlearning request."""


def parse_request(text: str, name: str = "<request>") -> dict:
    """Validate the JSON text of a request file and return the request.

    Parameters
    ----------
    text : str
        File content.
    name : str
        File name, for messages.

    Returns
    -------
    dict
        ``{"targets": [str, ...], "by": str, "requested_by": str}``, and ``reason``
        (str) when the file gives one.

    Raises
    ------
    RequestFileError
        Naming the file, the bad value and what is allowed.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise RequestFileError(f"{name}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except (ValueError, RecursionError) as err:  # too deep, or integers over the digit limit
        raise RequestFileError(f"{name}: not valid JSON ({type(err).__name__})") from None
    if not isinstance(obj, dict):
        raise RequestFileError(
            f"{name}: expected a JSON object with 'targets', got {type(obj).__name__}"
        )
    unknown = sorted(set(obj) - ALLOWED_KEYS)
    if unknown:
        raise RequestFileError(f"{name}: unknown key(s) {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    if "targets" not in obj:
        raise RequestFileError(f"{name}: missing 'targets' (a list of client ids)")
    targets = obj["targets"]
    if isinstance(targets, (str, int)) and not isinstance(targets, bool):
        targets = [targets]
    if (
        not isinstance(targets, list)
        or not targets
        or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in targets)
        or any(str(t).strip() == "" for t in targets)
    ):
        raise RequestFileError(
            f"{name}: 'targets' must be a non-empty list of strings or "
            f"integers, got {obj['targets']!r}"
        )
    by = obj.get("by", "partition-id")
    if not isinstance(by, str) or not by.strip():
        raise RequestFileError(
            f"{name}: 'by' must be 'partition-id' (or another node-config "
            f"key), 'supernode-name' or 'node-id', got {by!r}"
        )
    if by == "node-id" and not all(str(t).strip().isdigit() for t in targets):
        raise RequestFileError(f"{name}: node ids are non-negative integers, got {targets!r}")
    requested_by = obj.get("requested_by", "operator")
    if not isinstance(requested_by, str):
        raise RequestFileError(f"{name}: 'requested_by' must be a string, got {requested_by!r}")
    reason = obj.get("reason", "")
    if not isinstance(reason, str):
        raise RequestFileError(
            f"{name}: 'reason' must be a string (e.g. \"GDPR art. 17\"), got {reason!r}"
        )
    request = {
        "targets": [str(t).strip() for t in targets],
        "by": by.strip(),
        "requested_by": requested_by,
    }
    if reason.strip():
        request["reason"] = reason.strip()
    return request


class RequestFolder:
    """A folder of request files, polled by the strategy at each round boundary.

    Parameters
    ----------
    path : str or PathLike
        The watched folder (created if missing); ``accepted/`` and ``rejected/`` are made
        inside it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.accepted = self.path / "accepted"
        self.rejected = self.path / "rejected"
        for folder in (self.path, self.accepted, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)

    def _move(self, file: Path, accepted: bool, reason: str = "") -> None:
        dest_dir = self.accepted if accepted else self.rejected
        dest = free_name(dest_dir, file.name)
        os.replace(file, dest)  # a link is moved as the link, never its target
        if not accepted:
            (dest_dir / f"{dest.name}.reason.txt").write_text(reason + "\n")

    def _candidates(self) -> list[Path]:
        """Entries named ``*.json`` (any case); what is not a plain file is rejected now."""
        out = []
        for entry in sorted(self.path.iterdir()):
            if not entry.name.lower().endswith(".json") or entry.name.startswith("."):
                continue
            if entry.is_symlink() or not entry.is_file():
                what = (
                    "a symbolic link" + ("" if entry.exists() else " that leads nowhere")
                    if entry.is_symlink()
                    else "a folder"
                    if entry.is_dir()
                    else "not a plain file"
                )
                reason = (
                    f"{entry.name}: {what}; a request must be a plain file in the "
                    "request folder (links are not followed)"
                )
                log(WARNING, "rejected request file %s: %s", entry, reason)
                self._move(entry, False, reason)
                continue
            out.append(entry)
        return out

    def poll(self) -> list[ExternalRequest]:
        """Read new request files; reject invalid ones; return the valid requests.

        Returns
        -------
        list[ExternalRequest]
            The valid requests, ``requested_by`` naming the file, with the file's
            ``reason`` and an ``on_settled`` that moves the file once the strategy decided.
        """
        out = []
        for file in self._candidates():
            try:
                if file.stat().st_size > MAX_BYTES:
                    raise RequestFileError(f"{file.name}: larger than {MAX_BYTES} bytes")
                request = parse_request(file.read_text(errors="replace"), file.name)
            except Exception as err:  # noqa: BLE001 - no file may stop the ServerApp
                log(WARNING, "rejected request file %s: %s", file, err)
                self._move(file, False, str(err))
                continue

            def settle(_request, accepted: bool, reason: str, _file=file) -> None:
                if not accepted:
                    log(WARNING, "rejected request file %s: %s", _file, reason)
                if _file.exists():
                    self._move(_file, accepted, reason)

            out.append(
                ExternalRequest(
                    targets=tuple(request["targets"]),
                    by=request["by"],
                    requested_by=f"{request['requested_by']} (file {file.name})",
                    reason=request.get("reason", ""),
                    on_settled=settle,
                )
            )
        return out


def free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem>-<k><suffix>`` for the first k >= 2 not taken.

    Parameters
    ----------
    folder : Path
        Where the file goes.
    name : str
        Its name.

    Returns
    -------
    Path
        A path in ``folder`` that exists neither as a file nor as a link.
    """
    dest, stem, suffix, k = folder / name, Path(name).stem, Path(name).suffix, 1
    while dest.exists() or dest.is_symlink() or (folder / f"{dest.name}.reason.txt").exists():
        k += 1
        dest = folder / f"{stem}-{k}{suffix}"
    return dest
