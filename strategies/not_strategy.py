"""NoT, the short form: FedAvg wrapped with weight negation (Khalil et al., CVPR 2025).

``NoT(plan, **fedavg_kwargs)`` is ``Unlearning(FedAvg(**fedavg_kwargs), Negation(plan))``
(:mod:`strategies.unlearning`, :mod:`strategies.unlearner`), with its recovery settings
(``recovery=``, a :class:`strategies.recovery_settings.RecoverySettings`) turned into
Flower's own server optimizers: a server momentum or learning rate builds
:class:`flwr.serverapp.strategy.FedAvgM`, ``server_optimizer="adam"`` (``"yogi"``) builds
:class:`flwr.serverapp.strategy.FedAdam` (``FedYogi``), each used from the request on;
layer-wise rounds, a learning-rate warm-up and distillation wrap it in a
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
from .recovery_settings import RECOVERY_OPTIMIZERS, SCHEDULE_FIELDS, RecoverySettings
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


def recovery_strategy_for(settings: RecoverySettings, **fedavg_kwargs) -> Strategy | None:
    """Flower's strategy for the server update of ``settings``, or ``None`` for plain FedAvg.

    Parameters
    ----------
    settings : RecoverySettings
        Its ``server_optimizer``: ``"sgd"`` (FedAvgM with ``server_momentum`` and
        ``server_lr``; with momentum 0 and learning rate 1 this is FedAvg and ``None`` is
        returned), ``"adam"`` (FedAdam) or ``"yogi"`` (FedYogi), both with
        ``eta=server_lr``, ``beta_1=0.9``, ``beta_2=0.99``, ``tau=1e-3``.
    **fedavg_kwargs
        FedAvg's sampling and record settings, for the recovery strategy too.
    """
    if settings.server_optimizer in ("adam", "yogi"):
        adaptive = FedAdam if settings.server_optimizer == "adam" else FedYogi
        return adaptive(eta=settings.server_lr, beta_1=0.9, beta_2=0.99, tau=1e-3, **fedavg_kwargs)
    if settings.server_momentum > 0 or settings.server_lr != 1.0:
        return FedAvgM(
            server_momentum=settings.server_momentum,
            server_learning_rate=settings.server_lr,
            **fedavg_kwargs,
        )
    return None


def recovery_strategy(
    settings: RecoverySettings, fedavg_kwargs: dict, train_keys: Sequence[str]
) -> Strategy | None:
    """The strategy NoT recovers with, or ``None`` for a fresh copy of its FedAvg.

    Parameters
    ----------
    settings : RecoverySettings
        The server update, the recovery sampling fraction and the schedule.
    fedavg_kwargs : dict
        The FedAvg keyword arguments of the training rounds.
    train_keys : Sequence[str]
        The tensors the schedule's layer-wise rounds train (the negated keys).

    Returns
    -------
    Strategy or None
        Flower's FedAvgM / FedAdam / FedYogi (:func:`recovery_strategy_for`), a FedAvg
        sampling ``settings.fraction_train``, either wrapped in a
        :class:`~strategies.recovery_schedule.RecoverySchedule` when ``settings.scheduled``;
        ``None`` when recovery is the training's FedAvg.
    """
    recovery_kwargs = dict(fedavg_kwargs)
    if settings.fraction_train is not None:  # recovery rounds only
        recovery_kwargs["fraction_train"] = settings.fraction_train
    recovery = recovery_strategy_for(settings, **recovery_kwargs)
    if recovery is None and recovery_kwargs != fedavg_kwargs:
        recovery = FedAvg(**recovery_kwargs)
    if not settings.scheduled:
        return recovery
    return RecoverySchedule(
        recovery or FedAvg(**recovery_kwargs),
        train_keys=train_keys,
        layerwise_rounds=settings.layerwise_rounds,
        warmup_rounds=settings.warmup_rounds,
        base_lr=settings.warmup_base_lr,
        distill_weight=settings.distill_weight,
        distill_temperature=settings.distill_temperature,
    )


# pylint: disable=too-many-arguments
def recovery_from_keywords(
    recovery: RecoverySettings | None,
    *,
    recovery_optimizer: str | None = None,
    recovery_momentum: float | None = None,
    recovery_server_lr: float | None = None,
    recovery_schedule: dict | None = None,
    recovery_config: dict | None = None,
    recovery_fraction_train: float | None = None,
) -> tuple[RecoverySettings, dict]:
    """NoT's recovery record, from ``recovery=`` or from its former keyword arguments.

    Parameters
    ----------
    recovery : RecoverySettings or None
        The record; ``None``: built from the keywords below (defaults where not given).
    recovery_optimizer, recovery_momentum, recovery_server_lr, recovery_fraction_train
        ``server_optimizer``, ``server_momentum``, ``server_lr``, ``fraction_train``.
    recovery_schedule : dict or None
        Its keys (:data:`strategies.recovery_settings.SCHEDULE_FIELDS`) are fields.
    recovery_config : dict or None
        Entries added to the train config of recovery rounds: its ``lr`` and
        ``local-epochs`` are the fields ``lr`` and ``local_epochs``; other entries are
        returned as they are.

    Returns
    -------
    tuple of (RecoverySettings, dict)
        The record and the train-config entries that are not its fields.

    Raises
    ------
    TypeError
        ``recovery`` is not a RecoverySettings, a schedule key is unknown, or a former
        keyword is given together with ``recovery``.
    ValueError
        A value the record refuses (naming the field).
    """
    unknown = sorted(set(recovery_schedule or {}) - set(SCHEDULE_FIELDS))
    if unknown:
        raise TypeError(f"recovery_schedule: unknown keys {unknown}; allowed: {SCHEDULE_FIELDS}")
    extra = dict(recovery_config or {})
    keywords = {
        "server_optimizer": recovery_optimizer,
        "server_momentum": recovery_momentum,
        "server_lr": recovery_server_lr,
        "fraction_train": recovery_fraction_train,
        "lr": extra.pop("lr", None),
        "local_epochs": extra.pop("local-epochs", None),
        **dict(recovery_schedule or {}),
    }
    given = {field: value for field, value in keywords.items() if value is not None}
    if recovery is None:
        return RecoverySettings(**given), extra
    if not isinstance(recovery, RecoverySettings):
        raise TypeError(f"recovery must be a RecoverySettings, got {type(recovery).__name__}")
    if given:
        raise TypeError(
            "give the recovery settings as recovery=RecoverySettings(...) or as the former "
            f"keywords, not both: {sorted(given)} given beside recovery"
        )
    return recovery, extra


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
    recovery : RecoverySettings or None (default: None)
        How the recovery rounds after a request train
        (:class:`strategies.recovery_settings.RecoverySettings`): the server update
        (Flower's FedAvgM, FedAdam or FedYogi, fresh at every request), the clients'
        ``lr`` and ``local_epochs`` (train-config entries ``lr``, ``local-epochs``), the
        share of clients sampled and the schedule of the first rounds (layer-wise rounds
        on the negated keys, a learning-rate warm-up, distillation towards the model from
        before each request: a :class:`strategies.recovery_schedule.RecoverySchedule`).
        ``None``: the paper's recovery (plain FedAvg with the training's settings), or
        the record the keywords below make.
    recovery_optimizer, recovery_momentum, recovery_server_lr, recovery_fraction_train
        The former way to set ``recovery``'s ``server_optimizer``, ``server_momentum``,
        ``server_lr`` and ``fraction_train`` (``None``: not given); not together with
        ``recovery``.
    recovery_schedule : dict or None (default: None)
        The former way to set ``recovery``'s schedule fields (``layerwise_rounds``,
        ``warmup_rounds``, ``base_lr``, ``distill_weight``, ``distill_temperature``).
    recovery_config : dict or None (default: None)
        Entries added to the train config of recovery rounds (as
        :class:`strategies.unlearning.Unlearning`); its ``lr`` and ``local-epochs`` are
        ``recovery``'s ``lr`` and ``local_epochs`` (not together with ``recovery``).
    identity_timeout, node_wait_timeout, forget_me_key, request_source,
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
        recovery: RecoverySettings | None = None,
        recovery_momentum: float | None = None,
        recovery_server_lr: float | None = None,
        recovery_optimizer: str | None = None,
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
        settings, extra_config = recovery_from_keywords(
            recovery,
            recovery_optimizer=recovery_optimizer,
            recovery_momentum=recovery_momentum,
            recovery_server_lr=recovery_server_lr,
            recovery_schedule=recovery_schedule,
            recovery_config=recovery_config,
            recovery_fraction_train=recovery_fraction_train,
        )
        recovery_used = recovery_strategy(settings, fedavg_kwargs, unlearner.keys)
        self._user_on_unlearning = on_unlearning
        super().__init__(
            FedAvg(**fedavg_kwargs),
            unlearner,
            recovery_strategy=recovery_used,
            request_source=request_source,
            forget_me_key=forget_me_key,
            identity_timeout=identity_timeout,
            node_wait_timeout=node_wait_timeout,
            keep_rounds=keep_rounds,
            recovery_config={**settings.train_config(), **extra_config},
            step_timeout=step_timeout,
            max_empty_rounds=max_empty_rounds,
            on_unlearning=self._hand_teacher
            if isinstance(recovery_used, RecoverySchedule)
            else on_unlearning,
            evaluate_negated=evaluate_negated,
            sampling_seed=sampling_seed,
        )
        #: The recovery settings (a frozen record, checked when built).
        self.recovery = settings
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
    def recovery_optimizer(self) -> str:
        """The recovery's server optimizer (``recovery.server_optimizer``)."""
        return self.recovery.server_optimizer

    @property
    def recovery_momentum(self) -> float:
        """The recovery's server momentum (``recovery.server_momentum``)."""
        return self.recovery.server_momentum

    @property
    def recovery_server_lr(self) -> float:
        """The recovery's server learning rate (``recovery.server_lr``)."""
        return self.recovery.server_lr

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
    "RecoverySettings",
    "UnlearningError",
    "UnlearningEvent",
    "UnlearningRequest",
    "recovery_from_keywords",
    "recovery_strategy",
    "recovery_strategy_for",
]
