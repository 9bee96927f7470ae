"""What the baselines share: an unlearning *step* at the request boundary, then recovery.

NoT's unlearning step is a negation the server computes alone. The methods NoT is judged
against (:mod:`strategies.pgd`, :mod:`strategies.federaser`, :mod:`strategies.fukd`) do
something else at that boundary: the target runs projected gradient ascent (PGD), the
remaining clients run calibration rounds and the server rebuilds the model from stored
updates (FedEraser), the server subtracts stored updates and distils on its own data
(FUKD). :class:`StepUnlearning` gives them NoT's whole interface (requests, identities,
exclusion, untrusted-reply checks, cost accounting in ``self.rounds``, the
``on_unlearning`` hook) and one method to implement, :meth:`StepUnlearning.unlearn`:

1. at the boundary, NoT's request handling runs unchanged without negation (FT): targets
   are resolved and excluded;
2. :meth:`unlearn` turns the global model into the unlearned model; every message it
   sends goes through :meth:`send_step`, which counts bytes down/up, client seconds and
   the communication rounds of the step in the round's accounting (``bytes_down``,
   ``bytes_up``, ``client_seconds``, ``server_seconds``, ``extra_rounds``,
   ``unlearning_replied``, ``unlearning_step``);
3. ``on_unlearning(event, before, unlearned)`` is called with the unlearned model;
4. recovery: FedAvg rounds without the targets (``recovery-rounds``), as FT.

Each subclass declares :attr:`REQUIREMENTS` (what it needs: storage, target data, target
participation, server-side data) and reports the storage it actually keeps
(:attr:`storage_bytes`, :attr:`storage_peak_bytes`, measured on the arrays or files).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from logging import WARNING

import numpy as np
from flwr.app import Array, ArrayRecord, Message
from flwr.serverapp import Grid
from flwr.supercore import log

from .baselines import FT
from .not_strategy import UnlearningRequest, arrayrecord_nbytes, reply_metrics

#: Requirements of a method (the keys every strategy declares).
REQUIREMENT_KEYS = ("storage", "target_data", "target_participation", "server_data")


def float_keys(arrays: ArrayRecord | dict) -> list[str]:
    """Keys of the floating-point tensors (the ones that are trained)."""
    return [k for k, a in arrays.items() if np.dtype(str(a.dtype)).kind == "f"]


def to_numpy(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    """An ArrayRecord as a dict of numpy arrays (copies)."""
    return {k: np.array(a.numpy()) for k, a in arrays.items()}


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    """A dict of numpy arrays as an ArrayRecord (key order kept)."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def nbytes(arrays: dict[str, np.ndarray]) -> int:
    """Bytes of a dict of numpy arrays."""
    return int(sum(a.nbytes for a in arrays.values()))


