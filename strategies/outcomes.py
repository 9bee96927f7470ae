"""What became of each unlearning request: a typed outcome, and the Result that carries them.

Every request (:meth:`strategies.unlearning.Unlearning.request_unlearning`, a request
source, a node that asks for itself) gets a :class:`RequestOutcome` as soon as it is
queued, reachable as ``request.outcome`` and in ``Unlearning.outcomes``. Its ``status``:

* ``"pending"``: queued, not applied yet (a run that ends with such requests warns);
* ``"applied"``: the unlearning step ran and the round it was sent in completed;
* ``"failed"``: refused (unknown target, no node left ...) or the round that should have
  carried it failed; ``reason`` says why;
* ``"ignored"``: nothing to do (the client is already forgotten, or another request at
  the same boundary names the same client); ``reason`` says which.

``Unlearning.start()`` returns an :class:`UnlearningResult`: Flower's
:class:`~flwr.serverapp.strategy.Result` plus ``unlearning``, the list of outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from logging import WARNING

from flwr.serverapp.strategy import Result
from flwr.supercore import log

#: The statuses a request goes through.
STATUSES = ("pending", "applied", "failed", "ignored")


@dataclass
class RequestOutcome:
    """What became of one unlearning request.

    Parameters
    ----------
    by : str
        How targets are named (``"partition-id"``, ``"node-id"`` ...).
    values : list of str
        The target values asked for.
    kind : str
        ``"client"``, ``"class"`` or ``"instance"``.
    requested_by : str
        Who asked.
    at_round : int or None
        The round asked for (``None``: the next boundary).
    status : str (default: "pending")
        One of :data:`STATUSES`.
    round : int or None
        The round at whose start the request was applied (or failed).
    node_ids : list of int
        The nodes it resolved to.
    negated : list of str
        What the unlearning step changed (layer names, or keys).
    reason : str
        Why it failed or was ignored (empty otherwise).
    negated_metrics : dict or None
        What ``start()``'s ``evaluate_fn`` returned for the model the unlearning step
        produced, with ``Unlearning(evaluate_negated=True)``; ``None`` otherwise.
    """

    by: str
    values: list[str]
    kind: str = "client"
    requested_by: str = "operator"
    at_round: int | None = None
    status: str = "pending"
    round: int | None = None
    node_ids: list[int] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)
    reason: str = ""
    negated_metrics: dict | None = None

    def settle(self, status: str, *, reason: str = "", server_round: int | None = None) -> None:
        """Set a final status (``"applied"``, ``"failed"`` or ``"ignored"``).

        Parameters
        ----------
        status : str
            The new status, one of :data:`STATUSES`.
        reason : str
            Why (failed, ignored).
        server_round : int or None
            The round it concerns, if known.
        """
        if status not in STATUSES:
            raise ValueError(f"request status must be one of {STATUSES}, got {status!r}")
        self.status = status
        self.reason = reason
        if server_round is not None:
            self.round = server_round

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        """One line: ``partition-id=2 (asked for round 10): pending``."""
        when = f"round {self.at_round}" if self.at_round else "the next boundary"
        text = f"{self.by}={','.join(self.values)} (asked for {when}): {self.status}"
        return text + (f" ({self.reason})" if self.reason else "")


@dataclass(repr=False)
class UnlearningResult(Result):
    """Flower's :class:`~flwr.serverapp.strategy.Result` plus the requests' outcomes.

    Parameters
    ----------
    unlearning : list of RequestOutcome
        One per request made in the run, in the order they were made.
    """

    unlearning: list[RequestOutcome] = field(default_factory=list)

    @classmethod
    def of(cls, result: Result, outcomes: list[RequestOutcome]) -> UnlearningResult:
        """The same records as ``result``, with ``outcomes`` added."""
        base = {f.name: getattr(result, f.name) for f in fields(Result)}
        return cls(**base, unlearning=list(outcomes))


def warn_pending(outcomes: list[RequestOutcome], last_round: int, tag: str) -> None:
    """Log a warning for every request still pending when a run ends.

    Parameters
    ----------
    outcomes : list of RequestOutcome
        The run's outcomes.
    last_round : int
        The run's last round.
    tag : str
        Prefix of the log line.
    """
    for outcome in outcomes:
        if outcome.status == "pending":
            log(
                WARNING,
                "%s: the run ended after round %d with an unlearning request still "
                "pending, never applied: %s",
                tag,
                last_round,
                outcome.describe(),
            )


def fail_in_flight(outcomes: list[RequestOutcome], err: BaseException) -> None:
    """Mark outcomes whose round was under way when ``err`` stopped it as failed."""
    for outcome in outcomes:
        outcome.settle("failed", reason=f"the round failed: {type(err).__name__}: {err}")


__all__ = ["RequestOutcome", "STATUSES", "UnlearningResult", "fail_in_flight", "warn_pending"]
