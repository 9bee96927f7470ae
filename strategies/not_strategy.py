"""NoT: federated unlearning by weight negation, as a Flower Message-API strategy.

:class:`NoT` is :class:`flwr.serverapp.strategy.FedAvg` plus unlearning requests. Until a
request is applied it *is* FedAvg: same sampling (it calls FedAvg's own
``configure_train``/``configure_evaluate``), same aggregate. A request takes effect at the
next round boundary (the next ``configure_train``):

1. its targets are resolved to connected nodes (by node-config value, SuperNode name or
   node id, see :mod:`strategies.identity`); a target that matches no connected node, or a
   request that would leave no node to recover with, raises :class:`UnlearningError`;
2. the selected layers of the global model are negated (x -1,
   :mod:`strategies.negation`); the negated model is the one sent out for training;
3. from then on (recovery) the targets are never sampled for train or evaluate, and a
   reply that still arrives from one is dropped and logged. Nodes that connect later are
   checked against the request too, so a restarted target stays excluded.

Nothing else is stored: no history, no target data, no work from the departing client.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from logging import INFO, WARNING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from .aggregate_utils import EmptyRoundGuard, failure_reasons, restore_dtypes
from .identity import (
    BY_NAME,
    BY_NODE_ID,
    IDENTITY_QUERY,
    TargetRule,
    identity_hint,
    make_rule,
    read_identity,
)
from .negation import NegationPlan, npy_payload


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
        out["request"]["rule"] = {"by": self.request.rule.by, "values": list(self.request.rule.values)}
        return out


# ---------------------------------------------------------------- pure helpers
def sample_size(num_eligible: int, fraction: float, min_nodes: int) -> int:
    """Number of nodes to sample, FedAvg's rule: ``max(int(n * fraction), min_nodes)``.

    Parameters
    ----------
    num_eligible : int
        Nodes that may be sampled.
    fraction : float
        Fraction to sample.
    min_nodes : int
        Lower bound.

    Returns
    -------
    int
    """
    return max(int(num_eligible * fraction), min_nodes)


def eligible_nodes(all_node_ids: Iterable[int], excluded: set[int]) -> list[int]:
    """Return the connected nodes that are not excluded, in the grid's order.

    Parameters
    ----------
    all_node_ids : Iterable[int]
        Connected node ids.
    excluded : set[int]
        Ids never to sample.

    Returns
    -------
    list[int]
    """
    return [n for n in all_node_ids if n not in excluded]


def arrayrecord_nbytes(arrays: ArrayRecord) -> int:
    """Bytes of the tensors an ArrayRecord carries (what goes over the wire, less framing).

    Parameters
    ----------
    arrays : ArrayRecord
        The record.

    Returns
    -------
    int
    """
    return sum(len(array.data) for array in arrays.values())


def reply_metrics(content: RecordDict) -> dict:
    """All MetricRecord entries of a reply, merged into one dict."""
    out: dict = {}
    for record in content.metric_records.values():
        out.update(record)
    return out


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
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else (
        [str(targets)] if isinstance(targets, int) else [str(t).strip() for t in targets])
    if classes is not None and samples is not None:
        raise ValueError("unlearning request: give classes or samples, not both")
    if classes is not None:
        return "class", _ints("classes", classes), ()
    if "*" in names:
        raise ValueError("unlearning request: targets '*' (every client) is only allowed for "
                         "class-wise forgetting; forgetting every client leaves nobody")
    if samples is not None:
        if len([n for n in names if n]) != 1:
            raise ValueError(f"unlearning request: instance-wise forgetting names exactly one "
                             f"client, got {names}")
        return "instance", (), _ints("samples", samples)
    return "client", (), ()


def array_layout(arrays: ArrayRecord) -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype) of an ArrayRecord: what a valid reply must match."""
    return {key: (tuple(array.shape), str(array.dtype)) for key, array in arrays.items()}


def all_finite(array) -> bool:
    """Whether a flwr ``Array`` holds no NaN or inf (integer arrays always do).

    Reads a ``.npy`` payload in place (:func:`strategies.negation.npy_payload`); anything
    else goes through ``Array.numpy()``.
    """
    parsed = npy_payload(array)
    values = parsed[1] if parsed is not None else array.numpy()
    return values.dtype.kind not in "fc" or bool(np.isfinite(values).all())


#: Server updates during recovery (see ``NoT(recovery_optimizer=...)``).
RECOVERY_OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


