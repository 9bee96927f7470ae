"""Declarations of the unlearning settings: the request, the negation, recovery, stopping.

The tables ``unlearn``, ``negate``, ``recovery`` and ``stop`` of
``[tool.flwr.app.config]``. Part of :class:`not_flower.common.config.RunConfig` (one
declaration per key: :func:`not_flower.common.settings.setting`).
"""

from __future__ import annotations

from dataclasses import dataclass

from not_flower.common.settings import setting

UNLEARN_MODES = ("client", "class", "instance")
# Choices the strategies define too (strategies.negation.BATCHNORM_POLICIES,
# strategies.not_strategy.RECOVERY_OPTIMIZERS): repeated here so that parsing a run config
# imports neither torch nor Flower; tests/test_config.py checks that the two agree.
BATCHNORM_POLICIES = ("keep", "negate-running-mean")
RECOVERY_OPTIMIZERS = ("sgd", "adam", "yogi")


@dataclass(frozen=True)
class UnlearningSettings:
    """The unlearning request, the negation, the recovery and the stopping rule."""

    unlearn_groups: tuple[tuple[str, ...], ...] = setting(
        "unlearn.clients",
        (("0",),),
        kind="groups",
        renamed_from="unlearn-clients",
        help=(
            'comma list of clients to forget, named as `identify-by` says; `""` = no unlearning; '
            '`;` separates requests in sequence (`"0;3"`: forget 0, recover, forget 3, recover); '
            "`*` = every client (class-wise only)"
        ),
    )
    unlearn_mode: str = setting(
        "unlearn.mode",
        "client",
        renamed_from="unlearn-mode",
        choices=UNLEARN_MODES,
        help=(
            "`client` (forget whole clients), `class` (forget `unlearn.classes`), `instance` "
            "(forget `unlearn.samples` of one client)"
        ),
    )
    unlearn_classes: tuple[str, ...] = setting(
        "unlearn.classes",
        (),
        renamed_from="unlearn-classes",
        help="class-wise: comma list of class labels",
    )
    unlearn_samples: tuple[str, ...] = setting(
        "unlearn.samples",
        (),
        renamed_from="unlearn-samples",
        help=(
            "instance-wise: comma list of sample ids (indices into the client's training split), or"
            " `poisoned` (the samples its backdoor poisoned)"
        ),
    )
    negate_layers: str = setting(
        "negate.layers",
        "first",
        renamed_from="negate-layers",
        help=(
            "layer selector, see "
            "[Methods](guide/methods.md#which-layers-are-negated-strategiesnegation)"
        ),
    )
    negate_bias: bool = setting(
        "negate.bias",
        True,
        renamed_from="negate-bias",
        help="negate biases with their weights",
    )
    batchnorm_policy: str = setting(
        "negate.batchnorm-policy",
        "keep",
        renamed_from="batchnorm-policy",
        choices=BATCHNORM_POLICIES,
        help="`keep` or `negate-running-mean`",
    )
    recovery_rounds: int = setting(
        "recovery.rounds",
        15,
        renamed_from="recovery-rounds",
        minimum=0,
        help=(
            "recovery rounds after each request; the run has `num-train-rounds + recovery.rounds x "
            "(number of requests)` rounds"
        ),
    )
    recovery_server_optimizer: str = setting(
        "recovery.server-optimizer",
        "sgd",
        renamed_from="recovery-server-optimizer",
        choices=RECOVERY_OPTIMIZERS,
        help=(
            "recovery only: server update, `sgd` (FedAvgM's, below; plain FedAvg with the "
            "defaults), `adam` (Flower's FedAdam: `beta_1 = 0.9`, `beta_2 = 0.99`, `tau = 1e-3`, "
            "`recovery.server-lr` is its eta, e.g. 0.01) or `yogi` (Flower's FedYogi, the same "
            "settings)"
        ),
    )
    recovery_server_momentum: float = setting(
        "recovery.server-momentum",
        0.0,
        renamed_from="recovery-server-momentum",
        interval="[0, 1)",
        help=(
            "recovery only: server momentum (FedAvgM's update `v = m v + (avg - global)`, `global "
            "+= recovery.server-lr x v`), in [0, 1); 0 = plain FedAvg (the paper's). Applies to "
            "`not`, `ft` and the baselines' recovery, never to `retrain`"
        ),
    )
    recovery_server_lr: float = setting(
        "recovery.server-lr",
        1.0,
        renamed_from="recovery-server-lr",
        above=0,
        help="recovery only: server learning rate of that update (> 0)",
    )
    recovery_lr: float = setting(
        "recovery.lr",
        0.0,
        renamed_from="recovery-lr",
        help="recovery only: clients' SGD learning rate (sent in the train config); 0 = `lr`",
    )
    recovery_local_epochs: int = setting(
        "recovery.local-epochs",
        0,
        renamed_from="recovery-local-epochs",
        minimum=0,
        help="recovery only: local epochs per recovery round; 0 = `local-epochs`",
    )
    recovery_fraction_train: float = setting(
        "recovery.fraction-train",
        0.0,
        renamed_from="recovery-fraction-train",
        interval="[0, 1]",
        help=(
            "recovery only: fraction of the retained clients sampled per recovery round; 0 = "
            "`fraction-train`"
        ),
    )
    recovery_layerwise_rounds: int = setting(
        "recovery.layerwise-rounds",
        0,
        renamed_from="recovery-layerwise-rounds",
        minimum=0,
        help=(
            "method `not` only: for the first K recovery rounds after each request the clients "
            "train only the negated tensors (the other parameters frozen; the train config's "
            "`train-keys` names them) and send back only those; the server averages them weighted "
            "by `num-examples` (FedAvg) into the global model, every other tensor staying as it "
            "was; then normal recovery (with the server update chosen above). Bytes up are counted "
            "from the partial replies; a reply with other keys is rejected. 0 = off"
        ),
    )
    recovery_lr_warmup_rounds: int = setting(
        "recovery.lr-warmup-rounds",
        0,
        renamed_from="recovery-lr-warmup-rounds",
        minimum=0,
        help=(
            "methods `not`/`ft`: linear client learning-rate warm-up over the first W recovery "
            "rounds after each request: recovery round r (1-based) trains with `base x r / W` for r"
            " < W, then `base`, where `base` = `recovery.lr`, or `lr` when that is 0 (sent as the "
            "train config's `lr`). 0 = off. These three keys are ignored by `retrain` and refused "
            "for the baselines and with `resume = true`"
        ),
    )
    recovery_distill_weight: float = setting(
        "recovery.distill-weight",
        0.0,
        renamed_from="recovery-distill-weight",
        help=(
            "methods `not`/`ft`: w >= 0; during recovery the clients minimise cross-entropy on "
            "their own labels + `w x T^2 x KL(teacher ‖ student)` on softened outputs of their own "
            "inputs, the teacher being the global model just before the request (before negation; "
            "in eval mode), sent with every recovery train message (counted in bytes down). The "
            "targets' data is never used. 0 = off"
        ),
    )
    recovery_distill_temperature: float = setting(
        "recovery.distill-temperature",
        2.0,
        renamed_from="recovery-distill-temperature",
        above=0,
        help="T of that distillation (> 0)",
    )
    recovery_run_to_cap: bool = setting(
        "recovery.run-to-cap",
        False,
        renamed_from="recovery-run-to-cap",
        help=(
            "false: when the stopping rule fired for the last request and none is pending, the run "
            "ends there (results.json: stopping.rounds_saved against recovery.rounds); true: run "
            "all recovery.rounds and only report the stop (comparisons set it)"
        ),
    )
    stop_tolerance: float = setting(
        "stop.tolerance",
        0.02,
        renamed_from="stop-tolerance",
        interval="[0, 1]",
        help=(
            "stopping rule tolerance (fraction; 0.02 = 2 points): a request's recovery stops at the"
            " first recovery round whose retained clients' validation accuracy is within this of "
            "its value before the request, or at a plateau (below)"
        ),
    )
    stop_plateau_window: int = setting(
        "stop.plateau-window",
        3,
        renamed_from="stop-plateau-window",
        minimum=0,
        help=(
            "plateau test of the stopping rule: it also fires when the best retained validation "
            "accuracy of the last this many recovery rounds is at most stop.plateau-min-delta above"
            " the best before them; 0 = off (tolerance test only)"
        ),
    )
    stop_plateau_min_delta: float = setting(
        "stop.plateau-min-delta",
        0.005,
        renamed_from="stop-plateau-min-delta",
        interval="[0, 1]",
        help=(
            "least improvement (fraction; 0.005 = 0.5 points) over stop.plateau-window rounds that "
            "is not a plateau"
        ),
    )
    stop_min_rounds: int = setting(
        "stop.min-rounds",
        5,
        renamed_from="stop-min-rounds",
        minimum=0,
        help="recovery rounds a request needs before the plateau test may fire",
    )
