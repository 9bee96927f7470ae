"""The output folder of a run: refuse one that holds another run's files, or move them aside.

A run writes ``results.json``, ``state.json``, ``checkpoint-*.pt``, the records of
forgetting and the audit log into ``out-dir``. Starting a new run there would leave the
folder mixed (a failed run replaces ``checkpoint-latest.pt`` and ``state.json`` but not
the old ``results.json`` and ``checkpoint-final.pt``). So, before any training:

* ``resume = true``: the folder's ``state.json`` is continued (it must exist if the folder
  holds a run's files);
* ``overwrite = true``: the previous run's files are **moved** (never deleted) into
  ``out-dir/previous-<UTC time>/``, so its last good checkpoint survives;
* otherwise the run stops with :class:`OutDirError` naming the files and both keys.

A run holds a lock on its out-dir for its whole life (:func:`lock_out_dir`: ``flock`` on
``out-dir/.lock``): a second run with the same out-dir stops at once, naming the folder
and the first run's process id. The kernel releases the lock when its holder dies, so a
crashed run never blocks the next one. Files are moved aside only after every check of
the run passed (:func:`check_out_dir` first, :func:`move_aside` last).
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path

#: What a run writes into its out-dir (glob patterns, relative to it).
RUN_FILES: tuple[str, ...] = (
    "results.json",
    "state.json",
    "checkpoint-*.pt",
    "unlearning-record*.json",
    "unlearning-log.jsonl",
    "federaser-history",
)
#: Run-config keys that say where the run's folder is and how to treat it, not what the
#: run does (a resumed run need not repeat them, and a run folder moved elsewhere can be
#: resumed there; they are left out of the comparison of configurations).
CONTROL_KEYS: tuple[str, ...] = ("resume", "overwrite", "out-dir")


#: The lock file a running run holds (never moved aside: not one of :data:`RUN_FILES`).
LOCK_NAME = ".lock"


class OutDirError(ValueError):
    """The out-dir cannot be used: another run's files, another run holding it, not a folder."""


