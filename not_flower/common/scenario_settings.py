"""Declarations of the scenario and baseline settings.

The tables ``backdoor``, ``mislabel``, ``style`` and ``canary`` (what some clients do to
their data), ``pgd``, ``federaser`` and ``fukd`` (the baselines) and ``mia`` (the
per-example membership attack) of ``[tool.flwr.app.config]``. Part of
:class:`not_flower.common.config.RunConfig` (one declaration per key:
:func:`not_flower.common.settings.setting`).
"""

from __future__ import annotations

from dataclasses import dataclass

from not_flower.common.settings import setting


@dataclass(frozen=True)
class ScenarioSettings:
    """The data scenarios, the baselines and the membership attack."""

    backdoor_clients: tuple[str, ...] = setting(
        "backdoor.clients",
        (),
        renamed_from="backdoor-clients",
        help=(
            "clients that stamp a square trigger (`backdoor.trigger-size`) on part of their "
            "training data"
        ),
    )
    backdoor_fraction: float = setting(
        "backdoor.fraction",
        0.4,
        renamed_from="backdoor-fraction",
        interval="[0, 1]",
        help="share of their samples they poison, in [0, 1]",
    )
    backdoor_target: int = setting(
        "backdoor.target",
        0,
        renamed_from="backdoor-target",
        minimum=0,
        help="label the poisoned samples get",
    )
    backdoor_trigger_size: int = setting(
        "backdoor.trigger-size",
        2,
        renamed_from="backdoor-trigger-size",
        minimum=1,
        help=(
            "side in pixels of the square trigger stamped in a corner (2 suits the 8x8 digits; on "
            "28x28 Fashion-MNIST a 2x2 square is hardly learned, use 4)"
        ),
    )
    mislabel_clients: tuple[str, ...] = setting(
        "mislabel.clients",
        (),
        renamed_from="mislabel-clients",
        help=(
            "clients a share of whose training samples carry a wrong label, drawn at random among "
            "the other classes (the `mislabel` comparison scenario: data no other client covers, "
            "which a model fits only by memorising it)"
        ),
    )
    mislabel_fraction: float = setting(
        "mislabel.fraction",
        0.3,
        renamed_from="mislabel-fraction",
        interval="[0, 1]",
        help="share of their samples they mislabel, in [0, 1]",
    )
    style_clients: tuple[str, ...] = setting(
        "style.clients",
        (),
        renamed_from="style-clients",
        help=(
            "clients whose images are all inverted (1 - pixel value, labels kept): a style no other"
            " client has (the `style` comparison scenario, where a membership test can tell)"
        ),
    )
    canary_clients: tuple[str, ...] = setting(
        "canary.clients",
        (),
        renamed_from="canary-clients",
        help=(
            "partition ids of clients that plant canaries: `canary.count` random black-and-white "
            "images with random labels, generated from the client's canary seed, added to their "
            "training data; as many more from the same seed are kept out, so the client can test a "
            "model later (`python -m not_flower.evaluation.canary_cli check`; "
            "[Evaluation](guide/evaluation.md#the-departing-clients-own-check-canaries)). The "
            "harness puts the test of every measured model in `results.json` and the record of "
            "forgetting"
        ),
    )
    canary_count: int = setting(
        "canary.count",
        16,
        renamed_from="canary-count",
        minimum=1,
        help="in-canaries each of those clients trains on (>= 1); it keeps as many out-canaries",
    )
    canary_seed: int = setting(
        "canary.seed",
        0,
        renamed_from="canary-seed",
        minimum=0,
        help=(
            "simulation only: the clients' canary seeds derive from it and the partition id (a real"
            " client keeps its own secret seed)"
        ),
    )
    pgd_epochs: int = setting(
        "pgd.epochs",
        5,
        renamed_from="pgd-epochs",
        minimum=1,
        help="PGD: epochs of gradient ascent",
    )
    pgd_lr: float = setting(
        "pgd.lr",
        0.01,
        renamed_from="pgd-lr",
        above=0,
        help="PGD: ascent learning rate (SGD, momentum = `momentum`)",
    )
    pgd_radius_divisor: float = setting(
        "pgd.radius-divisor",
        3.0,
        renamed_from="pgd-radius-divisor",
        above=0,
        help="PGD: radius² = mean squared distance of the reference to 10 random models ÷ this",
    )
    pgd_stop_accuracy: float = setting(
        "pgd.stop-accuracy",
        0.2,
        renamed_from="pgd-stop-accuracy",
        interval="[0, 1]",
        help="PGD: stop the ascent once the target's training accuracy is below this",
    )
    retain_interval: int = setting(
        "federaser.retain-interval",
        1,
        renamed_from="retain-interval",
        minimum=1,
        help="FedEraser: keep the updates of rounds 1, 1+k, 1+2k, ...",
    )
    calibration_ratio: float = setting(
        "federaser.calibration-ratio",
        0.5,
        renamed_from="calibration-ratio",
        interval="(0, 1]",
        help="FedEraser: calibration epochs = ⌈ratio × `local-epochs`⌉, in (0, 1]",
    )
    server_data_fraction: float = setting(
        "fukd.server-data-fraction",
        0.0,
        renamed_from="server-data-fraction",
        interval="[0, 1)",
        help=(
            "share of the training set the server keeps and no client gets (FUKD needs > 0), in [0,"
            " 1)"
        ),
    )
    fukd_epochs: int = setting(
        "fukd.epochs",
        5,
        renamed_from="fukd-epochs",
        minimum=1,
        help="FUKD: distillation epochs",
    )
    fukd_temperature: float = setting(
        "fukd.temperature",
        2.0,
        renamed_from="fukd-temperature",
        above=0,
        help="FUKD: distillation temperature",
    )
    mia_reference_models: int = setting(
        "mia.reference-models",
        0,
        renamed_from="mia-reference-models",
        minimum=0,
        help=(
            "per-example membership attack (LiRA): number of reference models, even; 0 = off (see "
            "[Evaluation](guide/evaluation.md#per-example-membership-inference))"
        ),
    )
    mia_reference_epochs: int = setting(
        "mia.reference-epochs",
        0,
        renamed_from="mia-reference-epochs",
        minimum=0,
        help="epochs of each reference model; 0 = `num-train-rounds x local-epochs`",
    )
    mia_cache_dir: str = setting(
        "mia.cache-dir",
        "",
        renamed_from="mia-cache-dir",
        help="where reference models are cached (default `~/.cache/not-flower/mia-reference`)",
    )
