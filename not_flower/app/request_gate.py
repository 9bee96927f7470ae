"""The app's gate in front of requests from outside: nothing is forgotten twice.

:class:`RequestGate` wraps a request source (:class:`not_flower.app.requests.RequestFolder`)
and checks every request it yields against the run's state
(:class:`not_flower.app.run_state.RunState`) before the strategy queues it:

* a target that an applied request already forgot is dropped from the request (a request
  left with no target is rejected, its file moved to ``rejected/`` with the reason);
* a target already asked for by a request queued for this boundary (an earlier file of
  the same poll, or a request still pending) is dropped the same way, so two files for the
  same client give one unlearning step and one record;
* an applied request's file is moved to ``accepted/`` only once the round after it is
  durable (:meth:`RequestGate.durable`): a run stopped before that leaves the file in the
  folder, and the resumed run applies it again to the same model.

Scheduled requests (run config), requests restored on resume and clients asking for
themselves (``forget-me``) go through the run's state too: the run config's are queued
once (never again on resume), restored ones come from ``state.json``'s ``pending``, and
the strategy never asks an excluded node again.
"""

from __future__ import annotations

from dataclasses import replace
from logging import WARNING

from flwr.supercore import log

from not_flower.app.run_state import RunState
from strategies.unlearning_request import ExternalRequest, external_request


class RequestGate:  # pylint: disable=too-few-public-methods
    """A request source whose requests never name an already forgotten client.

    Parameters
    ----------
    source : object
        The wrapped source (``poll()`` returning :class:`ExternalRequest` objects, or
        dicts with the same keys).
    state : RunState
        The run's state (its applied requests).
    strategy : object
        The strategy (``pending_requests``).
    """

    def __init__(self, source, state: RunState, strategy) -> None:
        self.source = source
        self.state = state
        self.strategy = strategy
        self._deferred: list = []

    def durable(self) -> None:
        """The run's state is on disk: settle the requests applied since (move their files)."""
        deferred, self._deferred = self._deferred, []
        for settle in deferred:
            settle()

    def _settle_when_durable(self, spec: ExternalRequest) -> ExternalRequest:
        """``spec`` whose acceptance is settled by :meth:`durable`, rejection at once."""
        inner = spec.on_settled
        if inner is None:
            return spec

        def settle(request, accepted: bool, reason: str) -> None:
            if accepted:
                self._deferred.append(lambda: inner(request, accepted, reason))
            else:
                inner(request, accepted, reason)

        return replace(spec, on_settled=settle)

    def poll(self) -> list[ExternalRequest]:
        """The wrapped source's requests, less what is forgotten or requested already.

        Returns
        -------
        list[ExternalRequest]
            Requests with at least one new target.
        """
        queued = {
            (r.rule.by, v)
            for r in self.strategy.pending_requests
            if r.kind == "client"
            for v in r.rule.values
        }
        out = []
        for spec in map(external_request, self.source.poll()):
            by = spec.by
            kept, dropped = [], []
            for value in spec.targets:
                why = self._dropped(by, str(value), queued)
                (dropped if why else kept).append((str(value), why))
            for value, why in dropped:
                log(
                    WARNING,
                    "request from %s: %s=%s %s; not applied again",
                    spec.requested_by,
                    by,
                    value,
                    why,
                )
            if not kept:
                settle = spec.on_settled
                if settle is not None and self._applied_before(spec):
                    settle(None, True, "")  # applied; stopped before its file was moved
                    continue
                reason = "; ".join(f"{by}={v} {why}" for v, why in dropped)
                if settle is not None:
                    settle(None, False, reason + "; nothing to do")
                continue
            spec = self._settle_when_durable(replace(spec, targets=tuple(v for v, _ in kept)))
            queued.update((by, v) for v, _ in kept)
            out.append(spec)
        return out

    def _applied_before(self, spec: ExternalRequest) -> bool:
        """Whether this very request (same requester, same file) was applied already."""
        entries = [self.state.forgotten(spec.by, str(v)) for v in spec.targets]
        return all(e is not None and e["requested_by"] == spec.requested_by for e in entries)

    def _dropped(self, by: str, value: str, queued: set) -> str:
        """Why the target ``by=value`` is not asked for again ("" : it is new)."""
        entry = self.state.forgotten(by, value)
        if entry is not None:
            return (
                f"was already forgotten at round {entry['round']} (asked by "
                f"{entry['requested_by']})"
            )
        if (by, value) in queued:
            return "is already requested for this round boundary"
        return ""
