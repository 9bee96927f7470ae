"""Unlearning for any Flower Message-API strategy: a wrapper, as Flower's DP wrappers are.

``Unlearning(strategy, unlearner)`` is itself a :class:`flwr.serverapp.strategy.Strategy`.
The wrapped strategy keeps its own sampling and aggregation; the wrapper adds what
unlearning needs around it:

* **requests**: :meth:`Unlearning.request_unlearning` (from code, before ``start()`` or
  from another thread), a ``request_source`` polled at every round boundary, and nodes
  that ask for themselves (``forget_me_key``). A request takes effect at the next round
  boundary (the next ``configure_train``);
* **targets**: resolved to connected nodes by node-config value, SuperNode name or node
  id (:mod:`strategies.identity`); a target that matches no connected node, or a
  request that would leave no node to recover with, raises :class:`UnlearningError`
  (strict requests) or is rejected with a log line (requests from outside);
* **the unlearning step**: the unlearner (:mod:`strategies.unlearner`) turns the global
  model into the unlearned model (NoT negates layers); that model is the one sent out;
* **exclusion**: from the request on, the wrapped strategy is handed an
  :class:`~strategies.grid_view.ExcludingGrid` whose node listings leave the targets out,
  so it never samples them; a reply that still arrives from one is dropped before the
  wrapped strategy aggregates. Nodes that connect later are checked against the request
  too, so a restarted target stays excluded;
* **recovery**: ``recovery_strategy`` (for example Flower's ``FedAdam`` or ``FedAvgM``)
  replaces the wrapped strategy from the request on, as a fresh copy at every request;
  without one the wrapped strategy goes on, also as a fresh copy of itself as built (no
  moments, momentum or model copy from before the step; a DP accountant is shared), unless
  ``keep_server_state=True`` (:mod:`strategies.composition`);
* **outcomes**: every request has a :class:`~strategies.outcomes.RequestOutcome`
  (``request.outcome``, :attr:`Unlearning.outcomes`, ``start()``'s result's
  ``unlearning``); ``start()`` takes Flower 1.43's ``should_stop``
  (:mod:`strategies.wrapper_run`);
* **reply checks and costs**: train replies whose tensors do not match the model sent
  (keys, shapes, dtypes, NaN/inf) or whose weight is not a positive number are rejected,
  so are replies whose metric keys differ from the majority's; bytes each way, client
  and server seconds are counted per round in :attr:`Unlearning.rounds`.

Until a request is applied the wrapper passes everything through unchanged (the same
messages, the same aggregate), except for order: the wrapped strategy lists nodes, and
aggregates replies, sorted by node config (``partition-id`` ...) once every node's is
known, else by node id (:func:`strategies.replies.node_order`), not in the order Flower
lists them or the order they finish in. With Python's ``random`` seeded, a simulated run
then samples the same clients and aggregates the same bits every time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from .aggregate_utils import EmptyRoundGuard, failure_reasons, restore_dtypes
from .applying import RequestsMixin
from .composition import check_by, fresh_copy, pristine_copy
from .grid_view import ExcludingGrid, innermost, is_float, nodes_needed
from .identity import TargetRule, make_rule
from .outcomes import RequestOutcome
from .replies import (
    array_layout,
    check_train_reply,
    in_node_order,
    majority_metric_keys,
    messages_nbytes,
    reply_metrics,
    seconds_reported,
)
from .round_log import RoundLog
from .sampling import seeded_sampling
from .targets import TargetBook
from .unlearner import NoStep, Unlearner, UnlearningStep
from .unlearning_request import (
    UnlearningError,
    UnlearningEvent,
    UnlearningRequest,
    request_kind,
)
from .wrapper_run import WrapperRunMixin


# pylint: disable=too-many-instance-attributes,too-many-public-methods
class Unlearning(RequestsMixin, WrapperRunMixin, Strategy):
    """Add federated unlearning to any Message-API strategy.

    Parameters
    ----------
    strategy : Strategy
        The strategy to wrap (FedAvg, FedProx, FedAdam, a DP wrapper ...). It samples and
        aggregates as it always does.
    unlearner : Unlearner or None (default: None)
        The unlearning method (:class:`strategies.unlearner.Negation` for NoT ...);
        ``None``: no step, recovery only (:class:`strategies.unlearner.NoStep`, FT).
    recovery_strategy : Strategy or None (default: None)
        Used instead of ``strategy`` from the first request on; a fresh copy of it
        (``copy.deepcopy``) at every request, so its server state (momentum, moments)
        starts afresh. Give it the same sampling settings as ``strategy``.
    keep_server_state : bool (default: False)
        Without ``recovery_strategy``: ``False`` goes on after each request with a fresh
        copy of ``strategy`` as built (FedAdam's moments, FedAvgM's momentum, their and a
        DP wrapper's copy of the model start afresh; a DP accountant is kept); ``True``
        keeps the same object with its state from before the unlearning step.
    evaluate_negated : bool (default: False)
        ``True``: at a request's round, ``start()``'s ``evaluate_fn`` is called once more,
        with that round and the model the unlearning step produced (before recovery trains
        it); its metrics go to the request's ``outcome.negated_metrics`` only (not to the
        Result's per-round metrics). Off by default: Flower calls ``evaluate_fn`` once per
        round, and an ``evaluate_fn`` that acts by round (saves, logs a step, simulates
        an event) would see that round twice.
    request_source : object or None
        Requests from outside the ServerApp code (for example
        :class:`not_flower.app.requests.RequestFolder`): an object whose ``poll()``
        returns a list of :class:`strategies.unlearning_request.ExternalRequest`
        (``targets``, ``by``, ``requested_by``, ``reason``, ``on_settled``; a dict with
        those keys is read as one), polled at every round boundary. Such requests are not
        strict: one that cannot be applied is rejected (``on_settled`` says why).
    forget_me_key : str or None (default: None)
        Node-config key by which a node asks to be forgotten itself: at every round
        boundary, nodes not seen before are asked for their identity and a node whose
        value is true is unlearnt (by node id, ``requested_by="client:<node id>"``).
    identity_timeout : float (default: 60.0)
        Seconds to wait for ``query.identity`` replies.
    node_wait_timeout : float (default: 600.0)
        After a request, seconds to wait for enough non-target nodes to be connected
        before failing with :class:`UnlearningError` (instead of waiting forever).
    keep_rounds : int or None (default: None)
        How many rounds of bookkeeping (:attr:`rounds`) to keep; ``None`` keeps all.
    recovery_config : dict or None
        Entries added to the train config from the request on (``{"lr": 0.02}``).
    step_timeout : float or None (default: None)
        Seconds to wait for replies to the unlearning step's messages.
    max_empty_rounds : int or None (default: 3)
        A round that aggregates no train reply (every reply failed or was rejected) is
        logged as an error; this many such rounds in a row stop the run with
        :class:`strategies.aggregate_utils.EmptyRoundsError`. ``None`` or 0: never stop.
    on_unlearning : Callable or None
        ``f(event, arrays_before, arrays_after)`` called right after each applied request
        (``arrays_after``: the unlearned model, sharing every untouched Array).
    sampling_seed : int or None (default: None)
        Seed of node sampling: Flower's ``sample_nodes`` draws from a generator seeded by
        this seed, the round and the phase (:func:`strategies.sampling.seeded_sampling`), so
        the same nodes are sampled in every run. ``None``: Python's process-wide ``random``,
        which Flower's background threads also draw from at times that vary from run to run.
    """

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        strategy: Strategy,
        unlearner: Unlearner | None = None,
        *,
        recovery_strategy: Strategy | None = None,
        request_source=None,
        forget_me_key: str | None = None,
        identity_timeout: float = 60.0,
        node_wait_timeout: float = 600.0,
        keep_rounds: int | None = None,
        recovery_config: dict | None = None,
        step_timeout: float | None = None,
        max_empty_rounds: int | None = 3,
        on_unlearning: Callable[[UnlearningEvent, ArrayRecord, ArrayRecord], None] | None = None,
        keep_server_state: bool = False,
        evaluate_negated: bool = False,
        sampling_seed: int | None = None,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(
                f"Unlearning(strategy=...) needs a flwr Strategy, got {type(strategy).__name__}"
            )
        if recovery_strategy is not None and not isinstance(recovery_strategy, Strategy):
            raise TypeError(
                f"recovery_strategy must be a flwr Strategy or None, got "
                f"{type(recovery_strategy).__name__}"
            )
        self.strategy = strategy
        self.unlearner: Unlearner = unlearner if unlearner is not None else NoStep()
        self.keep_server_state = bool(keep_server_state)
        self.evaluate_negated = bool(evaluate_negated)
        self.sampling_seed = None if sampling_seed is None else int(sampling_seed)
        self._evaluate_fn = None  # start()'s evaluate_fn, for the negated model
        self._pristine = None if keep_server_state else pristine_copy(strategy)
        #: Every request's outcome, in the order they were made.
        self.outcomes: list[RequestOutcome] = []
        self._in_flight: list[UnlearningEvent] = []  # applied, their round not done yet
        self._nesting_checked, self._warned = False, set()
        self.recovery_strategy = recovery_strategy
        self.request_source = request_source
        self.forget_me_key = forget_me_key
        self.identity_timeout = identity_timeout
        self.node_wait_timeout = node_wait_timeout
        self.keep_rounds = keep_rounds
        self.recovery_config = dict(recovery_config or {})
        self.step_timeout = step_timeout
        self.on_unlearning = on_unlearning
        base = innermost(strategy)
        self.weighted_by_key = getattr(base, "weighted_by_key", "num-examples")
        self.arrayrecord_key = getattr(base, "arrayrecord_key", "arrays")
        self.configrecord_key = getattr(base, "configrecord_key", "config")
        #: Per round (:class:`strategies.round_log.RoundLog`): phase, sampled and replying
        #: nodes, per-node metrics, rejected replies, bytes, seconds.
        self.rounds: dict[int, RoundLog] = {}
        #: One event per applied request.
        self.events: list[UnlearningEvent] = []
        #: One record per applied request of a method whose step is recorded.
        self.steps: list[dict] = []
        self._recovery: Strategy | None = None  # the fresh recovery strategy in use
        self._lock = threading.Lock()
        self._pending: list[UnlearningRequest] = []
        #: Identities, target rules, exclusions and forget specs.
        self.book = TargetBook(identity_timeout, self.tag)
        self._recovering = False
        self._sent: ArrayRecord | None = None
        self._layout: dict | None = None  # of the model sent; replies: _reply_layout
        self._reply_layout: dict | None = None
        self._integer_layout: dict = {}  # the integer and boolean entries of _layout
        self._fallback_arrays: ArrayRecord | None = None
        self._peak = 0
        self._empty_rounds = EmptyRoundGuard(max_empty_rounds)

    # ------------------------------------------------------------ public API
    # pylint: disable=too-many-arguments
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
        reason: str = "",
    ) -> UnlearningRequest:
        """Queue a request to forget clients, or classes or samples of clients.

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
            Instance-wise forgetting: forget these samples of the one target.
        at_round : int or None (default: None)
            Apply at the boundary before this round; ``None`` = the next boundary.
        requested_by : str (default: "operator")
            Who asked; kept in the event and the results.
        strict : bool (default: True)
            See :class:`UnlearningRequest`.
        on_settled : Callable or None
            Called with ``(request, accepted, reason)`` once applied or rejected.
        reason : str (default: "")
            Why it was asked ("GDPR art. 17"); kept in the request and its event.

        Returns
        -------
        UnlearningRequest
            The queued request; ``.status`` and ``.outcome`` say what became of it.

        Raises
        ------
        ValueError
            For a malformed request, or a kind of forgetting the method cannot do.
        """
        if at_round is not None and (not isinstance(at_round, int) or at_round < 1):
            raise ValueError(f"at_round must be an integer >= 1 or None, got {at_round!r}")
        check_by(by, self.book.identities)  # a near miss (node_id) fails here, not later
        kind, classes, samples = request_kind(targets, classes, samples)
        if kind not in self.unlearner.kinds:
            raise ValueError(
                f"{self.unlearner.name} forgets whole clients only; class-wise "
                "and instance-wise requests are NoT's (strategies.NoT)"
            )
        request = UnlearningRequest(
            rule=make_rule(targets, by),
            at_round=at_round,
            requested_by=requested_by,
            strict=strict,
            on_settled=on_settled,
            kind=kind,
            classes=classes,
            samples=samples,
            reason=str(reason or ""),
        )
        with self._lock:
            self._pending.append(request)
            self.outcomes.append(request.outcome)
        log(
            INFO,
            "%s: unlearning request queued: %s=%s (%s)",
            self.tag,
            request.rule.by,
            ",".join(request.rule.values),
            f"at round {at_round}" if at_round else "at the next round boundary",
        )
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
        self.book.query_identities(grid, ids)
        return {n: self.book.identities.get(n) for n in ids}

    @property
    def identities(self) -> dict[int, dict | None]:
        """Node configs learnt so far (from ``query.identity`` or ``identity_mod``)."""
        return dict(self.book.identities)

    def exclude(self, targets: Iterable | str | int, *, by: str = "partition-id") -> TargetRule:
        """Exclude clients from now on WITHOUT an unlearning step (a request applied before
        a restart: the model the run resumes from is already unlearnt)."""
        rule = make_rule(targets, by)
        self.book.rules.append(rule)
        self._start_recovery()
        return rule

    @property
    def forget_specs(self) -> dict[str, dict[str, list[int]]]:
        """Class-/instance-wise forgetting in force: node id (or ``"*"``) -> classes, samples."""
        return {
            str(k): {"classes": sorted(v["classes"]), "samples": sorted(v["samples"])}
            for k, v in self.book.forget.items()
        }

    def restore_forget_specs(self, specs: dict) -> None:
        """Put back :attr:`forget_specs` saved before a restart (no unlearning step)."""
        for key, spec in specs.items():
            node = key if key == "*" else int(key)
            entry = self.book.forget.setdefault(node, {"classes": set(), "samples": set()})
            entry["classes"].update(spec.get("classes", []))
            entry["samples"].update(spec.get("samples", []))
        if specs:
            self._start_recovery()

    def forget_spec_for(self, node_id: int) -> dict[str, list[int]]:
        """Classes and sample ids node ``node_id`` must not train on (may be empty)."""
        return self.book.forget_spec_for(node_id)

    @property
    def applied_rules(self) -> list[TargetRule]:
        """Target rules of the requests applied so far (and of :meth:`exclude`)."""
        return list(self.book.rules)

    @property
    def pending_requests(self) -> list[UnlearningRequest]:
        """Requests queued and not applied yet."""
        with self._lock:
            return list(self._pending)

    @property
    def excluded_node_ids(self) -> frozenset[int]:
        """Node ids that are never sampled again."""
        return frozenset(self.book.excluded)

    @property
    def in_recovery(self) -> bool:
        """Whether at least one request has been applied."""
        return bool(self.events or self._in_flight)

    @property
    def active_strategy(self) -> Strategy:
        """The strategy that samples and aggregates now (the recovery one after a request)."""
        return self._recovery if self._recovery is not None else self.strategy

    @property
    def storage_bytes(self) -> int:
        """Bytes of history the unlearner keeps now (measured)."""
        return int(self.unlearner.storage_bytes)

    @property
    def storage_peak_bytes(self) -> int:
        """Most bytes the unlearner kept at any time so far."""
        self._peak = max(self._peak, self.storage_bytes)
        return self._peak

    # ------------------------------------------------------------ the Strategy interface
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Apply due requests (unlearning step, exclusion), then let the strategy sample."""
        self._check_composition()  # a strategy around us that would undo the step: refused
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
        messages = self._configure("train", server_round, arrays, config, grid)
        self._check_composition(messages)
        if (layout := array_layout(arrays)) != self._layout:  # aggregates keep its integers
            self._integer_layout = {k: v for k, v in layout.items() if not is_float(v[1])}
        self._layout = layout
        self._reply_layout = getattr(self.active_strategy, "reply_layout", dict)(self._layout)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop replies from excluded nodes and bad replies, then let the strategy aggregate.

        Integer and boolean tensors come back in the dtype they were sent in (the weighted
        mean rounded, :func:`strategies.aggregate_utils.restore_dtypes`; Flower's
        aggregate returns them as float64); a round with no reply to aggregate is logged
        as an error and counted against ``max_empty_rounds``.
        """
        kept = self._filter(server_round, replies, "train")
        if self._sent is not None:
            self.unlearner.observe_train(
                server_round,
                self._sent,
                [m for m in kept if not m.has_error()],
                self.weighted_by_key,
            )
            self._peak = max(self._peak, self.storage_bytes)
        t0 = time.perf_counter()
        arrays, metrics = self.active_strategy.aggregate_train(server_round, kept)
        info = self._round(server_round)
        if arrays is not None and self._layout is not None:  # integer buffers stay integer
            arrays = restore_dtypes(arrays, self._integer_layout)
        aggregated = 0 if arrays is None else sum(not m.has_error() for m in kept)
        self._empty_rounds.update(
            server_round, aggregated, failure_reasons(kept, info.rejected_train)
        )
        info.server_seconds += time.perf_counter() - t0
        if arrays is None and self._fallback_arrays is not None:
            # No usable reply in the first round after a request: the unlearned model stays
            # the global model (the model from before the request must not come back).
            log(
                WARNING,
                "%s: no train reply aggregated in round %d; keeping the unlearned "
                "model as the global model",
                self.tag,
                server_round,
            )
            arrays = self._fallback_arrays
        self._fallback_arrays = None
        self._confirm(server_round)  # requests applied at this round's start took effect
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Let the strategy sample evaluation nodes (never excluded ones)."""
        return self._configure("evaluate", server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Drop replies from excluded nodes, then let the strategy aggregate."""
        return self.active_strategy.aggregate_evaluate(
            server_round, self._filter(server_round, replies, "evaluate")
        )

    # ------------------------------------------------------------ sampling and exclusion
    def _configure(
        self, what: str, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """Let the active strategy sample for ``what`` (never excluded nodes); count it."""
        configure = getattr(self.active_strategy, f"configure_{what}")
        view = self._view(grid, what)
        with seeded_sampling(self.sampling_seed, server_round, what):
            messages = list(configure(server_round, arrays, config, view))
        messages = self._with_forget_specs(messages)
        info = self._round(server_round)
        info.set_sampled(what, [m.metadata.dst_node_id for m in messages])
        info.bytes_down += messages_nbytes(messages)
        return messages

    def _view(self, grid: Grid, what: str) -> Grid:
        """The grid the strategy samples from: nodes in node order
        (:func:`strategies.replies.node_order`); from a request on, without the excluded
        nodes, once enough of those are connected."""
        if not self.book.rules:
            return ExcludingGrid(grid, lambda _: False, identities=self.book.identities)
        view = ExcludingGrid(grid, self.book.excluded.__contains__, identities=self.book.identities)
        deadline = time.monotonic() + self.node_wait_timeout
        while True:
            self.book.update_exclusions(grid, list(grid.get_node_ids()))
            eligible = len(list(view.get_node_ids()))
            needed = nodes_needed(self.active_strategy, eligible, what)
            if eligible >= needed:
                return view
            if time.monotonic() > deadline:
                raise UnlearningError(
                    f"recovery needs {needed} non-target node(s) for {what} but only "
                    f"{eligible} are connected after waiting {self.node_wait_timeout:.0f}s"
                )
            log(
                INFO,
                "%s: waiting for nodes: %d eligible, %d needed for %s",
                self.tag,
                eligible,
                needed,
                what,
            )
            time.sleep(1.0)

    def _start_recovery(self) -> None:
        """From now on: recovery (a fresh recovery strategy, if one is set)."""
        self._recovering = True
        template = self.recovery_strategy or self._pristine
        if template is not None:
            self._recovery = fresh_copy(template, self.active_strategy)

    def _round(self, server_round: int) -> RoundLog:
        if server_round not in self.rounds and self.keep_rounds is not None:
            for old in [r for r in self.rounds if r <= server_round - self.keep_rounds]:
                del self.rounds[old]
        if server_round not in self.rounds:
            self.rounds[server_round] = RoundLog(phase="recovery" if self._recovering else "train")
        return self.rounds[server_round]

    def _filter(self, server_round: int, replies: Iterable[Message], what: str) -> list[Message]:
        """Replies the strategy may aggregate: not from excluded nodes, valid (train), and
        with the majority's metric keys, in node order (whatever order they arrived in);
        counts bytes up and client seconds."""
        kept = []
        metrics: dict[int, dict] = {}  # id(msg) -> reply_metrics (built once per reply)
        replies = list(replies)
        for msg in replies:  # identities the replies carry first: they set the order
            if not msg.has_error():
                self.book.note_reply(msg.metadata.src_node_id, msg.content)
        for msg in in_node_order(replies, self.book.identities):
            node_id = msg.metadata.src_node_id
            if node_id in self.book.excluded:
                log(
                    WARNING,
                    "%s: dropped a %s reply from excluded node %d (round %d)",
                    self.tag,
                    what,
                    node_id,
                    server_round,
                )
                continue
            if not msg.has_error():
                metrics[id(msg)] = reply_metrics(msg.content)
                if what == "train" and self._reply_layout is not None:
                    reason = check_train_reply(
                        msg.content, self._reply_layout, self.weighted_by_key, metrics[id(msg)]
                    )
                    if reason is not None:
                        self._reject(server_round, what, node_id, reason)
                        continue
            kept.append(msg)
        kept = self._drop_inconsistent_metrics(server_round, kept, what, metrics)
        info = self._round(server_round)
        ok = [m for m in kept if not m.has_error()]
        info.set_replies(
            what,
            [m.metadata.src_node_id for m in ok],
            {m.metadata.src_node_id: metrics[id(m)] for m in ok},
        )
        info.bytes_up += messages_nbytes(ok)
        info.client_seconds += sum(seconds_reported(metrics[id(m)]) for m in ok)
        return kept

    def _reject(self, server_round: int, what: str, node_id: int, reason: str) -> None:
        log(
            WARNING,
            "%s: rejected the %s reply of node %d (round %d): %s",
            self.tag,
            what,
            node_id,
            server_round,
            reason,
        )
        self._round(server_round).rejected(what)[node_id] = reason

    def _drop_inconsistent_metrics(
        self, server_round: int, replies: list[Message], what: str, metrics: dict[int, dict]
    ) -> list[Message]:
        """Drop replies whose metric keys differ from the most common set (FedAvg refuses
        a round whose replies differ; one odd client must not stop it for everyone)."""
        keysets = {
            m.metadata.src_node_id: frozenset(metrics[id(m)]) for m in replies if not m.has_error()
        }
        if len(set(keysets.values())) <= 1:
            return replies
        majority = majority_metric_keys(keysets.values(), self.weighted_by_key)
        out = []
        for m in replies:
            node_id = m.metadata.src_node_id
            if not m.has_error() and keysets[node_id] != majority:
                self._reject(
                    server_round,
                    what,
                    node_id,
                    f"metric keys {sorted(keysets[node_id])} differ from the other "
                    f"replies' {sorted(majority)}",
                )
                continue
            out.append(m)
        return out

    def _with_forget_specs(self, messages: list[Message]) -> list[Message]:
        return self.book.with_forget_specs(messages, self.arrayrecord_key, self.configrecord_key)

    # ------------------------------------------------------------ the unlearning step
    def _run_step(
        self, server_round: int, arrays: ArrayRecord, targets: list[int], grid: Grid
    ) -> tuple[ArrayRecord, float]:
        """Run the unlearner's step and count it in the round; returns the unlearned model
        and the server's seconds (the step's wall time less the time waiting for clients)."""
        step = UnlearningStep(
            server_round=server_round,
            arrays=arrays,
            targets=targets,
            excluded=frozenset(self.book.excluded),
            grid=ExcludingGrid(grid, lambda _: False, identities=self.book.identities),
            weighted_by_key=self.weighted_by_key,
            arrayrecord_key=self.arrayrecord_key,
            configrecord_key=self.configrecord_key,
            timeout=self.step_timeout,
            record={"method": self.unlearner.name, "round": server_round, "targets": list(targets)},
        )
        t0 = time.perf_counter()
        unlearned = self.unlearner.unlearn(step)
        seconds = max(0.0, time.perf_counter() - t0 - step.client_wait_seconds)
        info = self._round(server_round)
        info.phase = "recovery"
        info.server_seconds += seconds
        if self.unlearner.records_step:
            record = step.record
            record["server_seconds"] = seconds
            info.bytes_down += record["bytes_down"]
            info.bytes_up += record["bytes_up"]
            info.client_seconds += record["client_seconds"]
            info.extra_rounds += record["rounds"]
            info.unlearning_replied.extend(step.replied)
            info.unlearning_step = record
            self.steps.append(record)
        self._peak = max(self._peak, self.storage_bytes)
        return unlearned, seconds


__all__ = [
    "Unlearning",
    "UnlearningError",
    "UnlearningEvent",
    "UnlearningRequest",
    "innermost",
    "nodes_needed",
]
