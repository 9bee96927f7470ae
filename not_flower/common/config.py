"""Run configuration: every key the app reads, its default, and its validation.

The defaults here are the ones in ``pyproject.toml`` (``[tool.flwr.app.config]``); a test
checks that the two agree. :func:`parse_run_config` turns Flower's ``context.run_config``
into a :class:`RunConfig` or raises :class:`ConfigError` naming the bad key, the bad value
and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from not_flower.common.methods import BASELINE_METHODS as _BASELINES
from not_flower.common.methods import METHOD_NAMES, REGISTRY

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
MODELS = ("cnn", "mlp", "resnet18", "vit")
PARTITIONERS = ("iid", "dirichlet")
# Choices the strategies define too (strategies.negation.BATCHNORM_POLICIES,
# strategies.not_strategy.RECOVERY_OPTIMIZERS): repeated here so that parsing a run config
# imports neither torch nor Flower; tests/test_config.py checks that the two agree.
BATCHNORM_POLICIES = ("keep", "negate-running-mean")
#: The allowed ``method`` values: every method of the registry (:mod:`not_flower.common.methods`).
METHODS = METHOD_NAMES
#: The baseline unlearning methods besides FT and Retrain (PGD, FedEraser, FUKD in the
#: registry): client-wise forgetting only.
BASELINE_METHODS = _BASELINES
UNLEARN_MODES = ("client", "class", "instance")
RECOVERY_OPTIMIZERS = ("sgd", "adam", "yogi")


class ConfigError(ValueError):
    """A run-config value that is not allowed."""


@dataclass(frozen=True)
class RunConfig:
    """Typed run configuration (keys use dashes in Flower's run config)."""

    method: str = "not"
    num_train_rounds: int = 20
    unlearn_groups: tuple[tuple[str, ...], ...] = (("0",),)
    unlearn_mode: str = "client"
    unlearn_classes: tuple[str, ...] = ()
    unlearn_samples: tuple[str, ...] = ()
    recovery_rounds: int = 15
    negate_layers: str = "first"
    negate_bias: bool = True
    batchnorm_policy: str = "keep"
    # recovery-only settings (beyond the paper; see BENCHMARKS.md "Faster recovery")
    recovery_server_optimizer: str = "sgd"
    recovery_server_momentum: float = 0.0
    recovery_server_lr: float = 1.0
    recovery_lr: float = 0.0
    recovery_local_epochs: int = 0
    recovery_fraction_train: float = 0.0
    recovery_layerwise_rounds: int = 0
    recovery_lr_warmup_rounds: int = 0
    recovery_distill_weight: float = 0.0
    recovery_distill_temperature: float = 2.0
    identify_by: str = "partition-id"
    dataset: str = "digits"
    data_dir: str = ""
    train_subset: int = 0
    test_subset: int = 0
    model: str = "cnn"
    partitioner: str = "iid"
    dirichlet_alpha: float = 0.5
    val_fraction: float = 0.1
    local_epochs: int = 2
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.9
    seed: int = 0
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    backdoor_clients: tuple[str, ...] = ()
    backdoor_fraction: float = 0.4
    backdoor_target: int = 0
    backdoor_trigger_size: int = 2
    # clients a share of whose samples carry a wrong label (not_flower/task/mislabel.py)
    mislabel_clients: tuple[str, ...] = ()
    mislabel_fraction: float = 0.3
    style_clients: tuple[str, ...] = ()
    # canaries a client plants and keeps (not_flower/task/canary.py)
    canary_clients: tuple[str, ...] = ()
    canary_count: int = 16
    canary_seed: int = 0
    init_checkpoint: str = ""
    request_dir: str = ""
    resume: bool = False
    overwrite: bool = False
    audit_log: str = ""
    stop_tolerance: float = 0.02
    stop_plateau_window: int = 3
    stop_plateau_min_delta: float = 0.005
    stop_min_rounds: int = 5
    recovery_run_to_cap: bool = False
    max_empty_rounds: int = 3
    torch_threads: int = 1
    eval_recovery_rounds: tuple[str, ...] = ()
    out_dir: str = ""
    # baselines PGD, FedEraser, FUKD: see strategies/pgd.py, federaser.py, fukd.py
    pgd_epochs: int = 5
    pgd_lr: float = 0.01
    pgd_radius_divisor: float = 3.0
    pgd_stop_accuracy: float = 0.2
    retain_interval: int = 1
    calibration_ratio: float = 0.5
    server_data_fraction: float = 0.0
    fukd_epochs: int = 5
    fukd_temperature: float = 2.0
    # per-example membership inference (LiRA): 0 reference models = off
    mia_reference_models: int = 0
    mia_reference_epochs: int = 0
    mia_cache_dir: str = ""

    @property
    def unlearn_clients(self) -> tuple[str, ...]:
        """Every client named in ``unlearn-clients`` (all requests of a sequence)."""
        return tuple(dict.fromkeys(c for group in self.unlearn_groups for c in group))

    @property
    def num_requests(self) -> int:
        """Requests the run config schedules (``unlearn-clients="0;3"`` is two)."""
        return len(self.unlearn_groups)

    def request_round(self, index: int) -> int:
        """Round before which the ``index``-th scheduled request applies (1-based rounds)."""
        if not REGISTRY[self.method].recovers:  # Retrain: the targets are out from round 1
            return 1
        return self.num_train_rounds + index * self.recovery_rounds + 1

    @property
    def total_rounds(self) -> int:
        """Rounds of the whole run.

        ``not``/``ft``: ``num-train-rounds + recovery-rounds`` (a request made during the
        run, from ``request-dir`` or a ``forget-me`` node, gets the rounds left after it);
        ``retrain``: as many rounds as the original training, without the targets.
        """
        if not REGISTRY[self.method].recovers:
            return self.num_train_rounds
        return self.num_train_rounds + self.recovery_rounds * max(1, self.num_requests)


def _key(name: str) -> str:
    return {"unlearn_groups": "unlearn-clients"}.get(name, name.replace("_", "-"))


def _as_groups(key: str, value) -> tuple[tuple[str, ...], ...]:
    """``"0,3;5"`` -> ``(("0", "3"), ("5",))``: requests in sequence, separated by ``;``."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(
            f"{key} must be a comma-separated list such as '0,3' (';' separates "
            f"requests in sequence), got {value!r}"
        )
    groups = []
    for part in str(value).split(";"):
        group = _as_list(key, part)
        if group:
            groups.append(group)
        elif part.strip() == "" and ";" in str(value):
            raise ConfigError(f"{key}: empty request in sequence {value!r}")
    return tuple(groups)


def _as_list(key: str, value) -> tuple[str, ...]:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{key} must be a comma-separated list such as '0,3', got {value!r}")
    items = [v.strip() for v in str(value).split(",")]
    return tuple(dict.fromkeys(v for v in items if v))


def _share(get: Callable[[str, Any], Any], d: RunConfig, key: str) -> float:
    """A share in [0, 1] read from the run config (default: ``d``'s)."""
    value = _as_float(key, get(key, getattr(d, key.replace("-", "_"))))
    return _in_unit(key, value, low_open=False)


def _as_int(key: str, value, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    number = int(number)
    if minimum is not None and number < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {number}")
    return number


def _as_float(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return number


def _as_bool(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _choice(key: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"unknown {key} {value!r}; choose one of: {', '.join(allowed)}")
    return value


def _in_unit(key: str, value: float, *, low_open: bool, high_open: bool = False) -> float:
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ConfigError(f"{key} must be in {interval}, got {value}")
    return value


def parse_run_config(run_config: Mapping) -> RunConfig:
    """Validate Flower's run config and return a :class:`RunConfig`.

    Parameters
    ----------
    run_config : Mapping
        ``context.run_config`` (keys with dashes). Missing keys take the defaults.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        For an unknown key or a value out of range; the message names both.
    """
    known = {_key(f.name): f for f in fields(RunConfig)}
    unknown = sorted(set(run_config) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown run-config key(s) {unknown}; allowed: {', '.join(sorted(known))}"
        )
    raw = {k: run_config[k] for k in run_config}
    d = RunConfig()
    get = lambda k, default: raw.get(k, default)  # noqa: E731
    cfg = RunConfig(**_run_settings(get, d), **_baseline_settings(get, d))
    _check_run_config(cfg)
    return cfg


def _run_settings(get: Callable[[str, Any], Any], d: RunConfig) -> dict:
    """The settings of the federation, data, training, request and outputs, checked one by one.

    Parameters
    ----------
    get : Callable
        ``get(key, default)``: the run-config value of ``key`` (with dashes), or ``default``.
    d : RunConfig
        The defaults.

    Returns
    -------
    dict
        :class:`RunConfig` field -> value.

    Raises
    ------
    ConfigError
        For a value out of range; the message names the key.
    """
    return dict(
        method=_choice("method", get("method", d.method), METHODS),
        num_train_rounds=_as_int(
            "num-train-rounds",
            get("num-train-rounds", d.num_train_rounds),
            0 if str(get("init-checkpoint", "")).strip() else 1,
        ),
        **_unlearning_settings(get, d),
        identify_by=str(get("identify-by", d.identify_by)).strip(),
        dataset=_choice("dataset", get("dataset", d.dataset), DATASETS),
        data_dir=str(get("data-dir", d.data_dir)),
        train_subset=_as_int("train-subset", get("train-subset", d.train_subset), 0),
        test_subset=_as_int("test-subset", get("test-subset", d.test_subset), 0),
        model=_choice("model", get("model", d.model), MODELS),
        partitioner=_choice("partitioner", get("partitioner", d.partitioner), PARTITIONERS),
        dirichlet_alpha=_as_float("dirichlet-alpha", get("dirichlet-alpha", d.dirichlet_alpha)),
        val_fraction=_in_unit(
            "val-fraction",
            _as_float("val-fraction", get("val-fraction", d.val_fraction)),
            low_open=False,
            high_open=True,
        ),
        local_epochs=_as_int("local-epochs", get("local-epochs", d.local_epochs), 1),
        batch_size=_as_int("batch-size", get("batch-size", d.batch_size), 1),
        lr=_as_float("lr", get("lr", d.lr)),
        momentum=_in_unit(
            "momentum",
            _as_float("momentum", get("momentum", d.momentum)),
            low_open=False,
            high_open=True,
        ),
        seed=_as_int("seed", get("seed", d.seed), 0),
        fraction_train=_in_unit(
            "fraction-train",
            _as_float("fraction-train", get("fraction-train", d.fraction_train)),
            low_open=True,
        ),
        fraction_evaluate=_share(get, d, "fraction-evaluate"),
        backdoor_clients=_as_list("backdoor-clients", get("backdoor-clients", "")),
        backdoor_fraction=_share(get, d, "backdoor-fraction"),
        backdoor_target=_as_int("backdoor-target", get("backdoor-target", d.backdoor_target), 0),
        backdoor_trigger_size=_as_int(
            "backdoor-trigger-size", get("backdoor-trigger-size", d.backdoor_trigger_size), 1
        ),
        mislabel_clients=_as_list("mislabel-clients", get("mislabel-clients", "")),
        mislabel_fraction=_share(get, d, "mislabel-fraction"),
        style_clients=_as_list("style-clients", get("style-clients", "")),
        canary_clients=_as_list("canary-clients", get("canary-clients", "")),
        canary_count=_as_int("canary-count", get("canary-count", d.canary_count), 1),
        canary_seed=_as_int("canary-seed", get("canary-seed", d.canary_seed), 0),
        init_checkpoint=str(get("init-checkpoint", d.init_checkpoint)).strip(),
        request_dir=str(get("request-dir", d.request_dir)).strip(),
        resume=_as_bool("resume", get("resume", d.resume)),
        overwrite=_as_bool("overwrite", get("overwrite", d.overwrite)),
        audit_log=str(get("audit-log", d.audit_log)).strip(),
        **_stopping_settings(get, d),
        max_empty_rounds=_as_int(
            "max-empty-rounds", get("max-empty-rounds", d.max_empty_rounds), 0
        ),
        torch_threads=_as_int("torch-threads", get("torch-threads", d.torch_threads), 1),
        eval_recovery_rounds=_as_list("eval-recovery-rounds", get("eval-recovery-rounds", ""))
        if get("eval-recovery-rounds", "") != ""
        else (),
        out_dir=str(get("out-dir", d.out_dir)),
    )


def _stopping_settings(get: Callable[[str, Any], Any], d: RunConfig) -> dict:
    """The stopping rule's settings (:mod:`strategies.stopping`) and ``recovery-run-to-cap``.

    Parameters and returns as :func:`_run_settings` (part of it).
    """
    return dict(
        stop_tolerance=_in_unit(
            "stop-tolerance",
            _as_float("stop-tolerance", get("stop-tolerance", d.stop_tolerance)),
            low_open=False,
        ),
        stop_plateau_window=_as_int(
            "stop-plateau-window", get("stop-plateau-window", d.stop_plateau_window), 0
        ),
        stop_plateau_min_delta=_in_unit(
            "stop-plateau-min-delta",
            _as_float(
                "stop-plateau-min-delta", get("stop-plateau-min-delta", d.stop_plateau_min_delta)
            ),
            low_open=False,
        ),
        stop_min_rounds=_as_int("stop-min-rounds", get("stop-min-rounds", d.stop_min_rounds), 0),
        recovery_run_to_cap=_as_bool(
            "recovery-run-to-cap", get("recovery-run-to-cap", d.recovery_run_to_cap)
        ),
    )


def _unlearning_settings(get: Callable[[str, Any], Any], d: RunConfig) -> dict:
    """The settings of the unlearning request, the negation and the recovery.

    Parameters and returns as :func:`_run_settings` (part of it, checked in the same order).
    """
    return dict(
        unlearn_groups=_as_groups("unlearn-clients", get("unlearn-clients", "0")),
        unlearn_mode=_choice("unlearn-mode", get("unlearn-mode", d.unlearn_mode), UNLEARN_MODES),
        unlearn_classes=_as_list("unlearn-classes", get("unlearn-classes", ""))
        if get("unlearn-classes", "") != ""
        else (),
        unlearn_samples=_as_list("unlearn-samples", get("unlearn-samples", ""))
        if get("unlearn-samples", "") != ""
        else (),
        recovery_rounds=_as_int("recovery-rounds", get("recovery-rounds", d.recovery_rounds), 0),
        negate_layers=str(get("negate-layers", d.negate_layers)).strip(),
        negate_bias=_as_bool("negate-bias", get("negate-bias", d.negate_bias)),
        batchnorm_policy=_choice(
            "batchnorm-policy", get("batchnorm-policy", d.batchnorm_policy), BATCHNORM_POLICIES
        ),
        recovery_server_optimizer=_choice(
            "recovery-server-optimizer",
            get("recovery-server-optimizer", d.recovery_server_optimizer),
            RECOVERY_OPTIMIZERS,
        ),
        recovery_server_momentum=_in_unit(
            "recovery-server-momentum",
            _as_float(
                "recovery-server-momentum",
                get("recovery-server-momentum", d.recovery_server_momentum),
            ),
            low_open=False,
            high_open=True,
        ),
        recovery_server_lr=_as_float(
            "recovery-server-lr", get("recovery-server-lr", d.recovery_server_lr)
        ),
        recovery_lr=_as_float("recovery-lr", get("recovery-lr", d.recovery_lr)),
        recovery_local_epochs=_as_int(
            "recovery-local-epochs", get("recovery-local-epochs", d.recovery_local_epochs), 0
        ),
        recovery_fraction_train=_in_unit(
            "recovery-fraction-train",
            _as_float(
                "recovery-fraction-train",
                get("recovery-fraction-train", d.recovery_fraction_train),
            ),
            low_open=False,
        ),
        **_recovery_schedule(get, d),
    )


def _baseline_settings(get: Callable[[str, Any], Any], d: RunConfig) -> dict:
    """The settings of the baselines (PGD, FedEraser, FUKD) and of the membership attack.

    Parameters and returns as :func:`_run_settings`.
    """
    return dict(
        pgd_epochs=_as_int("pgd-epochs", get("pgd-epochs", d.pgd_epochs), 1),
        pgd_lr=_as_float("pgd-lr", get("pgd-lr", d.pgd_lr)),
        pgd_radius_divisor=_as_float(
            "pgd-radius-divisor", get("pgd-radius-divisor", d.pgd_radius_divisor)
        ),
        pgd_stop_accuracy=_in_unit(
            "pgd-stop-accuracy",
            _as_float("pgd-stop-accuracy", get("pgd-stop-accuracy", d.pgd_stop_accuracy)),
            low_open=False,
        ),
        retain_interval=_as_int("retain-interval", get("retain-interval", d.retain_interval), 1),
        calibration_ratio=_in_unit(
            "calibration-ratio",
            _as_float("calibration-ratio", get("calibration-ratio", d.calibration_ratio)),
            low_open=True,
        ),
        server_data_fraction=_in_unit(
            "server-data-fraction",
            _as_float("server-data-fraction", get("server-data-fraction", d.server_data_fraction)),
            low_open=False,
            high_open=True,
        ),
        fukd_epochs=_as_int("fukd-epochs", get("fukd-epochs", d.fukd_epochs), 1),
        fukd_temperature=_as_float("fukd-temperature", get("fukd-temperature", d.fukd_temperature)),
        mia_reference_models=_as_int(
            "mia-reference-models", get("mia-reference-models", d.mia_reference_models), 0
        ),
        mia_reference_epochs=_as_int(
            "mia-reference-epochs", get("mia-reference-epochs", d.mia_reference_epochs), 0
        ),
        mia_cache_dir=str(get("mia-cache-dir", d.mia_cache_dir)).strip(),
    )


def _check_run_config(cfg: RunConfig) -> None:
    """Check what one key alone cannot tell: the settings together, and a few ranges.

    Raises
    ------
    ConfigError
        For settings that contradict each other or a value out of range.
    """
    for k in cfg.eval_recovery_rounds:
        if not k.isdigit() or not 1 <= int(k) <= cfg.recovery_rounds:
            raise ConfigError(
                f"eval-recovery-rounds entries must be integers in [1, recovery-rounds="
                f"{cfg.recovery_rounds}], got {k!r}"
            )
    bad_canary = [c for c in cfg.canary_clients if not c.isdigit()]
    if bad_canary:
        raise ConfigError(
            f"canary-clients must be partition ids (integers >= 0), got {bad_canary[0]!r}"
        )
    if cfg.total_rounds < 1:
        raise ConfigError("the run has no round: num-train-rounds + recovery-rounds must be >= 1")
    _check_unlearn_mode(cfg)
    _check_baseline(cfg)
    if not REGISTRY[cfg.method].recovers and not cfg.unlearn_clients:
        raise ConfigError(f"method {cfg.method!r} needs unlearn-clients (the clients to leave out)")
    if not REGISTRY[cfg.method].recovers and cfg.init_checkpoint:
        raise ConfigError(
            f"method {cfg.method!r} trains from scratch without the forgotten "
            f"clients; it cannot start from init-checkpoint "
            f"{cfg.init_checkpoint!r} (unset init-checkpoint)"
        )
    if cfg.resume and cfg.overwrite:
        raise ConfigError(
            "resume = true continues the run in out-dir, overwrite = true moves "
            "it aside and starts afresh: set one of them, not both"
        )
    if cfg.mia_reference_models == 1 or cfg.mia_reference_models % 2:
        raise ConfigError(
            f"mia-reference-models must be 0 (attack off) or an even number >= 2 "
            f"(each sample in half of them), got {cfg.mia_reference_models}"
        )
    if cfg.dirichlet_alpha <= 0:
        raise ConfigError(f"dirichlet-alpha must be > 0, got {cfg.dirichlet_alpha}")
    if cfg.lr <= 0:
        raise ConfigError(f"lr must be > 0, got {cfg.lr}")
    _check_recovery(cfg)
    if not cfg.negate_layers:
        raise ConfigError(
            "negate-layers must not be empty; use 'first', a module name, a glob or an index"
        )
    if not cfg.identify_by:
        raise ConfigError(
            "identify-by must be 'partition-id' (or another node-config key), "
            "'supernode-name' or 'node-id'"
        )
    if cfg.unlearn_clients and cfg.recovery_rounds < 1:
        raise ConfigError(
            f"recovery-rounds must be >= 1 when unlearn-clients is set, got {cfg.recovery_rounds}"
        )


def _recovery_schedule(get, d: RunConfig) -> dict:
    """The recovery-schedule keys (layer-wise rounds, lr warm-up, distillation), parsed."""
    return dict(
        recovery_layerwise_rounds=_as_int(
            "recovery-layerwise-rounds",
            get("recovery-layerwise-rounds", d.recovery_layerwise_rounds),
            0,
        ),
        recovery_lr_warmup_rounds=_as_int(
            "recovery-lr-warmup-rounds",
            get("recovery-lr-warmup-rounds", d.recovery_lr_warmup_rounds),
            0,
        ),
        recovery_distill_weight=_as_float(
            "recovery-distill-weight", get("recovery-distill-weight", d.recovery_distill_weight)
        ),
        recovery_distill_temperature=_as_float(
            "recovery-distill-temperature",
            get("recovery-distill-temperature", d.recovery_distill_temperature),
        ),
    )


def _check_recovery(cfg: RunConfig) -> None:
    """The recovery-only settings: server update, client lr, schedules."""
    if cfg.recovery_server_optimizer != "sgd" and cfg.recovery_server_momentum > 0:
        raise ConfigError(
            "recovery-server-momentum applies to recovery-server-optimizer "
            f"'sgd' only; got {cfg.recovery_server_momentum} with "
            f"{cfg.recovery_server_optimizer!r} (its own beta_1 is 0.9)"
        )
    if cfg.recovery_server_lr <= 0:
        raise ConfigError(f"recovery-server-lr must be > 0, got {cfg.recovery_server_lr}")
    if cfg.recovery_lr < 0:
        raise ConfigError(f"recovery-lr must be >= 0 (0: the same as lr), got {cfg.recovery_lr}")
    if cfg.recovery_distill_weight < 0:
        raise ConfigError(
            f"recovery-distill-weight must be >= 0 (0: off), got {cfg.recovery_distill_weight}"
        )
    if cfg.recovery_distill_temperature <= 0:
        raise ConfigError(
            f"recovery-distill-temperature must be > 0, got {cfg.recovery_distill_temperature}"
        )
    scheduled = [
        k
        for k, on in (
            ("recovery-layerwise-rounds", cfg.recovery_layerwise_rounds > 0),
            ("recovery-lr-warmup-rounds", cfg.recovery_lr_warmup_rounds > 0),
            ("recovery-distill-weight", cfg.recovery_distill_weight > 0),
        )
        if on
    ]
    if not REGISTRY[cfg.method].recovers:  # Retrain: no recovery, the keys do not apply
        return
    if cfg.recovery_layerwise_rounds > 0 and not REGISTRY[cfg.method].negates:
        raise ConfigError(
            f"recovery-layerwise-rounds trains the negated tensors first: it "
            f"needs method 'not', got {cfg.method!r} (set it to 0)"
        )
    if scheduled and not REGISTRY[cfg.method].recovery_schedule:
        raise ConfigError(
            f"{', '.join(scheduled)}: supported for methods 'not' and 'ft' only, got {cfg.method!r}"
        )
    if scheduled and cfg.resume:
        raise ConfigError(
            f"{', '.join(scheduled)}: not supported with resume = true (the "
            "schedule and the distillation teacher start at the request)"
        )


def _check_baseline(cfg: RunConfig) -> None:
    """Settings of the baselines (``pgd``, ``federaser``, ``fukd``) and what they need."""
    for key, value in (
        ("pgd-lr", cfg.pgd_lr),
        ("pgd-radius-divisor", cfg.pgd_radius_divisor),
        ("fukd-temperature", cfg.fukd_temperature),
    ):
        if value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")
    method = cfg.method
    if method not in BASELINE_METHODS:
        return
    if cfg.unlearn_mode != "client":
        raise ConfigError(
            f"method {method!r} forgets whole clients only: unlearn-mode must be "
            f"'client', got {cfg.unlearn_mode!r}"
        )
    if cfg.resume:
        raise ConfigError(
            f"resume is supported for methods not, ft and retrain, not {method!r} "
            "(its stored history / last-round models are not part of the saved state)"
        )
    if REGISTRY[method].needs_run_history and cfg.init_checkpoint:
        raise ConfigError(
            f"method {method!r} needs the training history of this run (stored "
            f"client updates); it cannot start from init-checkpoint "
            f"{cfg.init_checkpoint!r}"
        )
    if REGISTRY[method].requirements.server_data and cfg.server_data_fraction <= 0:
        raise ConfigError(
            "method 'fukd' distils on server-side unlabelled data: set "
            "server-data-fraction > 0 (the share of the training set kept by the "
            f"server and given to no client), got {cfg.server_data_fraction}"
        )


def _check_unlearn_mode(cfg: RunConfig) -> None:
    """Consistency of ``unlearn-mode`` with ``unlearn-clients/-classes/-samples``."""
    mode = cfg.unlearn_mode
    if mode == "client":
        if cfg.unlearn_classes or cfg.unlearn_samples:
            raise ConfigError(
                "unlearn-classes / unlearn-samples need unlearn-mode 'class' / "
                f"'instance' (unlearn-mode is {mode!r})"
            )
        if "*" in cfg.unlearn_clients:
            raise ConfigError(
                "unlearn-clients '*' (every client) is only allowed with unlearn-mode 'class'"
            )
        return
    if cfg.num_requests > 1:
        raise ConfigError(
            f"requests in sequence (';' in unlearn-clients) are supported for "
            f"unlearn-mode 'client' only, not {mode!r}"
        )
    if mode == "class":
        if not cfg.unlearn_classes:
            raise ConfigError("unlearn-mode 'class' needs unlearn-classes (e.g. '3' or '3,5')")
        bad = [c for c in cfg.unlearn_classes if not c.isdigit()]
        if bad:
            raise ConfigError(f"unlearn-classes must be class labels (integers >= 0), got {bad}")
        if not cfg.unlearn_clients:
            raise ConfigError(
                "unlearn-mode 'class' needs unlearn-clients: the clients whose "
                "examples to forget, or '*' for the whole federation"
            )
        return
    if cfg.unlearn_classes:
        raise ConfigError("unlearn-classes is for unlearn-mode 'class', not 'instance'")
    if len(cfg.unlearn_clients) != 1 or "*" in cfg.unlearn_clients:
        raise ConfigError(
            f"unlearn-mode 'instance' needs exactly one client in unlearn-clients "
            f"(the one whose samples to forget), got {list(cfg.unlearn_clients)}"
        )
    if not cfg.unlearn_samples:
        raise ConfigError(
            "unlearn-mode 'instance' needs unlearn-samples: sample ids (indices "
            "into the client's training split) or 'poisoned'"
        )
    if cfg.unlearn_samples != ("poisoned",) and not all(s.isdigit() for s in cfg.unlearn_samples):
        raise ConfigError(
            f"unlearn-samples must be 'poisoned' or integers >= 0, got {list(cfg.unlearn_samples)}"
        )


def to_run_config(cfg: RunConfig) -> dict:
    """Inverse of :func:`parse_run_config`: a dict with Flower's dashed keys."""
    out = {}
    for f in fields(RunConfig):
        value = getattr(cfg, f.name)
        if f.name == "unlearn_groups":
            value = ";".join(",".join(group) for group in value)
        elif isinstance(value, tuple):
            value = ",".join(value)
        out[_key(f.name)] = value
    return out
