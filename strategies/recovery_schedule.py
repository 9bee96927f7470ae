"""Recovery-round schedules: layer-wise recovery, a learning-rate warm-up, a distillation teacher.

:class:`RecoverySchedule` wraps the strategy that recovers after a request (FedAvg,
Flower's FedAvgM, FedAdam, FedYogi ...) and changes the first recovery rounds:

* **layer-wise recovery** (``layerwise_rounds=K``): for the first K recovery rounds the
  train config names the tensors to train (``train-keys``: the negated ones); the clients
  train and send back only those, the server averages them (weighted by
  ``weighted_by_key``, as FedAvg) and writes them into the global model, every other
  tensor staying as it was. :meth:`RecoverySchedule.reply_layout` tells the
  :class:`~strategies.unlearning.Unlearning` wrapper which reply layout to accept.
* **learning-rate warm-up** (``warmup_rounds=W``, ``base_lr``): the train config's
  ``lr`` of recovery round ``r`` (1-based, counted from the request) is
  ``base_lr * r / W`` for ``r <= W``, then ``base_lr``.
* **distillation** (``distill_weight > 0``): the train messages carry the model from just
  before the request as ``teacher`` (an ArrayRecord, set by :meth:`set_teacher`) and
  ``distill-weight`` / ``distill-temperature`` in the config.

The wrapper is copied afresh at every request (``Unlearning(recovery_strategy=...)``), so
its round count starts at every request. numpy and Flower only, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from logging import INFO

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from flwr.supercore import log

from .grid_view import innermost
from .recovery_settings import RecoverySettings

#: The train-config entry naming the tensors a client trains and sends back.
TRAIN_KEYS = "train-keys"
#: The message record carrying the distillation teacher.
TEACHER_KEY = "teacher"


def warmup_lr(base_lr: float, recovery_round: int, warmup_rounds: int) -> float:
    """The client learning rate of a recovery round during a linear warm-up.

    Parameters
    ----------
    base_lr : float
        The learning rate after the warm-up (``recovery.lr``, or ``lr``).
    recovery_round : int
        1-based recovery round since the request.
    warmup_rounds : int
        W; 0 = no warm-up.

    Returns
    -------
    float
        ``base_lr * recovery_round / W`` for ``recovery_round <= W``, else ``base_lr``.
    """
    if warmup_rounds <= 0 or recovery_round >= warmup_rounds:
        return float(base_lr)
    return float(base_lr) * recovery_round / warmup_rounds


def merge_partial(global_arrays: ArrayRecord, partial: ArrayRecord) -> ArrayRecord:
    """``global_arrays`` with the tensors of ``partial`` written over it (in its dtypes).

    Parameters
    ----------
    global_arrays : ArrayRecord
        The model that was sent; its untouched Arrays are shared, not copied.
    partial : ArrayRecord
        Aggregated tensors, a subset of its keys.

    Returns
    -------
    ArrayRecord
        Keys in the order of ``global_arrays``.
    """
    out = {}
    for key, array in global_arrays.items():
        if key in partial:
            out[key] = Array(np.asarray(partial[key].numpy(), dtype=np.dtype(array.dtype)))
        else:
            out[key] = array
    return ArrayRecord(out)


# pylint: disable=too-many-instance-attributes
class RecoverySchedule(Strategy):
    """Change the first recovery rounds of ``strategy`` (see the module docstring).

    Parameters
    ----------
    strategy : Strategy
        The recovery strategy; it samples, and aggregates every round that is not
        layer-wise.
    train_keys : Sequence[str] (default: ())
        The tensors layer-wise rounds train (NoT's negated keys).
    layerwise_rounds : int (default: 0)
        K: recovery rounds that train only ``train_keys``; 0 = off.
    warmup_rounds : int (default: 0)
        W: recovery rounds of linear learning-rate warm-up; 0 = off.
    base_lr : float (default: 0.0)
        The clients' recovery learning rate the warm-up ramps to (> 0 when W > 0).
    distill_weight : float (default: 0.0)
        w of the clients' distillation loss; 0 = no teacher is sent.
    distill_temperature : float (default: 2.0)
        T of the distillation loss (> 0).

    Notes
    -----
    The values are checked as the fields of the same names of
    :class:`strategies.recovery_settings.RecoverySettings` (``NoT`` builds this wrapper
    from its ``recovery`` record).
    """

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        strategy: Strategy,
        *,
        train_keys: Sequence[str] = (),
        layerwise_rounds: int = 0,
        warmup_rounds: int = 0,
        base_lr: float = 0.0,
        distill_weight: float = 0.0,
        distill_temperature: float = 2.0,
    ) -> None:
        RecoverySettings(  # checks the values, where every recovery setting is checked
            layerwise_rounds=layerwise_rounds,
            warmup_rounds=warmup_rounds,
            base_lr=base_lr,
            distill_weight=distill_weight,
            distill_temperature=distill_temperature,
        )
        if layerwise_rounds > 0 and not train_keys:
            raise ValueError(
                "layer-wise recovery needs train_keys (the negated tensors); "
                "this method negates nothing"
            )
        self.strategy = strategy
        self.train_keys = tuple(train_keys)
        self.layerwise_rounds = int(layerwise_rounds)
        self.warmup_rounds = int(warmup_rounds)
        self.base_lr = float(base_lr)
        self.distill_weight = float(distill_weight)
        self.distill_temperature = float(distill_temperature)
        #: Recovery rounds configured so far (since the request: the wrapper is copied).
        self.recovery_round = 0
        self.teacher: ArrayRecord | None = None
        self._sent: ArrayRecord | None = None

    def set_teacher(self, arrays: ArrayRecord) -> None:
        """The distillation teacher: the global model just before the request."""
        self.teacher = arrays

    @property
    def layerwise(self) -> bool:
        """Whether the round configured last is a layer-wise one."""
        return 0 < self.recovery_round <= self.layerwise_rounds

    def reply_layout(self, layout: dict) -> dict:
        """The layout a train reply of the round configured last must have."""
        if not self.layerwise:
            return layout
        return {k: v for k, v in layout.items() if k in self.train_keys}

    def round_config(self, config: ConfigRecord) -> ConfigRecord:
        """The train config of the next recovery round (a copy; ``config`` is kept)."""
        extra: dict = {}
        if self.layerwise:
            extra[TRAIN_KEYS] = list(self.train_keys)
        if self.warmup_rounds > 0:
            extra["lr"] = warmup_lr(self.base_lr, self.recovery_round, self.warmup_rounds)
        if self.distill_weight > 0:
            extra["distill-weight"] = self.distill_weight
            extra["distill-temperature"] = self.distill_temperature
        return ConfigRecord({**dict(config), **extra}) if extra else config

    # ------------------------------------------------------------ the Strategy interface
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample with ``strategy``; add this round's config entries and the teacher."""
        self.recovery_round += 1
        self._sent = arrays
        if self.layerwise:
            log(
                INFO,
                "recovery round %d: layer-wise, training %s only",
                self.recovery_round,
                list(self.train_keys),
            )
        messages = list(
            self.strategy.configure_train(server_round, arrays, self.round_config(config), grid)
        )
        if self.distill_weight > 0:
            if self.teacher is None:
                raise ValueError(
                    "distillation during recovery needs the model from before "
                    "the request (set_teacher); none was set"
                )
            for msg in messages:
                msg.content[TEACHER_KEY] = self.teacher
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Layer-wise rounds: average the trained tensors into the model sent; else the
        wrapped strategy's aggregate."""
        if not self.layerwise:
            return self.strategy.aggregate_train(server_round, replies)
        contents = [m.content for m in replies if not m.has_error()]
        if not contents or self._sent is None:
            return None, None
        base = innermost(self.strategy)
        key = getattr(base, "weighted_by_key", "num-examples")
        partial = aggregate_arrayrecords(contents, key)
        metrics_fn = getattr(base, "train_metrics_aggr_fn", None)
        metrics = metrics_fn(contents, key) if metrics_fn is not None else None
        return merge_partial(self._sent, partial), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """As ``strategy``."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """As ``strategy``."""
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        """Log the schedule, then the wrapped strategy's settings."""
        log(
            INFO,
            "\t├──> Recovery schedule: %d layer-wise round(s) on %s, %d warm-up "
            "round(s), distillation weight %s (T=%s)",
            self.layerwise_rounds,
            list(self.train_keys),
            self.warmup_rounds,
            self.distill_weight,
            self.distill_temperature,
        )
        self.strategy.summary()


__all__ = ["RecoverySchedule", "TEACHER_KEY", "TRAIN_KEYS", "merge_partial", "warmup_lr"]
