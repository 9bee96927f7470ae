"""The Unlearner protocol: what an unlearning method keeps while training and does at a request.

:class:`strategies.unlearning.Unlearning` owns requests, targets, exclusion, reply checks
and cost accounting; an *unlearner* is only the method itself:

* :meth:`Unlearner.observe_train` sees every round's checked train replies (with the
  model that was sent), to keep what the method needs later (FedEraser's history,
  FUKD's accumulated updates, PGD's latest local models). NoT and FT keep nothing.
* :meth:`Unlearner.unlearn` turns the global model into the unlearned model at the round
  boundary where a request is applied, after the targets were excluded. It gets an
  :class:`UnlearningStep`, through which every message it sends is counted.

:class:`Negation` (NoT) and :class:`NoStep` (FT, Retrain) are the two simplest; numpy only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from logging import WARNING
from typing import Protocol, runtime_checkable

from flwr.app import ArrayRecord, Message
from flwr.serverapp import Grid
from flwr.supercore import log

from .negation_arrays import NegationPlan
from .replies import arrayrecord_nbytes, reply_metrics, seconds_reported
from .requirements import REQUIREMENT_KEYS, Requirements


def nothing_needed() -> Requirements:
    """Requirements of a method that keeps nothing and needs nothing of its targets
    (NoT, FT, Retrain): :class:`Requirements` with its defaults."""
    return Requirements()


#: Kinds of request a method that only removes whole clients accepts.
CLIENT_ONLY = ("client",)
#: Every kind of request (whole clients, classes, samples).
ALL_KINDS = ("client", "class", "instance")


@dataclass
class UnlearningStep:
    """What an unlearner works with at a request, and the accounting of its step.

    Parameters
    ----------
    server_round : int
        The round whose boundary the request is applied at.
    arrays : ArrayRecord
        The global model at the request.
    targets : list[int]
        Node ids to forget (already excluded from sampling).
    excluded : frozenset[int]
        Every node excluded so far (earlier requests' targets too).
    grid : Grid
        The real grid (a method may message its targets, as PGD does).
    weighted_by_key, arrayrecord_key, configrecord_key : str
        The wrapped strategy's record keys.
    timeout : float or None
        Seconds to wait for replies to :meth:`send`.
    record : dict
        The step's record (``rounds``, ``bytes_down`` ...); a method adds its own entries.
    """

    server_round: int
    arrays: ArrayRecord
    targets: list[int]
    excluded: frozenset
    grid: Grid
    weighted_by_key: str = "num-examples"
    arrayrecord_key: str = "arrays"
    configrecord_key: str = "config"
    timeout: float | None = None
    record: dict = field(default_factory=dict)
    client_wait_seconds: float = 0.0
    replied: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for key, value in (
            ("rounds", 0),
            ("bytes_down", 0),
            ("bytes_up", 0),
            ("client_seconds", 0.0),
            ("server_seconds", 0.0),
            ("participants", []),
        ):
            self.record.setdefault(key, value)

    def send(
        self, messages: Sequence[Message], *, counts_as_round: bool = True, who: str = "unlearning"
    ) -> list[Message]:
        """Send the step's messages and count them; return the replies without errors.

        Every reply's ArrayRecords count as bytes up, its ``*-seconds`` metrics as client
        seconds, its sender as a participant of the step.

        Parameters
        ----------
        messages : Sequence[Message]
            The messages.
        counts_as_round : bool (default: True)
            Whether this exchange is one communication round of the step.
        who : str
            Name used in log lines.
        """
        messages = list(messages)
        down = sum(
            arrayrecord_nbytes(rec) for m in messages for rec in m.content.array_records.values()
        )
        t0 = time.perf_counter()
        replies = (
            list(self.grid.send_and_receive(messages, timeout=self.timeout)) if messages else []
        )
        self.client_wait_seconds += time.perf_counter() - t0
        ok = []
        for msg in replies:
            if msg.has_error():
                log(
                    WARNING,
                    "%s: node %d failed the unlearning step (round %d): %s",
                    who,
                    msg.metadata.src_node_id,
                    self.server_round,
                    msg.error.reason,
                )
                continue
            ok.append(msg)
        up = sum(arrayrecord_nbytes(rec) for m in ok for rec in m.content.array_records.values())
        seconds = sum(seconds_reported(reply_metrics(m.content)) for m in ok)
        self.record["bytes_down"] += down
        self.record["bytes_up"] += up
        self.record["client_seconds"] += seconds
        if counts_as_round and messages:
            self.record["rounds"] += 1
        ids = [m.metadata.src_node_id for m in ok]
        self.replied.extend(ids)
        self.record["participants"].extend(n for n in ids if n not in self.record["participants"])
        return ok


@runtime_checkable
class Unlearner(Protocol):
    """An unlearning method, as :class:`strategies.unlearning.Unlearning` drives it.

    Attributes
    ----------
    name : str
        The method's name in logs and step records (``"NoT"``, ``"PGD"`` ...).
    requirements : Requirements
        What the method needs.
    kinds : tuple of str
        Kinds of request it can serve (``"client"``, ``"class"``, ``"instance"``).
    records_step : bool
        Whether its step is reported as one (``unlearning_step`` per request, its
        communication rounds, :attr:`storage_bytes`); NoT's and FT's are not.
    layers, keys : tuple of str
        What it negates (NoT); empty for the others.
    """

    name: str
    requirements: Requirements
    kinds: tuple[str, ...]
    records_step: bool
    layers: tuple[str, ...]
    keys: tuple[str, ...]

    def observe_train(
        self, server_round: int, sent: ArrayRecord, replies: list[Message], weighted_by_key: str
    ) -> None:
        """See a round's checked train replies (``sent``: the model they trained from)."""

    def unlearn(self, step: UnlearningStep) -> ArrayRecord:
        """Return the unlearned model at a request."""

    @property
    def storage_bytes(self) -> int:
        """Bytes of history kept now (measured)."""


@dataclass
class Negation:
    """NoT: multiply the plan's tensors by -1; keeps nothing while training.

    Parameters
    ----------
    plan : NegationPlan
        What to negate (:func:`strategies.negation.plan_negation`, or
        ``NegationPlan(layers=(), keys=(...))`` for state_dict keys).
    """

    plan: NegationPlan
    name: str = "NoT"
    requirements: Requirements = field(default_factory=nothing_needed)
    kinds: tuple[str, ...] = ALL_KINDS
    records_step: bool = False
    storage_bytes: int = 0

    @property
    def layers(self) -> tuple[str, ...]:
        """Negated layers."""
        return tuple(self.plan.layers)

    @property
    def keys(self) -> tuple[str, ...]:
        """Negated state_dict keys."""
        return tuple(self.plan.keys)

    def observe_train(self, server_round, sent, replies, weighted_by_key) -> None:
        """Nothing to keep."""

    def unlearn(self, step: UnlearningStep) -> ArrayRecord:
        """The negated global model."""
        return self.plan.apply(step.arrays)


@dataclass
class NoStep:
    """No unlearning step (FT, Retrain): the model is kept; recovery does the work."""

    name: str = "FT"
    requirements: Requirements = field(default_factory=nothing_needed)
    kinds: tuple[str, ...] = ALL_KINDS
    records_step: bool = False
    storage_bytes: int = 0
    layers: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def observe_train(self, server_round, sent, replies, weighted_by_key) -> None:
        """Nothing to keep."""

    def unlearn(self, step: UnlearningStep) -> ArrayRecord:
        """The global model as it is."""
        return step.arrays


def as_plan(negation: NegationPlan | Sequence[str]) -> NegationPlan:
    """A plan from a plan or a list of state_dict keys (refusing anything else).

    Raises
    ------
    ValueError
        For an empty list or non-string keys.
    """
    if isinstance(negation, NegationPlan):
        return negation
    keys = [negation] if isinstance(negation, str) else list(negation)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(
            "NoT(negation=...) needs a NegationPlan or a non-empty list of "
            f"state_dict keys, got {negation!r}"
        )
    return NegationPlan(layers=(), keys=tuple(keys))


__all__ = [
    "ALL_KINDS",
    "CLIENT_ONLY",
    "Negation",
    "NoStep",
    "REQUIREMENT_KEYS",
    "Requirements",
    "Unlearner",
    "UnlearningStep",
    "as_plan",
    "nothing_needed",
]
