"""NoT, the short form: FedAvg wrapped with weight negation (Khalil et al., CVPR 2025).

``NoT(plan, **fedavg_kwargs)`` is ``Unlearning(FedAvg(**fedavg_kwargs), Negation(plan))``
(:mod:`strategies.unlearning`, :mod:`strategies.unlearner`), with the recovery options
of the run config turned into Flower's own server optimizers: a server momentum or
learning rate builds :class:`flwr.serverapp.strategy.FedAvgM`, ``recovery_optimizer="adam"``
(``"yogi"``) builds :class:`flwr.serverapp.strategy.FedAdam` (``FedYogi``), each used from
the request on; layer-wise rounds, a learning-rate warm-up and distillation wrap it in a
:class:`strategies.recovery_schedule.RecoverySchedule`. Until a request is applied it *is*
FedAvg: same sampling, same aggregate.

To unlearn with another strategy (FedProx, FedAdam, a DP wrapper ...), wrap it yourself:
``Unlearning(FedProx(...), Negation(plan))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedYogi, Strategy

from .negation_arrays import NegationPlan
from .recovery_schedule import RecoverySchedule
from .replies import (  # noqa: F401  (the names this module offered before)
    all_finite,
    array_layout,
    arrayrecord_nbytes,
    check_train_reply,
    reply_metrics,
)
from .unlearner import Negation, NoStep, Unlearner, as_plan
from .unlearning import Unlearning
from .unlearning_request import (  # noqa: F401
    UnlearningError,
    UnlearningEvent,
    UnlearningRequest,
    request_kind,
)

#: Server updates during recovery (see ``NoT(recovery_optimizer=...)``).
RECOVERY_OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "yogi")


def recovery_strategy_for(
    optimizer: str, momentum: float, server_lr: float, **fedavg_kwargs
) -> Strategy | None:
    """Flower's strategy for a recovery server update, or ``None`` for plain FedAvg.

    Parameters
    ----------
    optimizer : str
        ``"sgd"`` (FedAvgM; with momentum 0 and learning rate 1 this is FedAvg and
        ``None`` is returned), ``"adam"`` (FedAdam) or ``"yogi"`` (FedYogi), both with
        ``beta_1=0.9``, ``beta_2=0.99``, ``tau=1e-3``.
    momentum : float
        Server momentum in [0, 1) (``"sgd"`` only).
    server_lr : float
        Server learning rate, > 0 (FedAdam's / FedYogi's ``eta``).
    **fedavg_kwargs
        FedAvg's sampling and record settings, for the recovery strategy too.

    Raises
    ------
    ValueError
        Naming the bad value and what is allowed.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"recovery_momentum must be in [0, 1), got {momentum}")
    if not server_lr > 0:
        raise ValueError(f"recovery_server_lr must be > 0, got {server_lr}")
    if optimizer not in RECOVERY_OPTIMIZERS:
        raise ValueError(
            f"recovery_optimizer must be one of {RECOVERY_OPTIMIZERS}, got {optimizer!r}"
        )
    if optimizer != "sgd" and momentum > 0:
        raise ValueError(
            "recovery_momentum applies to recovery_optimizer='sgd' only; "
            f"got recovery_momentum={momentum} with {optimizer!r}"
        )
    if optimizer in ("adam", "yogi"):
        adaptive = FedAdam if optimizer == "adam" else FedYogi
        return adaptive(eta=server_lr, beta_1=0.9, beta_2=0.99, tau=1e-3, **fedavg_kwargs)
    if momentum > 0 or server_lr != 1.0:
        return FedAvgM(server_momentum=momentum, server_learning_rate=server_lr, **fedavg_kwargs)
    return None


