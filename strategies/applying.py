"""Requests in the Unlearning wrapper: collected at each round boundary, applied, confirmed.

A mixin of :class:`strategies.unlearning.Unlearning` (its methods use the wrapper's
attributes). A request applied at a boundary is *in flight* until that round's aggregate
is in: only then is its :class:`~strategies.unlearning_request.UnlearningEvent` added to
``events`` and its outcome set to ``"applied"``; a round that fails before marks it
``"failed"`` with the error (:mod:`strategies.outcomes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from logging import INFO, WARNING

from flwr.app import ArrayRecord
from flwr.serverapp import Grid
from flwr.supercore import log

from .identity import BY_NODE_ID
from .outcomes import fail_in_flight
from .unlearning_request import (
    UnlearningError,
    UnlearningEvent,
    UnlearningRequest,
    external_request,
    truthy,
)


class RequestsMixin:
    """Collecting, applying and confirming unlearning requests (see module docstring)."""

    def _collect_requests(self, grid: Grid) -> None:
        """Queue requests from the request source and from nodes that ask for themselves."""
        if self.request_source is not None:
            for item in self.request_source.poll():
                settle = getattr(item, "on_settled", None)
                if isinstance(item, Mapping):
                    settle = item.get("on_settled")
                try:
                    spec = external_request(item)
                    self.request_unlearning(
                        list(spec.targets),
                        by=spec.by,
                        requested_by=spec.requested_by,
                        strict=False,
                        on_settled=settle,
                        reason=spec.reason,
                    )
                except (KeyError, TypeError, ValueError) as err:
                    log(WARNING, "%s: rejected unlearning request %s: %s", self.tag, item, err)
                    if settle is not None:
                        settle(None, False, str(err))
        if self.forget_me_key is None:
            return
        node_ids = list(grid.get_node_ids())
        self.book.query_identities(grid, [n for n in node_ids if n not in self.book.asked])
        with self._lock:
            pending = {v for r in self._pending if r.rule.by == BY_NODE_ID for v in r.rule.values}
        for n in node_ids:
            identity = self.book.identities.get(n) or {}
            if (
                n not in self.book.excluded
                and str(n) not in pending
                and truthy(identity.get(self.forget_me_key))
            ):
                log(
                    INFO,
                    "%s: node %d asks to be forgotten (%s=true)",
                    self.tag,
                    n,
                    self.forget_me_key,
                )
                self.request_unlearning(
                    [n], by=BY_NODE_ID, requested_by=f"client:{n}", strict=False
                )

    def _apply(
        self, requests: list[UnlearningRequest], server_round: int, arrays: ArrayRecord, grid: Grid
    ) -> ArrayRecord:
        """Apply the due requests at this boundary; return the model to send."""
        try:
            matched, accepted = self.book.accept(requests, grid)
        except UnlearningError as err:
            fail_in_flight([r.outcome for r in requests if r.status == "pending"], err)
            for request in requests:
                request.outcome.round = server_round
            raise
        if not accepted:
            return arrays
        self.book.excluded.update(matched)
        self.book.rules.extend(r.rule for r, _ in accepted if r.kind == "client")
        self._start_recovery()
        targets = list(dict.fromkeys(n for _, hits in accepted for n in hits))
        unlearned, seconds = self._run_step(server_round, arrays, targets, grid)
        negated_metrics = self._evaluate_step(server_round, arrays, unlearned)
        for request, hits in accepted:
            event = UnlearningEvent(
                request=request,
                round=server_round,
                targets=list(hits.values()),
                layers=list(self.unlearner.layers),
                keys=list(self.unlearner.keys),
                negation_seconds=0.0 if self.unlearner.records_step else seconds,
            )
            request.outcome.round = server_round
            request.outcome.node_ids = sorted(hits)
            request.outcome.negated = list(event.layers or event.keys)
            request.outcome.negated_metrics = negated_metrics
            self._in_flight.append(event)
            what = {
                "client": "",
                "class": f" classes {list(request.classes)} of",
                "instance": f" {len(request.samples)} samples of",
            }[request.kind]
            log(
                INFO,
                "%s: round %d: unlearning%s %s=%s (asked by %s) -> nodes %s; negated %s",
                self.tag,
                server_round,
                what,
                request.rule.by,
                ",".join(request.rule.values),
                request.requested_by,
                [t["node_id"] for t in event.targets],
                event.layers or event.keys or "nothing",
            )
            if request.on_settled is not None:
                request.on_settled(request, True, "")
            if self.on_unlearning is not None:
                self.on_unlearning(event, arrays, unlearned)
        return unlearned

    def _evaluate_step(
        self, server_round: int, before: ArrayRecord, after: ArrayRecord
    ) -> dict | None:
        """``start()``'s ``evaluate_fn`` on the model the step produced (if it changed it)."""
        if self._evaluate_fn is None or after is before:
            return None
        metrics = self._evaluate_fn(server_round, after)
        if metrics is None:
            return None
        log(
            INFO,
            "%s: round %d: the unlearned model before recovery: %s",
            self.tag,
            server_round,
            dict(metrics),
        )
        return dict(metrics)

    def _confirm(self, server_round: int) -> None:
        """The round of the requests in flight completed: they are applied."""
        for event in self._in_flight:
            self.events.append(event)
            event.request.outcome.settle("applied", server_round=server_round)
        self._in_flight = []

    def _fail_in_flight(self, err: BaseException) -> None:
        """The round of the requests in flight failed with ``err``."""
        fail_in_flight([e.request.outcome for e in self._in_flight], err)
        self._in_flight = []


__all__ = ["RequestsMixin"]
