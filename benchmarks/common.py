"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``, so
this folder is on ``sys.path``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

#: The strategy methods a round spends server time in.
TIMED = ("configure_train", "aggregate_train", "configure_evaluate", "aggregate_evaluate")


def write_json(path: str | Path, data) -> None:
    """Write ``data`` as indented JSON to ``path`` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def instrument(strategy) -> dict:
    """Wrap the strategy's four round methods to add up the seconds spent in them.

    Returns
    -------
    dict
        ``{"seconds": float}``, updated as the strategy runs (``configure_*`` results are
        materialised inside the timing, since Flower consumes them as lists).
    """
    spent = {"seconds": 0.0}
    for name in TIMED:
        method = getattr(strategy, name)

        def wrapped(*args, _method=method, _name=name, **kwargs):
            t0 = time.perf_counter()
            out = _method(*args, **kwargs)
            if _name.startswith("configure"):
                out = list(out)
            spent["seconds"] += time.perf_counter() - t0
            return out

        setattr(strategy, name, wrapped)
    return spent
