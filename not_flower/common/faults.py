"""Fault injection for tests: stop the ServerApp at its N-th durable write.

Every durable write of a run (each atomic file write of :mod:`not_flower.common.store`, each
append to the audit log) calls :func:`durable_write` twice: ``"before"`` it (nothing of
it is on disk yet) and ``"after"`` it (it is on disk). With the environment variable
``NOT_FLOWER_KILL_AT=N:STAGE`` (``STAGE`` is ``before`` or ``after``; ``N`` counts from 1
in this process) the process ends at that point with ``os._exit(137)``: no ``finally``,
no clean-up, as a SIGKILL would. Tests running the app in process use :func:`arm`, which
raises :class:`SimulatedKill` there instead (a ``BaseException``, which the app's
``except Exception`` handlers do not catch).

Without the variable and without :func:`arm` the hook only counts.

Only the standard library is imported.
"""

from __future__ import annotations

import os

#: The environment variable naming the kill point (``"N:before"`` or ``"N:after"``).
ENV = "NOT_FLOWER_KILL_AT"
STAGES = ("before", "after")

_state = {"count": 0, "at": None, "stage": None, "raise": False, "log": []}


class SimulatedKill(BaseException):
    """Raised at the armed kill point by in-process tests (:func:`arm`)."""


def parse_kill_point(text: str) -> tuple[int, str]:
    """Parse ``"N:STAGE"``.

    Parameters
    ----------
    text : str
        ``N`` (an integer >= 1) and a stage, ``before`` or ``after``.

    Returns
    -------
    tuple[int, str]

    Raises
    ------
    ValueError
        Naming the bad value and what is allowed.
    """
    number, _, stage = text.partition(":")
    if not number.strip().isdigit() or int(number) < 1 or stage not in STAGES:
        raise ValueError(
            f"{ENV}={text!r}: expected N:before or N:after with N an integer "
            ">= 1 (the N-th durable write of the process)"
        )
    return int(number), stage


def arm(at: int | None, stage: str = "after") -> None:
    """Reset the counter; raise :class:`SimulatedKill` at write ``at`` (``None``: never).

    Parameters
    ----------
    at : int or None
        The write to stop at, counted from 1 from now on.
    stage : str
        ``"before"`` or ``"after"`` that write.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    _state.update(count=0, at=at, stage=stage, log=[])
    _state["raise"] = at is not None


def writes() -> list[str]:
    """The files written since the last :func:`arm` (for choosing kill points)."""
    return list(_state["log"])


def durable_write(path: str | os.PathLike, stage: str) -> None:
    """The hook: count the write; stop the process here if this is the kill point.

    Parameters
    ----------
    path : str or PathLike
        The file being written.
    stage : str
        ``"before"`` or ``"after"`` the write.
    """
    if stage == "before":
        _state["count"] += 1
        _state["log"].append(os.fspath(path))
    at, at_stage = _state["at"], _state["stage"]
    if at is None and os.environ.get(ENV):
        at, at_stage = parse_kill_point(os.environ[ENV])
    if at is None or _state["count"] != at or stage != at_stage:
        return
    if _state["raise"]:
        _state["at"] = None  # once
        raise SimulatedKill(f"killed {stage} durable write {at} ({os.fspath(path)})")
    os._exit(137)  # pylint: disable=protected-access
