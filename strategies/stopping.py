"""When recovery may stop: a per-request rule on what the server sees, and ``should_stop``.

After an unlearning request the retained clients' federated validation metric (what
the server sees in a real deployment: no test labels, no target data) first drops, then
climbs back. The rule fires at the first recovery round of a request that is either

* **back within tolerance**: the value is at least the request's *reference* (the
  value in the last round before the request) minus ``tolerance``; or
* **a plateau**: at least ``min_rounds`` recovery rounds are done and the best value of
  the last ``window`` rounds is not more than ``min_delta`` above the best value of the
  recovery rounds before that window. ``window = 0`` turns this test off.

The plateau branch is what fires when the federation without the target's data never
gets back to the level it had with it. The math is in pure functions
(:func:`within_tolerance`, :func:`plateaued`, :func:`stop_branch`, :func:`first_stop`);
:class:`RequestStops` applies them per request over the rounds of a run (plain dict
entries, JSON-ready, so an app can keep them for resume); :class:`RecoveryStop` is a
``should_stop(server_round, result) -> bool`` for :meth:`strategies.Unlearning.start`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The branch that fired: back within tolerance of the reference.
TOLERANCE = "tolerance"
#: The branch that fired: no improvement above ``min_delta`` over the last ``window`` rounds.
PLATEAU = "plateau"


@dataclass(frozen=True)
class StopSettings:
    """The rule's parameters.

    Parameters
    ----------
    tolerance : float (default: 0.02)
        How far below its reference a request's value may be and count as recovered
        (0.02 = 2 points of accuracy).
    window : int (default: 0)
        Rounds of the plateau test; 0 turns it off (only the tolerance test fires).
    min_delta : float (default: 0.0)
        The least improvement over ``window`` rounds that is not a plateau.
    min_rounds : int (default: 0)
        Recovery rounds a request needs before the plateau test may fire.
    """

    tolerance: float = 0.02
    window: int = 0
    min_delta: float = 0.0
    min_rounds: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance <= 1:
            raise ValueError(f"tolerance must be in [0, 1], got {self.tolerance}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 0:
            raise ValueError(f"window must be an integer >= 0 (0: off), got {self.window!r}")
        if not 0 <= self.min_delta <= 1:
            raise ValueError(f"min_delta must be in [0, 1], got {self.min_delta}")
        if (
            isinstance(self.min_rounds, bool)
            or not isinstance(self.min_rounds, int)
            or self.min_rounds < 0
        ):
            raise ValueError(f"min_rounds must be an integer >= 0, got {self.min_rounds!r}")


def within_tolerance(value: float | None, reference: float | None, tolerance: float) -> bool:
    """Whether ``value`` is back within ``tolerance`` of ``reference``.

    Parameters
    ----------
    value, reference : float or None
        This round's value and the request's reference (``None``: unknown, never within).
    tolerance : float
        How far below the reference still counts.

    Returns
    -------
    bool
    """
    return value is not None and reference is not None and value >= reference - tolerance


def plateaued(
    curve: Sequence[float | None], *, window: int, min_delta: float, min_rounds: int
) -> bool:
    """Whether a request's recovery curve has flattened at its last point.

    Parameters
    ----------
    curve : Sequence of float or None
        The value after each recovery round of the request so far (``None``: not measured
        that round).
    window, min_delta, min_rounds : int, float, int
        As :class:`StopSettings`.

    Returns
    -------
    bool
        ``True`` when ``window > 0``, at least ``min_rounds`` and ``window + 1`` rounds are
        done, and the best value of the last ``window`` rounds is at most ``min_delta``
        above the best value before them (both measured at least once).
    """
    n = len(curve)
    if window <= 0 or n < max(min_rounds, window + 1):
        return False
    recent = [v for v in curve[n - window :] if v is not None]
    before = [v for v in curve[: n - window] if v is not None]
    # 1e-12: a difference of 0.71 - 0.70 is 0.01, not 0.010000000000000009
    return bool(recent and before) and max(recent) - max(before) <= min_delta + 1e-12


def stop_branch(
    curve: Sequence[float | None], reference: float | None, settings: StopSettings
) -> str | None:
    """The branch that fires at the last point of ``curve`` (``None``: none fires).

    Parameters
    ----------
    curve : Sequence of float or None
        The request's values after each of its recovery rounds so far.
    reference : float or None
        The value before the request (``None``: only the plateau test may fire).
    settings : StopSettings
        The rule's parameters.

    Returns
    -------
    str or None
        :data:`TOLERANCE` (checked first), :data:`PLATEAU` or ``None``.
    """
    if curve and within_tolerance(curve[-1], reference, settings.tolerance):
        return TOLERANCE
    if plateaued(
        curve,
        window=settings.window,
        min_delta=settings.min_delta,
        min_rounds=settings.min_rounds,
    ):
        return PLATEAU
    return None


def first_stop(
    curve: Sequence[float | None], reference: float | None, settings: StopSettings
) -> tuple[int, str] | None:
    """The first recovery round at which the rule fires, replayed over a whole curve.

    Parameters
    ----------
    curve, reference, settings
        As :func:`stop_branch`.

    Returns
    -------
    tuple[int, str] or None
        ``(recovery round, counted from 1; branch)``, or ``None`` if it never fires.
    """
    for n in range(1, len(curve) + 1):
        branch = stop_branch(curve[:n], reference, settings)
        if branch is not None:
            return n, branch
    return None


class RequestStops:
    """The rule, judged per request over the rounds of a run.

    Each request opens a window of rounds that lasts until the next request; its value
    curve is the values of its own window's recovery rounds, and a later round is never
    credited to it. A request whose predecessor did not stop (cut short by it) inherits
    the predecessor's reference: the last level the federation had before an unrecovered
    step, not the lower value of a model still recovering.

    Parameters
    ----------
    settings : StopSettings
        The rule's parameters.
    entries : list[dict] or None
        Entries of an interrupted run to continue (updated in place); ``None``: a new list.
        Each is ``request_round``, ``reference``, ``reference_of_request`` (the index of
        the request whose reference it inherited, or ``None``), ``curve``,
        ``chosen_round``, ``branch`` and ``last_round``.
    """

    def __init__(self, settings: StopSettings, entries: list[dict] | None = None) -> None:
        self.settings = settings
        self.entries: list[dict] = [] if entries is None else entries

    def start(self, request_round: int, reference: float | None) -> dict:
        """Open the window of a request applied at ``request_round``; return its entry."""
        inherited = None
        if self.entries:
            previous = self.entries[-1]
            if previous["chosen_round"] is None and previous["reference"] is not None:
                inherited = len(self.entries) - 1  # cut short: its target still stands
                reference = previous["reference"]
        entry = {
            "request_round": int(request_round),
            "reference": reference,
            "reference_of_request": inherited,
            "curve": [],
            "chosen_round": None,
            "branch": None,
            "last_round": None,
        }
        self.entries.append(entry)
        return entry

    def _window(self, server_round: int) -> int | None:
        """The request round of the latest window at or before ``server_round``."""
        return max(
            (e["request_round"] for e in self.entries if e["request_round"] <= server_round),
            default=None,
        )

    def observe(
        self, server_round: int, value: float | None, *, recovery: bool = True
    ) -> list[int]:
        """Record one round's value; return the indices of the requests that stop here.

        Parameters
        ----------
        server_round : int
            The round.
        value : float or None
            The retained clients' validation metric after it (``None``: not measured).
        recovery : bool (default: True)
            Whether it was a recovery round (others are never judged).
        """
        open_round = self._window(server_round)
        stopped = []
        for index, entry in enumerate(self.entries):
            if entry["request_round"] != open_round:
                continue
            entry["last_round"] = int(server_round)
            if not recovery or entry["chosen_round"] is not None:
                continue
            entry.setdefault("curve", []).append(value)
            branch = stop_branch(entry["curve"], entry["reference"], self.settings)
            if branch is not None:
                entry["chosen_round"], entry["branch"] = int(server_round), branch
                stopped.append(index)
        return stopped

    @property
    def settled(self) -> bool:
        """Whether every request of the latest window has stopped (``False``: none yet)."""
        window = max((e["request_round"] for e in self.entries), default=None)
        latest = [e for e in self.entries if e["request_round"] == window]
        return bool(latest) and all(e["chosen_round"] is not None for e in latest)

    def counts(self, server_round: int) -> bool:
        """Whether a request needed this round: in a request's window, up to its stop
        round (anywhere in it when it did not stop); rounds before the first request are
        not counted."""
        window = self._window(server_round)
        if window is None:
            return False
        chosen = [e["chosen_round"] for e in self.entries if e["request_round"] == window]
        ends = [c for c in chosen if c is not None]
        return len(ends) < len(chosen) or server_round <= max(ends)


def retained_mean(
    metrics_by_node: Mapping[int, Mapping], key: str, weight_key: str, excluded
) -> float | None:
    """Weighted mean of ``key`` over the nodes not in ``excluded`` (``None``: none has it).

    Parameters
    ----------
    metrics_by_node : Mapping[int, Mapping]
        Node id -> the metrics of its evaluate reply.
    key, weight_key : str
        The metric, and the metric that weighs it (``num-examples``).
    excluded : Container[int]
        Nodes to leave out (the targets).

    Returns
    -------
    float or None
    """
    pairs = [
        (float(m[key]), float(m.get(weight_key, 1.0)))
        for n, m in metrics_by_node.items()
        if n not in excluded and key in m
    ]
    total = sum(w for _, w in pairs if w > 0)
    return None if total <= 0 else sum(v * w for v, w in pairs if w > 0) / total


class RecoveryStop:
    """``should_stop`` for :meth:`strategies.Unlearning.start`: end the run once recovered.

    Called at the end of every round with the round and Flower's ``Result``. It reads the
    federated evaluate metric ``metric_key`` of that round from
    ``result.evaluate_metrics_clientapp``, learns the requests' rounds from the wrapper's
    ``events``, judges each request with :class:`RequestStops`, and returns ``True`` once
    every request of the latest round has stopped and no request is pending. The reference
    of a request is the metric of the round before it over the retained nodes only (from
    the wrapper's per-node evaluate replies of that round; the aggregate, which still
    counts the targets, where those are not known).

    Parameters
    ----------
    strategy : Unlearning
        The wrapper whose ``start()`` gets this callable.
    metric_key : str (default: "accuracy")
        The evaluate metric the ClientApps reply with (higher is better).
    tolerance, window, min_delta, min_rounds
        As :class:`StopSettings`.
    weight_key : str (default: "num-examples")
        The metric that weighs the retained nodes' values in the reference.
    """

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        strategy,
        metric_key: str = "accuracy",
        *,
        tolerance: float = 0.02,
        window: int = 0,
        min_delta: float = 0.0,
        min_rounds: int = 0,
        weight_key: str = "num-examples",
    ) -> None:
        self.strategy = strategy
        self.metric_key = metric_key
        self.weight_key = weight_key
        self.stops = RequestStops(StopSettings(tolerance, window, min_delta, min_rounds))
        self._seen = 0  # wrapper events already opened
        self._values: dict[int, float | None] = {}  # round -> aggregated metric
        self._nodes: dict[int, dict] = {}  # round -> per-node evaluate metrics

    def _value(self, result, server_round: int) -> float | None:
        record = result.evaluate_metrics_clientapp.get(server_round)
        if record is None or self.metric_key not in record:
            return None
        return float(record[self.metric_key])

    def __call__(self, server_round: int, result) -> bool:
        """Judge ``server_round``; ``True``: recovered and nothing pending, stop the run."""
        self._values[server_round] = self._value(result, server_round)
        info = getattr(self.strategy, "rounds", {}).get(server_round)
        self._nodes[server_round] = dict(info.evaluate_metrics) if info is not None else {}
        for event in self.strategy.events[self._seen :]:
            before = self._nodes.get(event.round - 1)
            reference = (
                retained_mean(
                    before, self.metric_key, self.weight_key, self.strategy.excluded_node_ids
                )
                if before
                else None
            )
            if reference is None:
                reference = self._values.get(event.round - 1)
            self.stops.start(event.round, reference)
        self._seen = len(self.strategy.events)
        for old in [r for r in self._nodes if r < server_round]:
            del self._nodes[old]  # only the round before the next request is needed
            self._values.pop(old, None)
        self.stops.observe(server_round, self._values[server_round])
        return self.stops.settled and not self.strategy.pending_requests


__all__ = [
    "PLATEAU",
    "TOLERANCE",
    "RecoveryStop",
    "RequestStops",
    "StopSettings",
    "first_stop",
    "plateaued",
    "retained_mean",
    "stop_branch",
    "within_tolerance",
]