def lock_out_dir(out_dir: Path) -> int:
    """Create ``out_dir`` and hold an exclusive lock on it; return the lock's descriptor.

    The lock is ``fcntl.flock`` on ``out_dir/.lock`` (opened with ``O_CREAT``, so creating
    it is atomic), with this process's id written in it. It lasts until
    :func:`unlock_out_dir` or the process's end (the kernel releases it when the holder
    dies: a stale lock file never blocks).

    Parameters
    ----------
    out_dir : Path
        The run's absolute output folder (created if missing).

    Returns
    -------
    int
        The open file descriptor holding the lock.

    Raises
    ------
    OutDirError
        If ``out_dir`` cannot be a folder (a file, or under one), naming the key
        ``out-dir``; or if another process holds the lock, naming the folder and its pid.
    """
    _check_folder_path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutDirError(
            f"out-dir {str(out_dir)!r} cannot be used as the run's folder: "
            f"{err.strerror or err} (set out-dir to a folder path)"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise OutDirError(
            f"out-dir {out_dir} is in use by another run (process {holder} holds "
            f"{out_dir / LOCK_NAME}); nothing was changed. Wait for it to finish, stop it, "
            "or choose another out-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def unlock_out_dir(fd: int) -> None:
    """Release :func:`lock_out_dir`'s lock (the lock file stays; it is harmless).

    Parameters
    ----------
    fd : int
        The descriptor :func:`lock_out_dir` returned.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _check_folder_path(out_dir: Path) -> None:
    """Refuse an ``out-dir`` that is a file or lies under one, naming the key."""
    for path in (out_dir, *out_dir.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == out_dir else f"is under the file {path}"
                raise OutDirError(f"out-dir {str(out_dir)!r} {where}; set out-dir to a folder path")
            return


def run_files(out_dir: Path) -> list[Path]:
    """Files and folders of a previous run in ``out_dir`` (sorted; empty if none).

    Parameters
    ----------
    out_dir : Path
        The output folder (need not exist).

    Returns
    -------
    list[Path]
    """
    if not out_dir.is_dir():
        return []
    found = {p for pattern in RUN_FILES for p in out_dir.glob(pattern)}
    return sorted(found)


def check_out_dir(
    out_dir: Path, *, resume: bool, overwrite: bool, init_checkpoint: str = ""
) -> list[Path]:
    """Whether a run may start in ``out_dir``; returns the files ``overwrite`` would move.

    Parameters
    ----------
    out_dir : Path
        The run's absolute output folder.
    resume, overwrite : bool
        The run-config keys of the same names.
    init_checkpoint : str
        The run's ``init-checkpoint``: it must not be one of the files to move.

    Returns
    -------
    list[Path]
        The previous run's files to move aside (empty: nothing to do).

    Raises
    ------
    OutDirError
        If ``out_dir`` is a file or under one; if the folder holds a run's files and
        neither key allows reusing it, if
        ``resume`` is set but there is no ``state.json`` to resume from, or if
        ``init-checkpoint`` is one of the files ``overwrite`` would move.
    """
    _check_folder_path(out_dir)
    files = run_files(out_dir)
    if not files:
        return []
    names = ", ".join(p.name for p in files[:6]) + (", ..." if len(files) > 6 else "")
    if resume:
        if (out_dir / "state.json").is_file():
            return []
        raise OutDirError(
            f"resume = true, but out-dir {out_dir} has no state.json to resume from; it holds "
            f"another run's files ({names}). Set overwrite = true instead of resume to move "
            "them aside and start afresh, or choose another out-dir"
        )
    if not overwrite:
        raise OutDirError(
            f"out-dir {out_dir} holds another run's results ({names}); nothing was changed. "
            "Set resume = true to continue that run (same run config), overwrite = true to "
            f"move its files into {out_dir}/previous-<time>/ and start afresh, or choose "
            "another out-dir"
        )
    if init_checkpoint:
        ckpt = Path(init_checkpoint).expanduser().resolve()
        if any(ckpt == p.resolve() or p.resolve() in ckpt.parents for p in files):
            raise OutDirError(
                f"init-checkpoint {init_checkpoint!r} is a file of the previous run in out-dir "
                f"{out_dir}, which overwrite = true would move away; choose another out-dir"
            )
    return files


def move_aside(out_dir: Path, files: list[Path], *, now: datetime | None = None) -> Path:
    """Move ``files`` into a new ``out_dir/previous-<UTC time>/`` folder (nothing deleted).

    Parameters
    ----------
    out_dir : Path
        The output folder.
    files : list[Path]
        Files and folders inside it (:func:`check_out_dir`).
    now : datetime, optional
        Time for the folder's name (default: now, UTC).

    Returns
    -------
    Path
        The folder they are in now.
    """
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    target = out_dir / f"previous-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = out_dir / f"previous-{stamp}-{suffix}"
    target.mkdir(parents=True)
    for path in files:
        os.replace(path, target / path.name)  # same file system: a rename, atomic
    return target


def prepare_out_dir(
    out_dir: Path, *, resume: bool, overwrite: bool, init_checkpoint: str = ""
) -> str | None:
    """:func:`check_out_dir`, then move the previous run's files aside if asked to.

    The ServerApp does the two steps apart (every other check of the run in between);
    this is for callers with nothing else to check.

    Returns
    -------
    str or None
        A line for the log when files were moved.
    """
    files = check_out_dir(
        out_dir, resume=resume, overwrite=overwrite, init_checkpoint=init_checkpoint
    )
    return move_previous(out_dir, files)


def move_previous(out_dir: Path, files: list[Path]) -> str | None:
    """:func:`move_aside` the files :func:`check_out_dir` returned; a line for the log.

    Parameters
    ----------
    out_dir : Path
        The output folder.
    files : list[Path]
        The previous run's files (empty: nothing is moved).

    Returns
    -------
    str or None
        What was moved where, or ``None`` when nothing was.
    """
    if not files:
        return None
    target = move_aside(out_dir, files)
    return (
        f"overwrite = true: moved the previous run's {len(files)} file(s) in {out_dir} to {target}"
    )
