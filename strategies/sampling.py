"""Seeded node sampling: the same nodes in every run of the same command.

Flower's strategies sample with :func:`flwr.serverapp.strategy.strategy_utils.sample_nodes`,
which draws from Python's process-wide :mod:`random`. Flower draws from that same generator
in its own background work (the heartbeat's random interval, the jitter of retries and of
object transfers), as many times as the timing of the run makes it: seeding ``random`` once
at start does not make round 2's sample the same in two runs. :func:`seeded_sampling` gives
``sample_nodes`` a generator of its own for the length of one ``configure_*`` call, seeded
by the run's seed, the round and the phase only, so a sample depends on nothing else (a
resumed run samples as the uninterrupted one did). Strategies that draw from ``random``
outside ``sample_nodes`` are not affected.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flwr.serverapp.strategy import strategy_utils

_LOCK = threading.Lock()


def sampling_rng(seed: int, server_round: int, what: str) -> random.Random:
    """The generator a round's sampling draws from.

    Parameters
    ----------
    seed : int
        The run's seed.
    server_round : int
        The round being configured.
    what : str
        ``"train"`` or ``"evaluate"``.

    Returns
    -------
    random.Random
        Seeded from the three values only (a text seed: the same in every process,
        whatever ``PYTHONHASHSEED`` is).
    """
    return random.Random(f"not-flower-sampling/{int(seed)}/{what}/{int(server_round)}")


@contextmanager
def seeded_sampling(seed: int | None, server_round: int, what: str) -> Iterator[None]:
    """Within the block, Flower's ``sample_nodes`` draws from :func:`sampling_rng`.

    Parameters
    ----------
    seed : int or None
        The run's seed; ``None``: nothing changes (the process-wide ``random``).
    server_round, what
        As :func:`sampling_rng`.
    """
    if seed is None:
        yield
        return
    with _LOCK:
        saved = strategy_utils.random
        strategy_utils.random = sampling_rng(seed, server_round, what)
        try:
            yield
        finally:
            strategy_utils.random = saved


__all__ = ["sampling_rng", "seeded_sampling"]
