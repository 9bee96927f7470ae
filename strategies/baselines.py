"""The reference methods NoT is judged against, as Flower strategies.

* :class:`FT`: fine-tuning. The request excludes the targets exactly as NoT does, but
  nothing is negated: recovery is FedAvg on the remaining clients from the current model.
* :class:`Retrain`: the gold standard. FedAvg from a fresh initial model on the
  non-target clients only, for as many rounds as the original training: the targets are
  excluded from round 1 on.

Both share NoT's request interface (:meth:`NoT.request_unlearning`), identity handling
and cost accounting, so that the comparison runs them through the same app.
"""

from __future__ import annotations

from collections.abc import Iterable

from .not_strategy import NoT


class FT(NoT):
    """FedAvg without the targets after the request, no negation.

    Parameters
    ----------
    **kwargs
        As :class:`strategies.NoT`, except ``negation``; the recovery is
        ``recovery=RecoverySettings(...)`` (:class:`strategies.RecoverySettings`).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(negation=None, **kwargs)


class Retrain(FT):
    """FedAvg from scratch without the targets (they are excluded from round 1).

    Parameters
    ----------
    targets : iterable, str or int
        The clients never to train with (see :meth:`NoT.request_unlearning`).
    by : str (default: "partition-id")
        How ``targets`` name the clients.
    **kwargs
        As :class:`strategies.NoT`, except ``negation``.

    Notes
    -----
    Start it from a freshly initialised model: ``strategy.start(grid, fresh_arrays, ...)``.
    """

    def __init__(
        self, targets: Iterable | str | int, *, by: str = "partition-id", **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.request_unlearning(targets, by=by, at_round=1, requested_by="retrain")
