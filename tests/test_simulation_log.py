"""The comparison's in-process simulations do not print Flower's run_simulation
deprecation warning on every run; every other message still passes."""

from __future__ import annotations

import logging

from flwr.common.logger import log
from flwr.supercore.logger import warn_deprecated_feature

from not_flower.experiments.simulation import quiet_run_simulation_deprecation


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _deprecation() -> None:
    # the very call flwr.simulation.run_simulation makes
    warn_deprecated_feature(
        "The `run_simulation` function is deprecated and will be "
        "removed in a future version of Flower."
    )


def test_only_the_run_simulation_deprecation_is_dropped_and_only_inside():
    collect = _Collect()
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.addHandler(collect)
    try:
        with quiet_run_simulation_deprecation():
            _deprecation()
            warn_deprecated_feature("something else")
            log(logging.WARNING, "a warning of the run")
        _deprecation()
    finally:
        flwr_logger.removeHandler(collect)
    assert len(collect.messages) == 3
    assert "something else" in collect.messages[0]
    assert collect.messages[1] == "a warning of the run"
    assert "`run_simulation` function is deprecated" in collect.messages[2]
