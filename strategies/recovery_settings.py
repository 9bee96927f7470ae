"""The recovery settings: how the rounds after an unlearning request train, as one record.

:class:`RecoverySettings` holds what recovery does differently from training: the server
update (Flower's FedAvgM, FedAdam or FedYogi), the clients' learning rate and local
epochs, the share of clients sampled, and the schedule of the first recovery rounds
(layer-wise rounds, a learning-rate warm-up, distillation; see
:class:`strategies.recovery_schedule.RecoverySchedule`). It is checked once, when it is
built (:meth:`RecoverySettings.__post_init__`); :class:`strategies.NoT` and its short forms
(FT, PGD, FedEraser, FUKD) read it by attribute. Flower's records only, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

from flwr.app import ConfigRecord

#: Server updates during recovery (:attr:`RecoverySettings.server_optimizer`).
RECOVERY_OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "yogi")
#: The fields that make the schedule of the first recovery rounds (``NoT``'s former
#: ``recovery_schedule`` keys, :class:`strategies.recovery_schedule.RecoverySchedule`'s).
SCHEDULE_FIELDS: tuple[str, ...] = (
    "layerwise_rounds",
    "warmup_rounds",
    "base_lr",
    "distill_weight",
    "distill_temperature",
)


def _number(name: str, value, *, optional: bool = False) -> None:
    """Refuse a value that is not a real number (``None`` too where ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real):
        allowed = "a number or None" if optional else "a number"
        raise ValueError(f"RecoverySettings.{name} must be {allowed}, got {value!r}")


