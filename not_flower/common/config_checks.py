"""The checks of a run config that one key alone cannot make: settings together.

Called by :func:`not_flower.common.config.parse_run_config` once every key has been parsed
by its declaration (:mod:`not_flower.common.settings`).
"""

from __future__ import annotations

from typing import Any

from not_flower.common.methods import BASELINE_METHODS, REGISTRY
from not_flower.common.settings import ConfigError

#: A :class:`not_flower.common.config.RunConfig` (not imported: config imports this module).
RunConfig = Any


def check_run_config(cfg: RunConfig) -> None:
    """Check what one key alone cannot tell: the settings together, and a few ranges.

    Raises
    ------
    ConfigError
        For settings that contradict each other or a value out of range.
    """
    least = 0 if cfg.init_checkpoint else 1  # no training only when starting from a checkpoint
    if cfg.num_train_rounds < least:
        raise ConfigError(f"num-train-rounds must be >= {least}, got {cfg.num_train_rounds}")
    for k in cfg.eval_recovery_rounds:
        if not k.isdigit() or not 1 <= int(k) <= cfg.recovery_rounds:
            raise ConfigError(
                f"eval-recovery-rounds entries must be integers in [1, recovery.rounds="
                f"{cfg.recovery_rounds}], got {k!r}"
            )
    bad_canary = [c for c in cfg.canary_clients if not c.isdigit()]
    if bad_canary:
        raise ConfigError(
            f"canary.clients must be partition ids (integers >= 0), got {bad_canary[0]!r}"
        )
    if cfg.total_rounds < 1:
        raise ConfigError("the run has no round: num-train-rounds + recovery.rounds must be >= 1")
    _check_unlearn_mode(cfg)
    _check_baseline(cfg)
    if not REGISTRY[cfg.method].recovers and not cfg.unlearn_clients:
        raise ConfigError(f"method {cfg.method!r} needs unlearn.clients (the clients to leave out)")
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
            f"mia.reference-models must be 0 (attack off) or an even number >= 2 "
            f"(each sample in half of them), got {cfg.mia_reference_models}"
        )
    _check_recovery(cfg)
    if not cfg.negate_layers:
        raise ConfigError(
            "negate.layers must not be empty; use 'first', a module name, a glob or an index"
        )
    if not cfg.identify_by:
        raise ConfigError(
            "identify-by must be 'partition-id' (or another node-config key), "
            "'supernode-name' or 'node-id'"
        )
    if cfg.unlearn_clients and cfg.recovery_rounds < 1:
        raise ConfigError(
            f"recovery.rounds must be >= 1 when unlearn.clients is set, got {cfg.recovery_rounds}"
        )


def _check_recovery(cfg: RunConfig) -> None:
    """The recovery-only settings: server update, client lr, schedules."""
    if cfg.recovery_server_optimizer != "sgd" and cfg.recovery_server_momentum > 0:
        raise ConfigError(
            "recovery.server-momentum applies to recovery.server-optimizer "
            f"'sgd' only; got {cfg.recovery_server_momentum} with "
            f"{cfg.recovery_server_optimizer!r} (its own beta_1 is 0.9)"
        )
    if cfg.recovery_lr < 0:
        raise ConfigError(f"recovery.lr must be >= 0 (0: the same as lr), got {cfg.recovery_lr}")
    if cfg.recovery_distill_weight < 0:
        raise ConfigError(
            f"recovery.distill-weight must be >= 0 (0: off), got {cfg.recovery_distill_weight}"
        )
    scheduled = [
        k
        for k, on in (
            ("recovery.layerwise-rounds", cfg.recovery_layerwise_rounds > 0),
            ("recovery.lr-warmup-rounds", cfg.recovery_lr_warmup_rounds > 0),
            ("recovery.distill-weight", cfg.recovery_distill_weight > 0),
        )
        if on
    ]
    if not REGISTRY[cfg.method].recovers:  # Retrain: no recovery, the keys do not apply
        return
    if cfg.recovery_layerwise_rounds > 0 and not REGISTRY[cfg.method].negates:
        raise ConfigError(
            f"recovery.layerwise-rounds trains the negated tensors first: it "
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
    method = cfg.method
    if method not in BASELINE_METHODS:
        return
    if cfg.unlearn_mode != "client":
        raise ConfigError(
            f"method {method!r} forgets whole clients only: unlearn.mode must be "
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
            "fukd.server-data-fraction > 0 (the share of the training set kept by the "
            f"server and given to no client), got {cfg.server_data_fraction}"
        )


def _check_unlearn_mode(cfg: RunConfig) -> None:
    """Consistency of ``unlearn.mode`` with ``unlearn.clients/-classes/-samples``."""
    mode = cfg.unlearn_mode
    if mode == "client":
        if cfg.unlearn_classes or cfg.unlearn_samples:
            raise ConfigError(
                "unlearn.classes / unlearn.samples need unlearn.mode 'class' / "
                f"'instance' (unlearn.mode is {mode!r})"
            )
        if "*" in cfg.unlearn_clients:
            raise ConfigError(
                "unlearn.clients '*' (every client) is only allowed with unlearn.mode 'class'"
            )
        return
    if cfg.num_requests > 1:
        raise ConfigError(
            f"requests in sequence (';' in unlearn.clients) are supported for "
            f"unlearn.mode 'client' only, not {mode!r}"
        )
    if mode == "class":
        if not cfg.unlearn_classes:
            raise ConfigError("unlearn.mode 'class' needs unlearn.classes (e.g. '3' or '3,5')")
        bad = [c for c in cfg.unlearn_classes if not c.isdigit()]
        if bad:
            raise ConfigError(f"unlearn.classes must be class labels (integers >= 0), got {bad}")
        if not cfg.unlearn_clients:
            raise ConfigError(
                "unlearn.mode 'class' needs unlearn.clients: the clients whose "
                "examples to forget, or '*' for the whole federation"
            )
        return
    if cfg.unlearn_classes:
        raise ConfigError("unlearn.classes is for unlearn.mode 'class', not 'instance'")
    if len(cfg.unlearn_clients) != 1 or "*" in cfg.unlearn_clients:
        raise ConfigError(
            f"unlearn.mode 'instance' needs exactly one client in unlearn.clients "
            f"(the one whose samples to forget), got {list(cfg.unlearn_clients)}"
        )
    if not cfg.unlearn_samples:
        raise ConfigError(
            "unlearn.mode 'instance' needs unlearn.samples: sample ids (indices "
            "into the client's training split) or 'poisoned'"
        )
    if cfg.unlearn_samples != ("poisoned",) and not all(s.isdigit() for s in cfg.unlearn_samples):
        raise ConfigError(
            f"unlearn.samples must be 'poisoned' or integers >= 0, got {list(cfg.unlearn_samples)}"
        )
