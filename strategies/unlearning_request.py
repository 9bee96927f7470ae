"""Unlearning requests and what their application leaves behind (pure data, no torch).

:class:`UnlearningRequest` is what an operator, a file or a client asks for;
:class:`ExternalRequest` is how a request from outside the ServerApp's code (a request
source's ``poll()``) reaches the strategy; :class:`UnlearningEvent` is the record of one
applied request; :func:`request_kind` checks a request's shape (client-, class- or
instance-wise) before it is queued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

from .identity import TargetRule
from .outcomes import RequestOutcome


class UnlearningError(RuntimeError):
    """An unlearning request that cannot be applied as asked."""


@dataclass
class UnlearningRequest:
    """A request to forget one or more clients.

    Parameters
    ----------
    rule : TargetRule
        Which nodes are targets.
    at_round : int or None
        Apply at the boundary before this round; ``None`` = the next boundary.
    requested_by : str
        Who asked (``"operator"``, ``"client"`` ...); kept in the record.
    requested_at : str
        ISO time of the request.
    strict : bool
        ``True``: a request that cannot be applied (unknown target, no node left) stops
        the run with :class:`UnlearningError` (requests made in code). ``False``: it is
        rejected with a log line and training goes on (requests from outside: files,
        clients).
    on_settled : Callable or None
        ``f(request, accepted, reason)`` called once the request is applied or rejected.
    kind : str
        ``"client"`` (forget whole clients: they are excluded), ``"class"`` (forget the
        targets' examples of ``classes``; ``targets="*"`` = every client) or
        ``"instance"`` (forget the target's samples ``samples``). In the last two the
        targets stay in the federation and train on the data they keep.
    classes, samples : tuple[int, ...]
        Class labels / sample ids (indices into the client's training data) to forget.
    outcome : RequestOutcome
        What became of it (:mod:`strategies.outcomes`); made when the request is.
    reason : str
        Why it was asked ("GDPR art. 17"), if the requester said; kept in the event
        (:meth:`UnlearningEvent.to_dict` leaves it out when empty).
    """

    rule: TargetRule
    at_round: int | None = None
    requested_by: str = "operator"
    requested_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    strict: bool = True
    on_settled: Callable | None = field(default=None, repr=False, compare=False)
    kind: str = "client"
    classes: tuple[int, ...] = ()
    samples: tuple[int, ...] = ()
    outcome: RequestOutcome | None = field(default=None, repr=False, compare=False)
    reason: str = ""

    def __post_init__(self) -> None:
        if self.outcome is None:
            self.outcome = RequestOutcome(
                by=self.rule.by,
                values=list(self.rule.values),
                kind=self.kind,
                requested_by=self.requested_by,
                at_round=self.at_round,
            )

    @property
    def status(self) -> str:
        """``"pending"``, ``"applied"``, ``"failed"`` or ``"ignored"`` (see ``outcome``)."""
        return self.outcome.status


@dataclass
class UnlearningEvent:
    """What happened when a request was applied (JSON-ready through :meth:`to_dict`)."""

    request: UnlearningRequest
    round: int
    targets: list[dict]
    layers: list[str]
    keys: list[str]
    negation_seconds: float

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        out = asdict(self)
        out["request"].pop("on_settled", None)
        out["request"].pop("outcome", None)
        if not out["request"].get("reason"):
            out["request"].pop("reason", None)
        out["request"]["rule"] = {
            "by": self.request.rule.by,
            "values": list(self.request.rule.values),
        }
        return out


@dataclass(frozen=True)
class ExternalRequest:
    """A request from outside the ServerApp's code, as a request source's ``poll()`` yields it.

    The strategy queues it with :meth:`strategies.unlearning.Unlearning.request_unlearning`
    (not strict: a request that cannot be applied is rejected, training goes on).

    Parameters
    ----------
    targets : tuple of str
        Target values (partition ids, SuperNode names or node ids, as ``by`` says).
    by : str (default: "partition-id")
        What the values are: ``"node-id"``, ``"supernode-name"`` or a node-config key.
    requested_by : str (default: "operator")
        Who asked; kept in the event and the results.
    reason : str (default: "")
        Why ("GDPR art. 17"); kept in the request and its event.
    on_settled : Callable or None
        ``f(request, accepted, reason)``, called once the strategy applied or rejected it
        (a request folder moves the file then).
    """

    targets: tuple[str, ...]
    by: str = "partition-id"
    requested_by: str = "operator"
    reason: str = ""
    on_settled: Callable | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_mapping(cls, spec: Mapping) -> ExternalRequest:
        """From a dict with the same keys, the form request sources may also return.

        Raises
        ------
        ValueError
            Naming unknown keys, or a missing ``targets``.
        """
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - allowed)
        if unknown or "targets" not in spec:
            raise ValueError(
                f"a request needs 'targets' and may have {sorted(allowed - {'targets'})}; "
                f"got keys {sorted(spec)}"
            )
        targets = spec["targets"]
        if isinstance(targets, (str, int)):
            targets = [t.strip() for t in str(targets).split(",") if t.strip()]
        return cls(
            targets=tuple(str(t) for t in targets),
            by=str(spec.get("by", "partition-id")),
            requested_by=str(spec.get("requested_by", "operator")),
            reason=str(spec.get("reason") or ""),
            on_settled=spec.get("on_settled"),
        )


def external_request(spec: ExternalRequest | Mapping) -> ExternalRequest:
    """``spec`` as an :class:`ExternalRequest` (a dict is read by
    :meth:`ExternalRequest.from_mapping`)."""
    return spec if isinstance(spec, ExternalRequest) else ExternalRequest.from_mapping(spec)


def _ints(name: str, values: Iterable) -> tuple[int, ...]:
    if isinstance(values, (str, int)):
        values = [values]
    out = []
    for v in values:
        parts = v.split(",") if isinstance(v, str) else [v]
        for part in parts:
            text = str(part).strip()
            if isinstance(part, bool) or not text.isdigit():
                raise ValueError(f"unlearning request: {name} must be integers >= 0, got {part!r}")
            out.append(int(text))
    if not out:
        raise ValueError(f"unlearning request: {name} must not be empty")
    return tuple(sorted(set(out)))


def request_kind(targets, classes, samples) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """Which kind of forgetting a request asks for, with its validated classes/samples.

    Parameters
    ----------
    targets : iterable, str or int
        The request's targets (``"*"`` = every client, class-wise only).
    classes, samples : iterable of int or None
        Class labels or sample ids to forget.

    Returns
    -------
    tuple
        ``(kind, classes, samples)`` with kind ``"client"``, ``"class"`` or ``"instance"``.
    """
    names = (
        [t.strip() for t in targets.split(",")]
        if isinstance(targets, str)
        else ([str(targets)] if isinstance(targets, int) else [str(t).strip() for t in targets])
    )
    if classes is not None and samples is not None:
        raise ValueError("unlearning request: give classes or samples, not both")
    if classes is not None:
        return "class", _ints("classes", classes), ()
    if "*" in names:
        raise ValueError(
            "unlearning request: targets '*' (every client) is only allowed for "
            "class-wise forgetting; forgetting every client leaves nobody"
        )
    if samples is not None:
        if len([n for n in names if n]) != 1:
            raise ValueError(
                f"unlearning request: instance-wise forgetting names exactly one "
                f"client, got {names}"
            )
        return "instance", (), _ints("samples", samples)
    return "client", (), ()


def truthy(value) -> bool:
    """Node-config flags: ``true``/``1``/``yes`` (any case) or a true bool/number."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if isinstance(value, (bool, int, float)) else False


__all__ = ["UnlearningError", "UnlearningEvent", "UnlearningRequest", "request_kind", "truthy"]