class StepUnlearning(FT):
    """FT plus a method-specific unlearning step at the request boundary.

    Parameters
    ----------
    step_timeout : float or None (default: None)
        Seconds to wait for the replies to the step's messages (``None``: no limit).
    **kwargs
        As :class:`strategies.NoT`, except ``negation``.
    """

    #: What the method needs; overridden by every subclass.
    REQUIREMENTS: dict = {"storage": "none", "target_data": False,
                          "target_participation": False, "server_data": False}

    def __init__(self, *, step_timeout: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_timeout = step_timeout
        #: One dict per applied request: what the step did (JSON-ready).
        self.steps: list[dict] = []
        self._peak = 0
        self._wait = [0.0]  # seconds spent waiting for clients during the current step

    # ------------------------------------------------------------ requirements
    @property
    def storage_bytes(self) -> int:
        """Bytes of history the method keeps now (measured); 0 unless overridden."""
        return 0

    @property
    def storage_peak_bytes(self) -> int:
        """Most bytes kept at any time so far."""
        self._peak = max(self._peak, self.storage_bytes)
        return self._peak

    def _note_storage(self) -> None:
        self._peak = max(self._peak, self.storage_bytes)

    # ------------------------------------------------------------ requests
    def request_unlearning(self, targets, *, classes=None, samples=None, **kwargs
                           ) -> UnlearningRequest:
        """As :meth:`strategies.NoT.request_unlearning`, client-wise only.

        Raises
        ------
        ValueError
            For ``classes=`` or ``samples=``: the baselines forget whole clients.
        """
        if classes is not None or samples is not None:
            raise ValueError(f"{type(self).__name__} forgets whole clients only; class-wise "
                             "and instance-wise requests are NoT's (strategies.NoT)")
        return super().request_unlearning(targets, **kwargs)

    # ------------------------------------------------------------ the step
    def unlearn(self, server_round: int, arrays: ArrayRecord, targets: list[int],
                grid: Grid) -> ArrayRecord:
        """Return the unlearned model; ``targets`` are the node ids to forget.

        Called once per round boundary at which requests are applied, after the targets
        were excluded. Implemented by every subclass.
        """
        raise NotImplementedError

    def _apply(self, requests: list[UnlearningRequest], server_round: int,
               arrays: ArrayRecord, grid: Grid) -> ArrayRecord:
        hook, self.on_unlearning = self.on_unlearning, None
        first = len(self.events)
        try:
            out = super()._apply(requests, server_round, arrays, grid)
        finally:
            self.on_unlearning = hook
        events = self.events[first:]
        if not events:
            return out
        targets = list(dict.fromkeys(t["node_id"] for e in events for t in e.targets))
        info = self._round(server_round)
        info["unlearning_step"] = {"method": type(self).__name__, "round": server_round,
                                   "targets": targets, "rounds": 0, "bytes_down": 0,
                                   "bytes_up": 0, "client_seconds": 0.0, "server_seconds": 0.0,
                                   "participants": []}
        t0 = time.perf_counter()
        client_wait = [0.0]
        self._wait = client_wait
        unlearned = self.unlearn(server_round, arrays, targets, grid)
        step = info["unlearning_step"]
        # server time = the step's wall time minus the time spent waiting for clients
        step["server_seconds"] = max(0.0, time.perf_counter() - t0 - client_wait[0])
        info["server_seconds"] = info.get("server_seconds", 0.0) + step["server_seconds"]
        self._note_storage()
        self.steps.append(step)
        if hook is not None:
            for event in events:
                hook(event, arrays, unlearned)
        return unlearned

    def send_step(self, server_round: int, messages: Sequence[Message], grid: Grid,
                  *, counts_as_round: bool = True) -> list[Message]:
        """Send the step's messages and count them; return the replies without errors.

        Every reply's ArrayRecords count as bytes up, its ``*-seconds`` metrics as client
        seconds, its sender as a participant of the step (``unlearning_replied``).
        """
        messages = list(messages)
        info = self._round(server_round)
        step = info["unlearning_step"]
        down = sum(arrayrecord_nbytes(rec) for m in messages
                   for rec in m.content.array_records.values())
        t0 = time.perf_counter()
        replies = list(grid.send_and_receive(messages, timeout=self.step_timeout)) \
            if messages else []
        self._wait[0] += time.perf_counter() - t0
        ok = []
        for msg in replies:
            if msg.has_error():
                log(WARNING, "%s: node %d failed the unlearning step (round %d): %s",
                    type(self).__name__, msg.metadata.src_node_id, server_round,
                    msg.error.reason)
                continue
            ok.append(msg)
        up = sum(arrayrecord_nbytes(rec) for m in ok for rec in m.content.array_records.values())
        seconds = sum(float(v) for m in ok for k, v in reply_metrics(m.content).items()
                      if k.endswith("-seconds") and isinstance(v, (int, float)))
        ids = [m.metadata.src_node_id for m in ok]
        for key, value in (("bytes_down", down), ("bytes_up", up), ("client_seconds", seconds)):
            info[key] = info.get(key, 0) + value
            step[key] += value
        if counts_as_round and messages:
            info["extra_rounds"] = info.get("extra_rounds", 0) + 1
            step["rounds"] += 1
        info.setdefault("unlearning_replied", []).extend(ids)
        step["participants"].extend(n for n in ids if n not in step["participants"])
        return ok

    # ------------------------------------------------------------ helpers
    def _train_replies(self, server_round: int, kept: Iterable[Message]) -> list[Message]:
        """The train replies of a round that FedAvg will aggregate (no errors)."""
        del server_round
        return [m for m in kept if not m.has_error()]
