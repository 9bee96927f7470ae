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
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

#: What a run writes into its out-dir (glob patterns, relative to it).
RUN_FILES: tuple[str, ...] = (
    "results.json", "state.json", "checkpoint-*.pt", "unlearning-record*.json",
    "unlearning-log.jsonl", "federaser-history",
)
#: Run-config keys that say how to treat the out-dir, not what the run does (a resumed
#: run need not repeat them; they are left out of the comparison of configurations).
CONTROL_KEYS: tuple[str, ...] = ("resume", "overwrite")


class OutDirError(ValueError):
    """The out-dir holds another run's files and neither resume nor overwrite is set."""


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


def check_out_dir(out_dir: Path, *, resume: bool, overwrite: bool,
                  init_checkpoint: str = "") -> list[Path]:
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
        If the folder holds a run's files and neither key allows reusing it, if
        ``resume`` is set but there is no ``state.json`` to resume from, or if
        ``init-checkpoint`` is one of the files ``overwrite`` would move.
    """
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
            "them aside and start afresh, or choose another out-dir")
    if not overwrite:
        raise OutDirError(
            f"out-dir {out_dir} holds another run's results ({names}); nothing was changed. "
            "Set resume = true to continue that run (same run config), overwrite = true to "
            f"move its files into {out_dir}/previous-<time>/ and start afresh, or choose "
            "another out-dir")
    if init_checkpoint:
        ckpt = Path(init_checkpoint).expanduser().resolve()
        if any(ckpt == p.resolve() or p.resolve() in ckpt.parents for p in files):
            raise OutDirError(
                f"init-checkpoint {init_checkpoint!r} is a file of the previous run in out-dir "
                f"{out_dir}, which overwrite = true would move away; choose another out-dir")
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


def prepare_out_dir(out_dir: Path, *, resume: bool, overwrite: bool,
                    init_checkpoint: str = "") -> str | None:
    """:func:`check_out_dir`, then move the previous run's files aside if asked to.

    Returns
    -------
    str or None
        A line for the log when files were moved.
    """
    files = check_out_dir(out_dir, resume=resume, overwrite=overwrite,
                          init_checkpoint=init_checkpoint)
    if not files:
        return None
    target = move_aside(out_dir, files)
    return (f"overwrite = true: moved the previous run's {len(files)} file(s) in {out_dir} "
            f"to {target}")