# pylint: disable=too-many-locals
class NoT(Unlearning):
    """FedAvg that unlearns clients by negating layers and recovering without them.

    Parameters
    ----------
    negation : NegationPlan, Sequence[str], Unlearner or None
        What to negate: a plan from :func:`strategies.negation.plan_negation` (layers
        found by running the model; the usual choice) or the state_dict keys themselves.
        ``None`` negates nothing: recovery is then plain fine-tuning without the targets
        (the FT reference, :class:`strategies.baselines.FT`). Another method's
        :class:`~strategies.unlearner.Unlearner` makes this the FedAvg short form of that
        method (PGD, FedEraser and FUKD are built so).
    fraction_train : float (default: 1.0)
        FedAvg: fraction of the (non-excluded) nodes sampled for training.
    fraction_evaluate : float (default: 1.0)
        FedAvg: fraction of the (non-excluded) nodes sampled for evaluation.
    min_train_nodes : int (default: 2)
        FedAvg: least number of nodes sampled for training.
    min_evaluate_nodes : int (default: 2)
        FedAvg: least number of nodes sampled for evaluation.
    min_available_nodes : int (default: 2)
        FedAvg: least number of (non-excluded) connected nodes before sampling.
    weighted_by_key : str (default: "num-examples")
        FedAvg: the reply metric that weighs aggregation.
    arrayrecord_key : str (default: "arrays")
        FedAvg: key of the model in messages.
    configrecord_key : str (default: "config")
        FedAvg: key of the config in messages.
    train_metrics_aggr_fn, evaluate_metrics_aggr_fn : Callable or None
        FedAvg: ``(list[RecordDict], str) -> MetricRecord`` aggregating reply metrics
        (default: weighted average).
    recovery_momentum : float (default: 0.0)
        Server momentum during recovery only (Flower's FedAvgM, fresh at every request).
        0 with ``recovery_server_lr=1`` = plain FedAvg recovery (the paper's).
    recovery_server_lr : float (default: 1.0)
        Server learning rate during recovery (FedAvgM's, or FedAdam's / FedYogi's ``eta``).
    recovery_optimizer : str (default: "sgd")
        ``"sgd"`` (FedAvgM), ``"adam"`` or ``"yogi"`` (Flower's FedAdam / FedYogi,
        ``beta_1=0.9``, ``beta_2=0.99``, ``tau=1e-3``; ``recovery_momentum`` must be 0).
    recovery_schedule : dict or None (default: None)
        Keyword arguments of :class:`strategies.recovery_schedule.RecoverySchedule`
        (``layerwise_rounds``, ``warmup_rounds``, ``base_lr``, ``distill_weight``,
        ``distill_temperature``; its ``train_keys`` are the negated keys); ``None`` or all
        off: no schedule. The distillation teacher is the model from before each request.
    recovery_fraction_train : float or None (default: None)
        Share of the connected clients (the forgotten ones never among them) sampled in
        recovery rounds only, in (0, 1]; ``None``: ``fraction_train``, as in training.
    recovery_config, identity_timeout, node_wait_timeout, forget_me_key, request_source,
    keep_rounds, step_timeout, max_empty_rounds, on_unlearning, evaluate_negated,
    sampling_seed
        As :class:`strategies.unlearning.Unlearning`.
    """

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        negation: NegationPlan | Sequence[str] | Unlearner | None,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        recovery_momentum: float = 0.0,
        recovery_server_lr: float = 1.0,
        recovery_optimizer: str = "sgd",
        recovery_schedule: dict | None = None,
        recovery_config: dict | None = None,
        recovery_fraction_train: float | None = None,
        identity_timeout: float = 60.0,
        node_wait_timeout: float = 600.0,
        forget_me_key: str | None = None,
        request_source=None,
        keep_rounds: int | None = None,
        step_timeout: float | None = None,
        max_empty_rounds: int | None = 3,
        on_unlearning: Callable[[UnlearningEvent, ArrayRecord, ArrayRecord], None] | None = None,
        evaluate_negated: bool = False,
        sampling_seed: int | None = None,
    ) -> None:
        fedavg_kwargs = dict(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        if negation is None:
            unlearner: Unlearner = NoStep()
        elif isinstance(negation, Unlearner) and not isinstance(negation, (str, Sequence)):
            unlearner = negation
        else:
            unlearner = Negation(as_plan(negation))
        if recovery_fraction_train is not None and not 0.0 < recovery_fraction_train <= 1.0:
            raise ValueError(
                f"recovery_fraction_train must be in (0, 1] or None, got {recovery_fraction_train}"
            )
        recovery_kwargs = dict(fedavg_kwargs)
        if recovery_fraction_train is not None:  # recovery rounds only
            recovery_kwargs["fraction_train"] = recovery_fraction_train
        recovery = recovery_strategy_for(
            recovery_optimizer, recovery_momentum, recovery_server_lr, **recovery_kwargs
        )
        if recovery is None and recovery_kwargs != fedavg_kwargs:
            recovery = FedAvg(**recovery_kwargs)
        schedule = dict(recovery_schedule or {})
        if any(schedule.get(k) for k in ("layerwise_rounds", "warmup_rounds", "distill_weight")):
            recovery = RecoverySchedule(
                recovery or FedAvg(**recovery_kwargs), train_keys=unlearner.keys, **schedule
            )
        self._user_on_unlearning = on_unlearning
        super().__init__(
            FedAvg(**fedavg_kwargs),
            unlearner,
            recovery_strategy=recovery,
            request_source=request_source,
            forget_me_key=forget_me_key,
            identity_timeout=identity_timeout,
            node_wait_timeout=node_wait_timeout,
            keep_rounds=keep_rounds,
            recovery_config=recovery_config,
            step_timeout=step_timeout,
            max_empty_rounds=max_empty_rounds,
            on_unlearning=self._hand_teacher
            if isinstance(recovery, RecoverySchedule)
            else on_unlearning,
            evaluate_negated=evaluate_negated,
            sampling_seed=sampling_seed,
        )
        self.recovery_optimizer = recovery_optimizer
        self.recovery_momentum = recovery_momentum
        self.recovery_server_lr = recovery_server_lr
        for key, value in fedavg_kwargs.items():  # FedAvg's settings, readable as before
            setattr(self, key, value)

    def _hand_teacher(
        self, event: UnlearningEvent, before: ArrayRecord, after: ArrayRecord
    ) -> None:
        """At a request: the model before it is the recovery's distillation teacher."""
        if isinstance(self._recovery, RecoverySchedule):
            self._recovery.set_teacher(before)
        if self._user_on_unlearning is not None:
            self._user_on_unlearning(event, before, after)

    @property
    def tag(self) -> str:
        """Prefix of log lines: the method's name (``NoT``, ``FT`` ...), as the app's logs."""
        return self.unlearner.name

    @property
    def negation(self) -> NegationPlan | None:
        """The negation plan (``None`` for FT and the other methods)."""
        return self.unlearner.plan if isinstance(self.unlearner, Negation) else None


__all__ = [
    "NoT",
    "RECOVERY_OPTIMIZERS",
    "UnlearningError",
    "UnlearningEvent",
    "UnlearningRequest",
    "recovery_strategy_for",
]
