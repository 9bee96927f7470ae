"""Stop every process a command started: its process tree and whatever carries its token.

``flwr run`` starts a detached local SuperLink, which starts ``flower-superexec``, which
starts ``flwr-simulation``, which starts Ray (``gcs_server``, ``raylet``, and
``ray::ClientAppActor`` workers). Stopping the SuperLink alone leaves the rest running,
re-parented to init; a failed simulation leaves its Ray workers behind the same way. This
module finds them by lineage, never by name:

* the **tree**: every descendant of the pids we own, read from ``/proc`` (``PPid``),
  snapshotted *before* anything is signalled, so that children do not escape by being
  re-parented when their parent dies first;
* the **token**: :data:`TOKEN_VAR` set to a fresh value in the environment of the process
  we start (``not_flower/launch/cli.py run`` sets it for ``flwr run``); every process started from
  it inherits it, also once it is re-parented to init. Only this user's processes whose
  environment holds exactly that value are matched.

Standard library only, and runnable beside ``not_flower/launch/cli.py`` and
``not_flower/launch/local_superlink.py`` as plain files.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path
from typing import Iterable, Mapping

TOKEN_VAR = "NF_PROCESS_TOKEN"


def new_token() -> str:
    """A fresh value for :data:`TOKEN_VAR` (32 hex characters)."""
    return secrets.token_hex(16)


def parse_stat(text: str) -> tuple[str, int]:
    """State letter and parent pid from the text of ``/proc/PID/stat``.

    Parameters
    ----------
    text : str
        e.g. ``"42 (flwr run) S 41 42 ..."`` (the name may hold spaces and parentheses).

    Returns
    -------
    tuple[str, int]
        ``("S", 41)``.
    """
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def process_table(proc: Path = Path("/proc")) -> dict[int, int]:
    """Parent pid of every live (not zombie) process ``/proc`` shows, by pid."""
    table: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = parse_stat((entry / "stat").read_text())
        except (OSError, IndexError, ValueError):
            continue
        if state != "Z":
            table[int(entry.name)] = ppid
    return table


def descendants(roots: Iterable[int], parents: Mapping[int, int]) -> list[int]:
    """Every descendant of ``roots`` (not the roots), parents before children.

    Parameters
    ----------
    roots : Iterable[int]
        Pids whose subtrees are wanted.
    parents : Mapping[int, int]
        Parent pid by pid (:func:`process_table`).

    Returns
    -------
    list[int]
    """
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    todo = list(roots)
    seen = set(todo)
    while todo:
        for child in sorted(children.get(todo.pop(0), [])):
            if child not in seen:
                seen.add(child)
                found.append(child)
                todo.append(child)
    return found


def environ_value(pid: int, name: str) -> str | None:
    """``name``'s value in the environment ``pid`` was started with (None if unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def token_holders(token: str, pids: Iterable[int]) -> list[int]:
    """The pids among ``pids``, owned by this user, started with ``TOKEN_VAR=token``."""
    if not token:
        return []
    uid = os.getuid()
    found = []
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        if environ_value(pid, TOKEN_VAR) == token:
            found.append(pid)
    return sorted(found)


def collect(roots: Iterable[int], tokens: Iterable[str] = ()) -> list[int]:
    """The live roots, their descendants, and the token holders with theirs.

    This process and its ancestors are never included (a shell that happens to carry a
    token is not stopped with the run).

    Parameters
    ----------
    roots : Iterable[int]
        Pids we started (or found as ours).
    tokens : Iterable[str]
        :data:`TOKEN_VAR` values of the runs to stop.

    Returns
    -------
    list[int]
        Sorted pids.
    """
    parents = process_table()
    spared = set(_ancestors(os.getpid(), parents)) | {os.getpid()}
    found = {pid for pid in roots if pid in parents}
    for token in tokens:
        found.update(token_holders(token, parents))
    found.update(descendants(sorted(found), parents))
    return sorted(found - spared)


def _ancestors(pid: int, parents: Mapping[int, int]) -> list[int]:
    out = []
    while pid in parents and parents[pid] not in out and parents[pid] > 0:
        pid = parents[pid]
        out.append(pid)
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state, _ = parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return False
    return state != "Z"


def send(pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each pid; one that is gone already is skipped."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_processes(
    roots: Iterable[int], tokens: Iterable[str] = (), grace: float = 5.0
) -> list[int]:
    """SIGTERM the roots, their trees and the token holders; SIGKILL what is left.

    Parameters
    ----------
    roots : Iterable[int]
        Pids we own.
    tokens : Iterable[str]
        :data:`TOKEN_VAR` values whose holders are stopped too.
    grace : float (default: 5.0)
        Seconds to wait after SIGTERM before SIGKILL.

    Returns
    -------
    list[int]
        Every pid signalled.
    """
    roots, tokens = list(roots), [t for t in tokens if t]
    pids = collect(roots, tokens)
    send(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    # children started while we waited, by a process still alive or carrying the token
    late = [p for p in collect(pids + roots, tokens) if p not in pids]
    left = [p for p in pids if alive(p)] + late
    send(left, signal.SIGKILL)
    return sorted(set(pids) | set(late))
