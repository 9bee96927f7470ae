"""Progress of a run's long stages, for whoever shows it.

:func:`report` says how far a stage has come ("reference model 3/8", "round 12/25"): it
logs the line on flwr's logger (what ``flwr run`` and the ServerApp's log show; rounds,
which Flower logs itself, are not logged again) and hands it to every listener registered
with :func:`listening`. The comparison command runs its simulations in its own process and
listens, so its progress bar names the stage a run is in instead of sitting still.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging import INFO

from flwr.supercore import log

_listeners: list[Callable[[str], None]] = []
_lock = threading.Lock()


def describe(stage: str, done: int, total: int, detail: str = "") -> str:
    """The line shown for a stage: ``"reference model 3/8 (training)"``.

    Parameters
    ----------
    stage : str
        What is being done (``"reference model"``, ``"round"``).
    done, total : int
        Which of how many.
    detail : str
        Added in parentheses when given.

    Returns
    -------
    str
    """
    text = f"{stage} {done}/{total}"
    return f"{text} ({detail})" if detail else text


def report(stage: str, done: int, total: int, detail: str = "", *, log_it: bool = True) -> str:
    """Say how far ``stage`` has come: log it (``log_it``) and tell every listener.

    Parameters
    ----------
    stage : str
        What is being done.
    done, total : int
        Which of how many.
    detail : str
        Added in parentheses when given.
    log_it : bool (default: True)
        Log the line on flwr's logger at INFO (``False`` where Flower logs it already).

    Returns
    -------
    str
        The line (:func:`describe`).
    """
    text = describe(stage, done, total, detail)
    if log_it:
        log(INFO, "%s", text)
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(text)
    return text


@contextmanager
def listening(listener: Callable[[str], None]) -> Iterator[None]:
    """Call ``listener(line)`` for every :func:`report` made inside the ``with`` block
    (in any thread of this process).

    Parameters
    ----------
    listener : Callable[[str], None]
        Gets each line.
    """
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


__all__ = ["describe", "listening", "report"]
