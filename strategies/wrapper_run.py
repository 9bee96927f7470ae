"""The Unlearning wrapper's ``start()``, its name in logs, ``repr`` and summary.

A mixin of :class:`strategies.unlearning.Unlearning`. ``start()`` is Flower's
``Strategy.start()`` with, around it:

* before round 1, the queued requests are checked as far as the connected nodes allow
  (``by`` against the node-config keys they report, targets against the nodes), so a
  misspelt key or an unknown node fails before any training;
* ``should_stop(server_round, result) -> bool`` (Flower 1.43's argument, accepted on 1.42
  too): checked at the end of every round, ``True`` ends the run there;
* it returns an :class:`~strategies.outcomes.UnlearningResult` (Flower's ``Result`` plus
  ``unlearning``, each request's outcome), warns about requests still pending at the end,
  and marks requests whose round failed as ``"failed"``.
"""

from __future__ import annotations

import inspect
import io
import time
from collections.abc import Callable
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.supercore import log

from .composition import (
    check_by,
    describe,
    dp_sample_warning,
    expected_nodes,
    refuse_outer_model_keepers,
)
from .grid_view import innermost
from .outcomes import UnlearningResult, warn_pending
from .target_check import check_targets
from .unlearner import NoStep
from .unlearning_request import UnlearningError

#: Whether the installed Flower's ``Strategy.start`` takes ``should_stop`` (1.43 on).
FLOWER_SHOULD_STOP = "should_stop" in inspect.signature(Strategy.start).parameters


class WrapperRunMixin:
    """``start()``, ``tag``, ``repr`` and ``summary`` of the Unlearning wrapper."""

    # pylint: disable=too-many-arguments
    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
        should_stop: Callable[[int, Result], bool] | None = None,
    ) -> UnlearningResult:
        """Run the wrapped strategy's rounds with unlearning; see Flower's ``Strategy.start``.

        Parameters
        ----------
        grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, evaluate_fn
            As Flower's ``Strategy.start``.
        should_stop : Callable[[int, Result], bool] or None (default: None)
            Flower 1.43's early stop: called at the end of every round with the round and
            the results so far; ``True`` ends the run after that round.

        Returns
        -------
        UnlearningResult
            Flower's ``Result`` plus ``unlearning``: each request's outcome.

        Raises
        ------
        TypeError
            If ``should_stop`` is not callable.
        UnlearningError, ValueError
            If a strict request can already be seen to fail (before round 1).
        """
        if should_stop is not None and not callable(should_stop):
            raise TypeError(
                f"should_stop must be a callable (server_round, result) -> bool "
                f"or None, got {type(should_stop).__name__}"
            )
        self.check_requests(grid)
        self._evaluate_fn = evaluate_fn if self.evaluate_negated else None
        kwargs = dict(
            num_rounds=num_rounds,
            timeout=timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=evaluate_fn,
        )
        try:
            if should_stop is None:
                result = super().start(grid, initial_arrays, **kwargs)
            elif FLOWER_SHOULD_STOP:
                result = super().start(grid, initial_arrays, should_stop=should_stop, **kwargs)
            else:
                result = run_rounds(self, grid, initial_arrays, should_stop=should_stop, **kwargs)
        except BaseException as err:
            self._fail_in_flight(err)
            raise
        warn_pending(
            [r.outcome for r in self.pending_requests], max(self.rounds, default=0), self.tag
        )
        return UnlearningResult.of(result, self.outcomes)

    def check_requests(self, grid: Grid) -> None:
        """Check the queued requests against the connected nodes, as far as they allow.

        ``by`` is checked once every connected node's config is known; targets with
        :func:`strategies.target_check.check_targets` once every node expected is
        connected (``num-partitions`` if the nodes report it, else the strategy's
        ``min_available_nodes``; while fewer are, a target may still connect). A strict
        request that fails raises; a non-strict one is logged and checked at its round.

        Parameters
        ----------
        grid : Grid
            The grid of the run.
        """
        pending = self.pending_requests
        node_ids = list(grid.get_node_ids())
        if not pending or not node_ids:
            return
        if any(r.rule.needs_identity for r in pending):
            self.book.query_identities(grid, node_ids)
        idents = {n: self.book.identities.get(n) for n in node_ids}
        names = self.book.names(grid)
        known = all(v is not None for v in idents.values())
        expected = expected_nodes(
            idents, getattr(innermost(self.strategy), "min_available_nodes", 1)
        )
        for request in pending:
            try:
                if known:  # a near miss (by="partition_id") fails here
                    check_by(request.rule.by, idents)
                for text in check_targets(
                    [request], node_ids, names, idents, expected_nodes=expected
                ):
                    log(INFO, "%s: %s", self.tag, text)
                if (
                    len(node_ids) >= expected
                    and request.kind == "client"
                    and (known or not request.rule.needs_identity)
                ):
                    hits = self.book.resolve(request.rule, node_ids, names)
                    if set(node_ids) <= set(hits):
                        raise UnlearningError(
                            f"unlearning request {request.rule.by}="
                            f"{','.join(request.rule.values)} would exclude every connected "
                            f"node ({len(node_ids)} connected, targets {sorted(hits)}): at "
                            "least one non-target node is needed to recover"
                        )
            except (UnlearningError, ValueError) as err:
                if request.strict:
                    request.outcome.settle("failed", reason=str(err))
                    with self._lock:
                        self._pending.remove(request)
                    raise
                log(
                    INFO,
                    "%s: request %s may fail at its round: %s",
                    self.tag,
                    request.outcome.describe(),
                    err,
                )

    def _check_composition(self, messages: list | None = None) -> None:
        """Before the first round: refuse a strategy around the wrapper that keeps its own
        model copy; in recovery: warn once about a DP wrapper's ``num_sampled_clients``."""
        if messages is None:
            if not self._nesting_checked:
                refuse_outer_model_keepers(self)
                self._nesting_checked = True
            return
        warning = dp_sample_warning(self.active_strategy, len(messages), len(self.book.excluded))
        if self._recovering and warning and warning not in self._warned:
            self._warned.add(warning)
            log(WARNING, "%s: %s", self.tag, warning)

    @property
    def tag(self) -> str:
        """Prefix of the wrapper's log lines: ``Unlearning(FedAdam, NoT)``."""
        step = "" if isinstance(self.unlearner, NoStep) else f", {self.unlearner.name}"
        return f"{type(self).__name__}({describe(self.strategy)}{step})"

    def __repr__(self) -> str:
        step = (
            "None (no unlearning step, recovery only)"
            if isinstance(self.unlearner, NoStep)
            else f"{self.unlearner.name} (changes "
            f"{list(self.unlearner.layers) or list(self.unlearner.keys)})"
        )
        recovery = describe(self.recovery_strategy) if self.recovery_strategy else None
        counts = {s: sum(o.status == s for o in self.outcomes) for s in ("pending", "applied")}
        return (
            f"{type(self).__name__}(strategy={describe(self.strategy)}, unlearner={step}, "
            f"recovery_strategy={recovery}, keep_server_state={self.keep_server_state}; "
            f"requests: {counts['pending']} pending, {counts['applied']} applied; "
            f"excluded nodes: {sorted(self.book.excluded)})"
        )

    def summary(self) -> None:
        """Log the wrapper's settings, then the wrapped strategy's."""
        step = (
            "no unlearning step (recovery only)"
            if isinstance(self.unlearner, NoStep)
            else f"{self.unlearner.name} (changes "
            f"{list(self.unlearner.layers) or list(self.unlearner.keys) or 'nothing'})"
        )
        log(
            INFO,
            "\t├──> Unlearning: %s; recovery with %s (%s)",
            step,
            describe(self.recovery_strategy or self.strategy),
            "its state kept"
            if self.keep_server_state and not self.recovery_strategy
            else "a fresh server state at every request",
        )
        self.strategy.summary()