def _count(name: str, value, *, optional: bool = False) -> None:
    """Refuse a value that is not an integer >= 0 (``None`` too where ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        allowed = "an integer >= 0 or None" if optional else "an integer >= 0"
        raise ValueError(f"RecoverySettings.{name} must be {allowed}, got {value!r}")


# pylint: disable=too-many-instance-attributes
@dataclass(frozen=True)
class RecoverySettings:
    """What the recovery rounds after a request do differently from training.

    The defaults are the paper's recovery: plain FedAvg on the remaining clients with the
    training's settings. ``NoT(plan, recovery=RecoverySettings(server_optimizer="adam",
    server_lr=0.01, lr=0.02))`` recovers with Flower's FedAdam and a client learning rate
    of 0.02. Every value is checked when the record is built (a ``ValueError`` names the
    field, the value and what is allowed).

    Parameters
    ----------
    server_optimizer : str (default: "sgd")
        The server update: ``"sgd"`` (Flower's FedAvgM; plain FedAvg with momentum 0 and
        learning rate 1), ``"adam"`` or ``"yogi"`` (FedAdam / FedYogi, ``beta_1=0.9``,
        ``beta_2=0.99``, ``tau=1e-3``). Run-config key ``recovery.server-optimizer``.
    server_momentum : float (default: 0.0)
        Server momentum in [0, 1), ``"sgd"`` only (``recovery.server-momentum``).
    server_lr : float (default: 1.0)
        Server learning rate, > 0: FedAvgM's, or FedAdam's / FedYogi's ``eta``
        (``recovery.server-lr``).
    lr : float or None (default: None)
        The clients' learning rate in recovery rounds (train-config entry ``lr``), >= 0;
        ``None`` or 0 (read as ``None``): the training's (``recovery.lr``).
    local_epochs : int or None (default: None)
        The clients' local epochs in recovery rounds (train-config entry
        ``local-epochs``), >= 0; ``None`` or 0 (read as ``None``): the training's
        (``recovery.local-epochs``).
    fraction_train : float or None (default: None)
        Share of the connected clients (never the forgotten ones) sampled in recovery
        rounds, in (0, 1]; ``None``: the strategy's ``fraction_train``
        (``recovery.fraction-train``).
    layerwise_rounds : int (default: 0)
        K: the first K recovery rounds train only the negated tensors; 0 = off
        (``recovery.layerwise-rounds``; needs a method that negates).
    warmup_rounds : int (default: 0)
        W: recovery rounds of linear learning-rate warm-up to :attr:`warmup_base_lr`;
        0 = off (``recovery.lr-warmup-rounds``).
    base_lr : float or None (default: None)
        The clients' learning rate the warm-up ramps to, > 0 when ``warmup_rounds > 0``;
        ``None``: ``lr`` (the app gives ``recovery.lr``, or ``lr`` when that is 0).
    distill_weight : float (default: 0.0)
        w of the clients' distillation loss towards the model from before the request,
        >= 0; 0 = off (``recovery.distill-weight``).
    distill_temperature : float (default: 2.0)
        T of the distillation loss, > 0 (``recovery.distill-temperature``).
    """

    server_optimizer: str = "sgd"
    server_momentum: float = 0.0
    server_lr: float = 1.0
    lr: float | None = None
    local_epochs: int | None = None
    fraction_train: float | None = None
    layerwise_rounds: int = 0
    warmup_rounds: int = 0
    base_lr: float | None = None
    distill_weight: float = 0.0
    distill_temperature: float = 2.0

    def __post_init__(self) -> None:
        """Check every value (the one place they are checked); read 0 as ``None`` for
        ``lr`` and ``local_epochs``."""
        self._check_server_update()
        self._check_clients()
        self._check_schedule()

    def _check_server_update(self) -> None:
        if self.server_optimizer not in RECOVERY_OPTIMIZERS:
            raise ValueError(
                f"RecoverySettings.server_optimizer must be one of {RECOVERY_OPTIMIZERS}, "
                f"got {self.server_optimizer!r}"
            )
        _number("server_momentum", self.server_momentum)
        if not 0.0 <= self.server_momentum < 1.0:
            raise ValueError(
                f"RecoverySettings.server_momentum must be in [0, 1), got {self.server_momentum}"
            )
        _number("server_lr", self.server_lr)
        if not self.server_lr > 0:
            raise ValueError(f"RecoverySettings.server_lr must be > 0, got {self.server_lr}")
        if self.server_optimizer != "sgd" and self.server_momentum > 0:
            raise ValueError(
                "RecoverySettings.server_momentum applies to server_optimizer='sgd' only; "
                f"got server_momentum={self.server_momentum} with {self.server_optimizer!r} "
                "(its own beta_1 is 0.9)"
            )

    def _check_clients(self) -> None:
        _number("lr", self.lr, optional=True)
        if self.lr is not None and self.lr < 0:
            raise ValueError(
                f"RecoverySettings.lr must be >= 0 (None or 0: the training's), got {self.lr}"
            )
        _count("local_epochs", self.local_epochs, optional=True)
        _number("fraction_train", self.fraction_train, optional=True)
        if self.fraction_train is not None and not 0.0 < self.fraction_train <= 1.0:
            raise ValueError(
                "RecoverySettings.fraction_train must be in (0, 1] or None, "
                f"got {self.fraction_train}"
            )
        if self.lr == 0:  # the training's, as None
            object.__setattr__(self, "lr", None)
        if self.local_epochs == 0:
            object.__setattr__(self, "local_epochs", None)

    def _check_schedule(self) -> None:
        _count("layerwise_rounds", self.layerwise_rounds)
        _count("warmup_rounds", self.warmup_rounds)
        _number("base_lr", self.base_lr, optional=True)
        if self.warmup_rounds > 0 and not self.warmup_base_lr > 0:
            raise ValueError(
                "RecoverySettings: a learning-rate warm-up (warmup_rounds="
                f"{self.warmup_rounds}) needs base_lr > 0 (or lr > 0 when base_lr is None), "
                f"got base_lr={self.base_lr}, lr={self.lr}"
            )
        _number("distill_weight", self.distill_weight)
        if self.distill_weight < 0:
            raise ValueError(
                f"RecoverySettings.distill_weight must be >= 0 (0: off), got {self.distill_weight}"
            )
        _number("distill_temperature", self.distill_temperature)
        if not self.distill_temperature > 0:
            raise ValueError(
                f"RecoverySettings.distill_temperature must be > 0, got {self.distill_temperature}"
            )

    # ------------------------------------------------------------ what the strategy reads
    @property
    def warmup_base_lr(self) -> float:
        """The learning rate the warm-up ramps to: ``base_lr``, else ``lr``, else 0."""
        if self.base_lr is not None:
            return float(self.base_lr)
        return float(self.lr or 0.0)

    @property
    def scheduled(self) -> bool:
        """Whether the first recovery rounds follow a schedule (layer-wise rounds, a
        warm-up or distillation): the recovery strategy is then wrapped in a
        :class:`~strategies.recovery_schedule.RecoverySchedule`."""
        return bool(self.layerwise_rounds or self.warmup_rounds or self.distill_weight)

    def train_config(self) -> ConfigRecord:
        """The train-config entries of recovery rounds: ``lr`` and ``local-epochs`` where
        set (empty for the training's), as the clients read them."""
        config: dict[str, float | int] = {}
        if self.lr is not None:
            config["lr"] = float(self.lr)
        if self.local_epochs is not None:
            config["local-epochs"] = int(self.local_epochs)
        return ConfigRecord(config)


__all__ = ["RECOVERY_OPTIMIZERS", "RecoverySettings", "SCHEDULE_FIELDS"]