def adam_step(
    delta: np.ndarray, m: np.ndarray | None, v: np.ndarray | None, t: int, eta: float,
    beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One FedAdam server step (Reddi et al. 2021; the math of Flower's ``FedAdam``).

    Parameters
    ----------
    delta : np.ndarray
        Pseudo-gradient ``aggregate - global`` of one tensor.
    m, v : np.ndarray or None
        First and second moments so far (``None``: zeros).
    t : int
        Step number, from 1.
    eta : float
        Server learning rate.
    beta_1, beta_2, tau : float
        Moment decay rates and the adaptivity constant.

    Returns
    -------
    tuple of np.ndarray
        ``(m, v, update)``; the new global tensor is ``global + update``.
    """
    m = (1 - beta_1) * delta if m is None else beta_1 * m + (1 - beta_1) * delta
    v = (1 - beta_2) * delta**2 if v is None else beta_2 * v + (1 - beta_2) * delta**2
    eta_t = eta * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    return m, v, eta_t * m / (np.sqrt(v) + tau)


def check_train_reply(
    content: RecordDict, layout: dict[str, tuple[tuple[int, ...], str]], weighted_by_key: str,
    metrics: dict | None = None,
) -> str | None:
    """Why a train reply must not be aggregated, or ``None`` if it is fine.

    A valid reply holds exactly one ArrayRecord with the global model's keys, shapes and
    dtypes and only finite values, and a positive, finite ``weighted_by_key`` metric.

    Parameters
    ----------
    content : RecordDict
        The reply's content.
    layout : dict
        :func:`array_layout` of the model that was sent.
    weighted_by_key : str
        The weighting metric (``num-examples``).
    metrics : dict or None
        :func:`reply_metrics` of ``content`` if already computed.

    Returns
    -------
    str or None
        The reason for rejection.
    """
    records = list(content.array_records.values())
    if len(records) != 1:
        return f"expected exactly one ArrayRecord, got {len(records)}"
    record = records[0]
    missing = sorted(set(layout) - set(record.keys()))
    extra = sorted(set(record.keys()) - set(layout))
    if missing or extra:
        return f"keys differ from the global model: missing {missing[:3]}, unexpected {extra[:3]}"
    for key, array in record.items():
        shape, dtype = layout[key]
        if tuple(array.shape) != shape or str(array.dtype) != dtype:
            return (f"tensor {key!r} is {tuple(array.shape)} {array.dtype}, the global model's "
                    f"is {shape} {dtype}")
        if not all_finite(array):
            return f"tensor {key!r} holds NaN or inf"
    weight = (reply_metrics(content) if metrics is None else metrics).get(weighted_by_key)
    if (isinstance(weight, bool) or not isinstance(weight, (int, float))
            or not np.isfinite(weight) or weight <= 0):
        return f"metric {weighted_by_key!r} must be a positive number, got {weight!r}"
    return None


def _truthy(value) -> bool:
    """Node-config flags: ``true``/``1``/``yes`` (any case) or a true bool/number."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if isinstance(value, (bool, int, float)) else False


# ---------------------------------------------------------------- the strategy
# pylint: disable=too-many-instance-attributes
class NoT(FedAvg):
    """FedAvg that unlearns clients by negating layers and recovering without them.

    Parameters
    ----------
    negation : NegationPlan, Sequence[str] or None
        What to negate: a plan from :func:`strategies.negation.plan_negation` (layers
        found by running the model; the usual choice) or the state_dict keys themselves.
        ``None`` negates nothing: recovery is then plain fine-tuning without the targets
        (the FT reference, see :class:`strategies.baselines.FT`).
    identity_timeout : float (default: 60.0)
        Seconds to wait for ``query.identity`` replies when targets are named by a
        node-config value.
    node_wait_timeout : float (default: 600.0)
        In recovery, seconds to wait for enough non-target nodes to be connected before
        failing with :class:`UnlearningError`.
    forget_me_key : str or None (default: None)
        Node-config key by which a node asks to be forgotten itself (not-flower's app
        uses ``"forget-me"``): at every round boundary, nodes not seen before are asked
        for their identity and a node whose value is true is unlearnt (by node id,
        ``requested_by="client:<node id>"``). A node can only ask for itself. Needs the
        identity handler in the ClientApp.
    request_source : object or None
        Requests from outside the ServerApp code (for example
        :class:`not_flower.requests.RequestFolder`): an object with ``poll() ->
        list[dict]`` (each ``{"targets", "by", "requested_by", "on_settled"}``), polled
        at every round boundary. Such requests are not strict: one that cannot be
        applied is rejected with a log line and training goes on.
    keep_rounds : int or None (default: None)
        How many rounds of bookkeeping (:attr:`rounds`: sampled and replying nodes,
        per-node metrics, bytes, seconds) to keep; ``None`` keeps all. With a number the
        strategy's memory does not grow with the number of rounds (the ServerApp copies
        what it reports each round).
    recovery_momentum : float (default: 0.0)
        Server momentum during recovery only (FedAvgM's update, Hsu et al. 2019):
        ``v = m * v + (aggregate - global)``, ``global += recovery_server_lr * v``; ``v``
        starts at zero at every request. 0 = plain FedAvg recovery (the paper's).
    recovery_server_lr : float (default: 1.0)
        Server learning rate of that update during recovery (FedAdam's ``eta`` with
        ``recovery_optimizer="adam"``).
    recovery_optimizer : str (default: "sgd")
        Server update during recovery: ``"sgd"`` (the FedAvgM update above; with
        momentum 0 and learning rate 1 it is plain FedAvg) or ``"adam"`` (FedAdam's
        update, Reddi et al. 2021, as Flower's ``FedAdam``: ``m = b1 m + (1 - b1) d``,
        ``v = b2 v + (1 - b2) d^2``, ``global += eta_t m / (sqrt(v) + tau)`` with
        ``d = aggregate - global``, ``b1 = 0.9``, ``b2 = 0.99``, ``tau = 1e-3`` and the
        bias-corrected ``eta_t = eta sqrt(1 - b2^t) / (1 - b1^t)``, ``t`` counting
        recovery rounds; ``recovery_momentum`` must be 0). Its state starts at zero at
        every request.
    recovery_config : dict or None
        Entries added to the train config during recovery only (for example a recovery
        learning rate ``{"lr": 0.02}`` for ClientApps that read it).
    max_empty_rounds : int or None (default: 3)
        A round that aggregates no train reply (every reply failed or was rejected) is
        logged as an error; this many such rounds in a row stop the run with
        :class:`strategies.aggregate_utils.EmptyRoundsError`. ``None`` or 0: never stop.
    on_unlearning : Callable or None
        ``f(event, arrays_before, arrays_after)`` called right after a negation (the
        ServerApp uses it to save the pre-unlearning checkpoint and measure the negated
        model). Nothing is copied for it: ``arrays_after`` shares every untouched Array.
    **fedavg_kwargs
        Passed to :class:`flwr.serverapp.strategy.FedAvg` (``fraction_train``,
        ``min_train_nodes``, ...).

    Notes
    -----
    Requests are handed to the strategy with :meth:`request_unlearning`, before
    ``start()`` (with ``at_round``) or from another thread while it runs.
    """

    def __init__(
        self,
        negation: NegationPlan | Sequence[str] | None,
        *,
        identity_timeout: float = 60.0,
        node_wait_timeout: float = 600.0,
        forget_me_key: str | None = None,
        request_source=None,
        keep_rounds: int | None = None,
        recovery_momentum: float = 0.0,
        recovery_server_lr: float = 1.0,
        recovery_optimizer: str = "sgd",
        recovery_config: dict | None = None,
        max_empty_rounds: int | None = 3,
        on_unlearning: Callable[[UnlearningEvent, ArrayRecord, ArrayRecord], None]
        | None = None,
        **fedavg_kwargs,
    ) -> None:
        super().__init__(**fedavg_kwargs)
        if negation is not None and not isinstance(negation, NegationPlan):
            keys = [negation] if isinstance(negation, str) else list(negation)
            if not keys or not all(isinstance(k, str) for k in keys):
                raise ValueError(
                    "NoT(negation=...) needs a NegationPlan or a non-empty list of "
                    f"state_dict keys, got {negation!r}"
                )
            negation = NegationPlan(layers=(), keys=tuple(keys))
        self.negation = negation
        self.identity_timeout = identity_timeout
        self.node_wait_timeout = node_wait_timeout
        self.on_unlearning = on_unlearning
        self.forget_me_key = forget_me_key
        self.request_source = request_source
        self.keep_rounds = keep_rounds
        if not 0.0 <= recovery_momentum < 1.0:
            raise ValueError(f"recovery_momentum must be in [0, 1), got {recovery_momentum}")
        if not recovery_server_lr > 0:
            raise ValueError(f"recovery_server_lr must be > 0, got {recovery_server_lr}")
        if recovery_optimizer not in RECOVERY_OPTIMIZERS:
            raise ValueError(f"recovery_optimizer must be one of {RECOVERY_OPTIMIZERS}, got "
                             f"{recovery_optimizer!r}")
        if recovery_optimizer == "adam" and recovery_momentum > 0:
            raise ValueError("recovery_momentum applies to recovery_optimizer='sgd' only; "
                             f"got recovery_momentum={recovery_momentum} with 'adam'")
        self.recovery_optimizer = recovery_optimizer
        self.recovery_momentum = recovery_momentum
        self.recovery_server_lr = recovery_server_lr
        self.recovery_config = dict(recovery_config or {})
        self._empty_rounds = EmptyRoundGuard(max_empty_rounds)
        self._velocity: dict[str, np.ndarray] | None = None  # first moment (sgd: velocity)
        self._second: dict[str, np.ndarray] = {}  # adam: second moment
        self._steps = 0  # server updates since the request
        self._sent: ArrayRecord | None = None  # the global model sent this round
        self._asked: set[int] = set()  # nodes already sent a query.identity
        self._replied: set[int] = set()  # nodes that sent a train/evaluate reply
        self._layout: dict | None = None  # shapes/dtypes of the model sent for training
        self._recovering = False
        # class-/instance-wise forgetting: node id (or "*") -> {"classes", "samples"}
        self._forget: dict[int | str, dict[str, set[int]]] = {}

        self._lock = threading.Lock()
        self._pending: list[UnlearningRequest] = []
        self._rules: list[TargetRule] = []
        self._identities: dict[int, dict | None] = {}  # node id -> node config (None: unknown)
        self._excluded: set[int] = set()
        self._fallback_arrays: ArrayRecord | None = None
        self.events: list[UnlearningEvent] = []
        self.rounds: dict[int, dict] = {}

    # ------------------------------------------------------------ public API
    def request_unlearning(
        self,
        targets: Iterable | str | int,
        *,
        by: str = "partition-id",
        classes: Iterable[int] | None = None,
        samples: Iterable[int] | None = None,
        at_round: int | None = None,
        requested_by: str = "operator",
        strict: bool = True,
        on_settled: Callable | None = None,
    ) -> UnlearningRequest:
        """Queue a request to forget clients (client-wise forgetting).

        Parameters
        ----------
        targets : iterable, str or int
            Target values: partition ids, SuperNode names or node ids, depending on
            ``by``. A string may be a comma-separated list (``"0,3"``).
        by : str (default: "partition-id")
            ``"node-id"``, ``"supernode-name"`` or the node-config key the values refer to.
        classes : Iterable[int] or None
            Class-wise forgetting: forget the targets' examples of these classes
            (``targets="*"``: every client's). The targets keep training on the rest.
        samples : Iterable[int] or None
            Instance-wise forgetting: forget these samples (indices into the one target's
            training data). The target keeps training on the rest.
        at_round : int or None (default: None)
            Apply at the boundary before this round; ``None`` = the next boundary.
        requested_by : str (default: "operator")
            Who asked; kept in the event and the results.
        strict : bool (default: True)
            See :class:`UnlearningRequest`.
        on_settled : Callable or None
            Called with ``(request, accepted, reason)`` once applied or rejected.

        Returns
        -------
        UnlearningRequest
            The queued request.
        """
        if at_round is not None and (not isinstance(at_round, int) or at_round < 1):
            raise ValueError(f"at_round must be an integer >= 1 or None, got {at_round!r}")
        kind, classes, samples = request_kind(targets, classes, samples)
        request = UnlearningRequest(
            rule=make_rule(targets, by), at_round=at_round, requested_by=requested_by,
            strict=strict, on_settled=on_settled, kind=kind, classes=classes, samples=samples,
        )
        with self._lock:
            self._pending.append(request)
        log(INFO, "NoT: unlearning request queued: %s=%s (%s)", request.rule.by,
            ",".join(request.rule.values),
            f"at round {at_round}" if at_round else "at the next round boundary")
        return request

    def identify(self, grid: Grid, node_ids: Iterable[int] | None = None) -> dict[int, dict | None]:
        """Ask nodes whose identity is not known yet for it (``query.identity``).

        Parameters
        ----------
        grid : Grid
            The grid to send the query through.
        node_ids : Iterable[int], optional
            Nodes to identify; default all connected nodes.

        Returns
        -------
        dict[int, dict | None]
            Node id -> node config (``None`` when the node did not answer).
        """
        ids = list(grid.get_node_ids()) if node_ids is None else list(node_ids)
        self._query_identities(grid, ids)
        return {n: self._identities.get(n) for n in ids}

    @property
    def identities(self) -> dict[int, dict | None]:
        """Node configs learnt so far (from ``query.identity`` or ``identity_mod``)."""
        return dict(self._identities)

    def exclude(self, targets: Iterable | str | int, *, by: str = "partition-id") -> TargetRule:
        """Exclude clients from now on WITHOUT negating: for an unlearning that was applied
        before a restart (the global model the run resumes from is already negated and
        partly recovered).

        Parameters
        ----------
        targets : iterable, str or int
            As in :meth:`request_unlearning`.
        by : str (default: "partition-id")
            As in :meth:`request_unlearning`.

        Returns
        -------
        TargetRule
        """
        rule = make_rule(targets, by)
        self._rules.append(rule)
        self._recovering = True
        return rule

    @property
    def forget_specs(self) -> dict[str, dict[str, list[int]]]:
        """Class-/instance-wise forgetting in force: node id (or ``"*"``) -> classes, samples."""
        return {str(k): {"classes": sorted(v["classes"]), "samples": sorted(v["samples"])}
                for k, v in self._forget.items()}

    def restore_forget_specs(self, specs: dict) -> None:
        """Put back :attr:`forget_specs` saved before a restart (no negation)."""
        for key, spec in specs.items():
            node = key if key == "*" else int(key)
            entry = self._forget.setdefault(node, {"classes": set(), "samples": set()})
            entry["classes"].update(spec.get("classes", []))
            entry["samples"].update(spec.get("samples", []))
        if specs:
            self._recovering = True

    def forget_spec_for(self, node_id: int) -> dict[str, list[int]]:
        """Classes and sample ids node ``node_id`` must not train on (may be empty)."""
        classes, samples = set(), set()
        for key in ("*", node_id):
            if key in self._forget:
                classes |= self._forget[key]["classes"]
                samples |= self._forget[key]["samples"]
        return {"classes": sorted(classes), "samples": sorted(samples)}

    @property
    def applied_rules(self) -> list[TargetRule]:
        """Target rules of the requests applied so far (and of :meth:`exclude`)."""
        return list(self._rules)

    @property
    def pending_requests(self) -> list[UnlearningRequest]:
        """Requests queued and not applied yet."""
        with self._lock:
            return list(self._pending)

    @property
    def excluded_node_ids(self) -> frozenset[int]:
        """Node ids that are never sampled again."""
        return frozenset(self._excluded)

    @property
    def in_recovery(self) -> bool:
        """Whether at least one request has been applied."""
        return bool(self.events)

    def summary(self) -> None:
        """Log summary configuration of the strategy."""
        if self.negation is None:
            log(INFO, "\t├──> %s: no negation (recovery is fine-tuning)", type(self).__name__)
        else:
            log(INFO, "\t├──> NoT negation: layers %s, %d tensors",
                list(self.negation.layers), len(self.negation.keys))
        super().summary()

    # ------------------------------------------------------------ round boundary
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Apply due requests (negate, exclude), then sample among non-targets."""
        self._collect_requests(grid)
        with self._lock:
            due = [r for r in self._pending if r.at_round is None or r.at_round <= server_round]
            self._pending = [r for r in self._pending if r not in due]
        if due:
            arrays = self._apply(due, server_round, arrays, grid)
        self._fallback_arrays = arrays if due else None
        self._sent = arrays
        if self._recovering and self.recovery_config:
            config = ConfigRecord({**dict(config), **self.recovery_config})

        if not self._rules:
            messages = list(super().configure_train(server_round, arrays, config, grid))
        else:
            node_ids = self._sample(grid, self.fraction_train, self.min_train_nodes, "train")
            config["server-round"] = server_round
            record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
            messages = list(self._construct_messages(record, node_ids, MessageType.TRAIN))
        messages = self._with_forget_specs(messages)
        self._layout = array_layout(arrays)
        info = self._round(server_round)
        info["train_sampled"] = [m.metadata.dst_node_id for m in messages]
        info["bytes_down"] = info.get("bytes_down", 0) + arrayrecord_nbytes(arrays) * len(messages)
        return messages

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample evaluation nodes among non-targets."""
        if not self._rules:
            messages = list(super().configure_evaluate(server_round, arrays, config, grid))
        elif self.fraction_evaluate == 0.0:
            messages = []
        else:
            node_ids = self._sample(
                grid, self.fraction_evaluate, self.min_evaluate_nodes, "evaluate"
            )
            config["server-round"] = server_round
            record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
            messages = list(self._construct_messages(record, node_ids, MessageType.EVALUATE))
        messages = self._with_forget_specs(messages)
        info = self._round(server_round)
        info["evaluate_sampled"] = [m.metadata.dst_node_id for m in messages]
        info["bytes_down"] = info.get("bytes_down", 0) + arrayrecord_nbytes(arrays) * len(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop excluded and invalid replies, aggregate as FedAvg, keep every dtype.

        Integer tensors get the weighted mean rounded to the nearest integer
        (:func:`strategies.aggregate_utils.restore_dtypes`); a round with no reply to
        aggregate is logged as an error and counted against ``max_empty_rounds``.
        """
        kept = self._filter(server_round, replies, "train")
        t0 = time.perf_counter()
        arrays, metrics = super().aggregate_train(server_round, kept)
        info = self._round(server_round)
        if arrays is not None and self._layout is not None:  # integer buffers stay integer
            arrays = restore_dtypes(arrays, self._layout)
        aggregated = 0 if arrays is None else sum(not m.has_error() for m in kept)
        self._empty_rounds.update(server_round, aggregated,
                                  failure_reasons(kept, info.get("rejected_train", {})))
        info["server_seconds"] = info.get("server_seconds", 0.0) + time.perf_counter() - t0
        if arrays is None and self._fallback_arrays is not None:
            # No usable reply in the first recovery round: the negated model stays the
            # global model (the pre-negation one must not come back).
            log(WARNING, "NoT: no train reply aggregated in round %d; keeping the negated "
                "model as the global model", server_round)
            arrays = self._fallback_arrays
        self._fallback_arrays = None
        if (arrays is not None and self._recovering and self._sent is not None
                and (self.recovery_momentum > 0 or self.recovery_server_lr != 1.0
                     or self.recovery_optimizer == "adam")):
            arrays = self._server_step(self._sent, arrays)
        return arrays, metrics

    def _server_step(self, sent: ArrayRecord, aggregate: ArrayRecord) -> ArrayRecord:
        """FedAvgM- or FedAdam-style server update (recovery only); integer buffers are
        taken as aggregated."""
        if self._velocity is None:
            self._velocity, self._second, self._steps = {}, {}, 0
        self._steps += 1
        out = ArrayRecord()
        for key, agg in aggregate.items():
            new = agg.numpy()
            if key in sent and new.dtype.kind == "f":
                old = sent[key].numpy()
                delta = new - old
                if self.recovery_optimizer == "adam":
                    step = adam_step(delta, self._velocity.get(key), self._second.get(key),
                                     self._steps, self.recovery_server_lr)
                    self._velocity[key], self._second[key], update = step
                else:
                    v = self._velocity.get(key)
                    v = delta if v is None else self.recovery_momentum * v + delta
                    self._velocity[key] = v
                    update = self.recovery_server_lr * v
                out[key] = Array(np.asarray(old + update, dtype=new.dtype))
            else:
                out[key] = agg
        return out

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Drop replies from excluded nodes, then aggregate as FedAvg."""
        return super().aggregate_evaluate(
            server_round, self._filter(server_round, replies, "evaluate")
        )

    # ------------------------------------------------------------ internals
    def _round(self, server_round: int) -> dict:
        if server_round not in self.rounds and self.keep_rounds is not None:
            for old in [r for r in self.rounds if r <= server_round - self.keep_rounds]:
                del self.rounds[old]
        return self.rounds.setdefault(
            server_round, {"phase": "recovery" if self._recovering else "train"}
        )

    def _filter(self, server_round: int, replies: Iterable[Message], what: str) -> list[Message]:
        kept = []
        metrics: dict[int, dict] = {}  # id(msg) -> reply_metrics (built once per reply)
        for msg in replies:
            node_id = msg.metadata.src_node_id
            if not msg.has_error():
                self._replied.add(node_id)
                identity = read_identity(msg.content)
                if identity is not None:
                    self._identities[node_id] = identity
                if self._rules and node_id not in self._excluded and self._is_target(
                    node_id, None, self._identities.get(node_id)
                ):
                    self._excluded.add(node_id)
            if node_id in self._excluded:
                log(WARNING, "NoT: dropped a %s reply from excluded node %d (round %d)",
                    what, node_id, server_round)
                continue
            if not msg.has_error():
                metrics[id(msg)] = reply_metrics(msg.content)
            if not msg.has_error() and what == "train" and self._layout is not None:
                reason = check_train_reply(msg.content, self._layout, self.weighted_by_key,
                                           metrics[id(msg)])
                if reason is not None:
                    log(WARNING, "NoT: rejected the train reply of node %d (round %d): %s",
                        node_id, server_round, reason)
                    self._round(server_round).setdefault("rejected_train", {})[node_id] = reason
                    continue
            kept.append(msg)
        kept = self._drop_inconsistent_metrics(server_round, kept, what, metrics)
        info = self._round(server_round)
        ok = [m for m in kept if not m.has_error()]
        info[f"{what}_replied"] = [m.metadata.src_node_id for m in ok]
        info[f"{what}_metrics"] = {m.metadata.src_node_id: metrics[id(m)] for m in ok}
        info["bytes_up"] = info.get("bytes_up", 0) + sum(
            arrayrecord_nbytes(rec) for m in ok for rec in m.content.array_records.values()
        )
        info["client_seconds"] = info.get("client_seconds", 0.0) + sum(
            float(v) for m in ok for k, v in info[f"{what}_metrics"][m.metadata.src_node_id].items()
            if k.endswith("-seconds") and isinstance(v, (int, float))
        )
        return kept

    def _drop_inconsistent_metrics(
        self, server_round: int, replies: list[Message], what: str, metrics: dict[int, dict]
    ) -> list[Message]:
        """Drop replies whose metric keys differ from the most common set.

        FedAvg refuses to aggregate a round whose replies report different metric keys;
        one odd client must not stop the round for everyone.
        """
        keysets = {
            m.metadata.src_node_id: frozenset(metrics[id(m)])
            for m in replies if not m.has_error()
        }
        if len(set(keysets.values())) <= 1:
            return replies
        counts: dict[frozenset, int] = {}
        for keys in keysets.values():
            counts[keys] = counts.get(keys, 0) + 1
        majority = max(counts, key=lambda k: (counts[k], self.weighted_by_key in k))
        out = []
        for m in replies:
            node_id = m.metadata.src_node_id
            if not m.has_error() and keysets[node_id] != majority:
                reason = (f"metric keys {sorted(keysets[node_id])} differ from the other "
                          f"replies' {sorted(majority)}")
                log(WARNING, "NoT: rejected the %s reply of node %d (round %d): %s",
                    what, node_id, server_round, reason)
                self._round(server_round).setdefault(f"rejected_{what}", {})[node_id] = reason
                continue
            out.append(m)
        return out

    def _is_target(self, node_id: int, name: str | None, identity: dict | None) -> bool:
        return any(rule.match(node_id, name, identity) for rule in self._rules)

    def _query_identities(self, grid: Grid, node_ids: list[int]) -> None:
        """Ask nodes whose identity is unknown for their node config."""
        unknown = [n for n in node_ids if self._identities.get(n) is None]
        if not unknown:
            return
        self._asked.update(unknown)
        messages = [
            Message(RecordDict(), dst_node_id=n, message_type=IDENTITY_QUERY) for n in unknown
        ]
        replies = grid.send_and_receive(messages, timeout=self.identity_timeout)
        for msg in replies:
            if msg.has_error():
                log(WARNING, "NoT: node %d did not answer query.identity (%s)",
                    msg.metadata.src_node_id, msg.error.reason)
                self._identities.setdefault(msg.metadata.src_node_id, None)
                continue
            self._identities[msg.metadata.src_node_id] = read_identity(msg.content)

    def _names(self, grid: Grid) -> dict[int, str]:
        return {info.node_id: getattr(info, "name", "") for info in grid.get_nodes()}

    def _update_exclusions(self, grid: Grid, node_ids: list[int]) -> None:
        """Exclude connected nodes that match any applied request (new nodes too)."""
        if any(rule.needs_identity for rule in self._rules):
            self._query_identities(
                grid, [n for n in node_ids if n not in self._excluded and n not in self._asked]
            )
        names = self._names(grid) if any(r.by == BY_NAME for r in self._rules) else {}
        for n in node_ids:
            if n not in self._excluded and self._is_target(
                n, names.get(n), self._identities.get(n)
            ):
                log(INFO, "NoT: node %d matches an unlearning request; excluded", n)
                self._excluded.add(n)

    def _with_forget_specs(self, messages: list[Message]) -> list[Message]:
        """Give each affected node its own config with ``forget-classes``/``forget-samples``.

        The ArrayRecord is shared, not copied; unaffected nodes get the message as it was.
        """
        if not self._forget:
            return messages
        out = []
        for msg in messages:
            spec = self.forget_spec_for(msg.metadata.dst_node_id)
            if not spec["classes"] and not spec["samples"]:
                out.append(msg)
                continue
            config = ConfigRecord(dict(msg.content[self.configrecord_key]))
            if spec["classes"]:
                config["forget-classes"] = spec["classes"]
            if spec["samples"]:
                config["forget-samples"] = spec["samples"]
            content = RecordDict({self.arrayrecord_key: msg.content[self.arrayrecord_key],
                                  self.configrecord_key: config})
            out.append(Message(content, dst_node_id=msg.metadata.dst_node_id,
                               message_type=msg.metadata.message_type))
        return out

    def _collect_requests(self, grid: Grid) -> None:
        """Queue requests from the request source and from nodes that ask for themselves."""
        if self.request_source is not None:
            for spec in self.request_source.poll():
                settle = spec.get("on_settled")
                try:
                    self.request_unlearning(
                        spec["targets"], by=spec.get("by", "partition-id"),
                        requested_by=str(spec.get("requested_by", "operator")),
                        strict=False, on_settled=settle,
                    )
                except (KeyError, TypeError, ValueError) as err:
                    log(WARNING, "NoT: rejected unlearning request %s: %s", spec, err)
                    if settle is not None:
                        settle(None, False, str(err))
        if self.forget_me_key is None:
            return
        node_ids = list(grid.get_node_ids())
        self._query_identities(grid, [n for n in node_ids if n not in self._asked])
        with self._lock:
            pending = {v for r in self._pending if r.rule.by == BY_NODE_ID for v in r.rule.values}
        for n in node_ids:
            identity = self._identities.get(n) or {}
            if (n not in self._excluded and str(n) not in pending
                    and _truthy(identity.get(self.forget_me_key))):
                log(INFO, "NoT: node %d asks to be forgotten (%s=true)", n, self.forget_me_key)
                self.request_unlearning([n], by=BY_NODE_ID, requested_by=f"client:{n}",
                                        strict=False)

    def _resolve(self, rule: TargetRule, node_ids: list[int], names: dict[int, str]) -> dict[int, dict]:
        """Connected nodes a rule names; :class:`UnlearningError` if a value matches none."""
        hits = {}
        for n in node_ids:
            value = rule.match(n, names.get(n), self._identities.get(n))
            if value is not None:
                hits[n] = {"node_id": n, "name": names.get(n, ""), "by": rule.by,
                           "value": value, "identity": self._identities.get(n)}
        missing = [v for v in rule.values if v not in {h["value"] for h in hits.values()}]
        if missing:
            raise UnlearningError(self._no_match_message(rule, missing, node_ids, names))
        return hits

    def _apply(
        self, requests: list[UnlearningRequest], server_round: int, arrays: ArrayRecord, grid: Grid
    ) -> ArrayRecord:
        node_ids = list(grid.get_node_ids())
        names = self._names(grid)
        if any(r.rule.needs_identity for r in requests):
            self._query_identities(grid, node_ids)
        matched: dict[int, dict] = {}
        accepted: list[tuple[UnlearningRequest, dict[int, dict]]] = []
        for request in requests:
            try:
                if request.rule.values == ("*",):
                    hits = {n: {"node_id": n, "name": names.get(n, ""), "by": "*", "value": "*",
                                "identity": self._identities.get(n)}
                            for n in node_ids if n not in self._excluded}
                else:
                    hits = self._resolve(request.rule, node_ids, names)
                remaining = [n for n in node_ids
                             if n not in matched and n not in hits and n not in self._excluded]
                if request.kind == "client" and not remaining:
                    raise UnlearningError(
                        f"unlearning request would exclude every connected node "
                        f"({len(node_ids)} connected, targets {sorted({**matched, **hits})}): "
                        "at least one non-target node is needed to recover"
                    )
            except UnlearningError as err:
                if request.strict:
                    raise
                log(WARNING, "NoT: rejected unlearning request from %s (%s=%s): %s",
                    request.requested_by, request.rule.by, ",".join(request.rule.values), err)
                if request.on_settled is not None:
                    request.on_settled(request, False, str(err))
                continue
            if request.kind == "client":
                matched.update(hits)
            else:
                for key in (["*"] if request.rule.values == ("*",) else hits):
                    entry = self._forget.setdefault(key, {"classes": set(), "samples": set()})
                    entry["classes"].update(request.classes)
                    entry["samples"].update(request.samples)
            accepted.append((request, hits))
        if not accepted:
            return arrays
        t0 = time.perf_counter()
        negated = self.negation.apply(arrays) if self.negation is not None else arrays
        seconds = time.perf_counter() - t0
        self._excluded.update(matched)
        self._rules.extend(r.rule for r, _ in accepted if r.kind == "client")
        self._recovering = True
        self._velocity = None  # server momentum starts afresh at every request
        self._round(server_round).update(phase="recovery", server_seconds=seconds)
        for request, hits in accepted:
            event = UnlearningEvent(
                request=request,
                round=server_round,
                targets=list(hits.values()),
                layers=list(self.negation.layers) if self.negation is not None else [],
                keys=list(self.negation.keys) if self.negation is not None else [],
                negation_seconds=seconds,
            )
            self.events.append(event)
            what = {"client": "", "class": f" classes {list(request.classes)} of",
                    "instance": f" {len(request.samples)} samples of"}[request.kind]
            log(INFO, "NoT: round %d: unlearning%s %s=%s (asked by %s) -> nodes %s; negated %s",
                server_round, what, request.rule.by, ",".join(request.rule.values),
                request.requested_by, [t["node_id"] for t in event.targets],
                event.layers or event.keys or "nothing")
            if request.on_settled is not None:
                request.on_settled(request, True, "")
            if self.on_unlearning is not None:
                self.on_unlearning(event, arrays, negated)
        return negated

    def _no_match_message(
        self, rule: TargetRule, missing: list[str], node_ids: list[int], names: dict[int, str]
    ) -> str:
        if rule.by == BY_NODE_ID:
            known = [str(n) for n in node_ids]
        elif rule.by == BY_NAME:
            known = [names[n] for n in node_ids if names.get(n)]
        else:
            known = [
                str(ident[rule.by])
                for ident in (self._identities.get(n) for n in node_ids)
                if ident and rule.by in ident
            ]
        msg = (
            f"unlearning target {rule.by}={','.join(missing)} matches no connected node; "
            f"connected nodes have {rule.by} in {sorted(set(known)) or '(none)'}"
        )
        unknown = [n for n in node_ids if self._identities.get(n) is None]
        if rule.needs_identity and unknown:
            replied = sum(n in self._replied for n in unknown)
            msg += ". " + identity_hint(replied=replied, silent=len(unknown) - replied)
        return msg

    def _sample(self, grid: Grid, fraction: float, min_nodes: int, what: str) -> list[int]:
        """Sample among non-excluded nodes; wait for enough of them, then fail clearly."""
        deadline = time.monotonic() + self.node_wait_timeout
        while True:
            all_ids = list(grid.get_node_ids())
            self._update_exclusions(grid, all_ids)
            eligible = eligible_nodes(all_ids, self._excluded)
            size = sample_size(len(eligible), fraction, min_nodes)
            if len(eligible) >= max(size, 1):
                break
            if time.monotonic() > deadline:
                raise UnlearningError(
                    f"recovery needs {max(size, 1)} non-target node(s) for {what} but only "
                    f"{len(eligible)} are connected after waiting {self.node_wait_timeout:.0f}s"
                )
            log(INFO, "NoT: waiting for nodes: %d eligible, %d needed for %s",
                len(eligible), max(size, 1), what)
            time.sleep(1.0)
        chosen = random.sample(eligible, size)
        log(INFO, "configure_%s: Sampled %s nodes (out of %s eligible, %s excluded)",
            what, len(chosen), len(eligible), len(self._excluded))
        return chosen