# pylint: disable=too-many-arguments,too-many-locals
def run_rounds(
    strategy: Strategy,
    grid: Grid,
    initial_arrays: ArrayRecord,
    *,
    num_rounds: int,
    timeout: float,
    train_config: ConfigRecord | None,
    evaluate_config: ConfigRecord | None,
    evaluate_fn,
    should_stop,
) -> Result:
    """Flower 1.43's ``Strategy.start`` loop with ``should_stop``, for Flower 1.42.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose rounds to run.
    grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, evaluate_fn
        As Flower's ``Strategy.start``.
    should_stop : Callable[[int, Result], bool]
        Checked at the end of every round.

    Returns
    -------
    Result
        The records of the rounds run.
    """
    log(INFO, "Starting %s strategy:", strategy.__class__.__name__)
    strategy.summary()
    train_config = ConfigRecord() if train_config is None else train_config
    evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
    result, arrays, t_start = Result(arrays=initial_arrays), initial_arrays, time.time()
    if evaluate_fn and (res := evaluate_fn(0, initial_arrays)) is not None:
        result.evaluate_metrics_serverapp[0] = res
    for current in range(1, num_rounds + 1):
        log(INFO, "")
        log(INFO, "[ROUND %s/%s]", current, num_rounds)
        replies = grid.send_and_receive(
            messages=strategy.configure_train(current, arrays, train_config, grid), timeout=timeout
        )
        agg_arrays, agg_metrics = strategy.aggregate_train(current, replies)
        if agg_arrays is not None:
            result.arrays = arrays = agg_arrays
        if agg_metrics is not None:
            result.train_metrics_clientapp[current] = agg_metrics
        replies = grid.send_and_receive(
            messages=strategy.configure_evaluate(current, arrays, evaluate_config, grid),
            timeout=timeout,
        )
        if (agg_eval := strategy.aggregate_evaluate(current, replies)) is not None:
            result.evaluate_metrics_clientapp[current] = agg_eval
        if evaluate_fn and (res := evaluate_fn(current, arrays)) is not None:
            result.evaluate_metrics_serverapp[current] = res
        if should_stop(current, result):
            log(INFO, "Stopping early after round %s", current)
            break
    log(INFO, "Strategy execution finished in %.2fs", time.time() - t_start)
    for line in io.StringIO(str(result)):
        log(INFO, "\t%s", line.strip("\n"))
    return result


__all__ = ["FLOWER_SHOULD_STOP", "WrapperRunMixin", "run_rounds"]
