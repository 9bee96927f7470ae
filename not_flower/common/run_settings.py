"""Declarations of the run's own settings: the run, the data, local training, evaluation.

The top-level keys of ``[tool.flwr.app.config]``. Part of
:class:`not_flower.common.config.RunConfig` (one declaration per key:
:func:`not_flower.common.settings.setting`).
"""

from __future__ import annotations

from dataclasses import dataclass

from not_flower.common.methods import METHOD_NAMES
from not_flower.common.settings import setting

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
MODELS = ("cnn", "mlp", "resnet18", "vit")
PARTITIONERS = ("iid", "dirichlet")


@dataclass(frozen=True)
class RunSettings:
    """The run, the data, local training and evaluation (top-level keys)."""

    method: str = setting(
        "method",
        "not",
        group="run",
        choices=METHOD_NAMES,
        help=(
            "`not` (negate + recover), `ft` (recover without negation), `retrain` (FedAvg from "
            "scratch without the targets, `num-train-rounds` rounds) or a baseline: `pgd`, "
            "`federaser`, `fukd` ([Methods](guide/methods.md))"
        ),
    )
    num_train_rounds: int = setting(
        "num-train-rounds",
        20,
        group="run",
        help=(
            "FedAvg rounds before the request (for `retrain`: rounds of retraining); >= 1, or 0 "
            "with `init-checkpoint`"
        ),
    )
    identify_by: str = setting(
        "identify-by",
        "partition-id",
        group="run",
        help="`partition-id` (or another node-config key), `supernode-name` or `node-id`",
    )
    seed: int = setting(
        "seed",
        0,
        group="run",
        minimum=0,
        help="seeds the model, the partitions, sampling and local shuffling",
    )
    init_checkpoint: str = setting(
        "init-checkpoint",
        "",
        group="run",
        help=(
            "start from this checkpoint (`checkpoint-*.pt` of an earlier run; its saved data set, "
            "input shape and model must be the run's); with `num-train-rounds = 0` the request "
            "applies at round 1; refused with `method = retrain`"
        ),
    )
    request_dir: str = setting(
        "request-dir",
        "",
        group="run",
        help=(
            "folder watched at every round boundary for request files (see [Deployment and request "
            "channels](guide/deployment.md))"
        ),
    )
    resume: bool = setting(
        "resume",
        False,
        group="run",
        help=(
            "continue an interrupted run from `out-dir/state.json` and `checkpoint-latest.pt`; an "
            "`out-dir` without a run, or with a finished one, is an error (nothing is started or "
            "changed)"
        ),
    )
    overwrite: bool = setting(
        "overwrite",
        False,
        group="run",
        help=(
            "start afresh in an `out-dir` that holds another run's files: they are **moved** (never"
            " deleted) to `out-dir/previous-<UTC time>/` before training. Without `resume` or "
            "`overwrite` such an `out-dir` is refused before any training; `resume` and `overwrite`"
            " exclude each other"
        ),
    )
    audit_log: str = setting(
        "audit-log",
        "",
        group="run",
        help=(
            "hash-chained log the records of forgetting are appended to (default "
            "`out-dir/unlearning-log.jsonl`)"
        ),
    )
    max_empty_rounds: int = setting(
        "max-empty-rounds",
        3,
        group="run",
        minimum=0,
        help=(
            "a round in which no train reply is aggregated (every one failed or was rejected) is "
            "logged as an error; this many in a row stop the run with an error naming the rounds "
            "and each node's reason; 0 = never stop"
        ),
    )
    torch_threads: int = setting(
        "torch-threads",
        1,
        group="run",
        minimum=1,
        help=(
            "CPU threads torch uses in every ClientApp handler and in the ServerApp's own training "
            "and evaluation (reference models, FUKD's distillation); 1 suits the simulation (one "
            "CPU per client) and a busy machine (2 reference models: 12.4 s with 1 thread, 167.7 s "
            "with torch's default on a loaded 2-core machine); a fixed number also keeps results "
            "the same bits from run to run"
        ),
    )
    out_dir: str = setting(
        "out-dir",
        "",
        group="run",
        strip=False,
        help=(
            "absolute output folder (relative paths are under `~`; default "
            "`~/not-flower-runs/<time>-<run id>`). The ServerApp runs in the SuperLink's working "
            "directory, so use absolute paths"
        ),
    )
    dataset: str = setting(
        "dataset",
        "digits",
        group="data",
        choices=DATASETS,
        help="`digits`, `mnist`, `fashion-mnist`, `cifar10`, `cifar100`",
    )
    data_dir: str = setting(
        "data-dir",
        "",
        group="data",
        strip=False,
        help=(
            "where torchvision data sets are (default `~/.cache/not-flower/data`; for "
            "`fashion-mnist` then Debian's `/usr/share/datasets/fashion-mnist`)"
        ),
    )
    train_subset: int = setting(
        "train-subset",
        0,
        group="data",
        minimum=0,
        help=(
            "use a fixed stratified random subset of this many training images (same for every "
            "seed; 0 = all); the test set stays whole"
        ),
    )
    test_subset: int = setting(
        "test-subset",
        0,
        group="data",
        minimum=0,
        help=(
            "evaluate on a fixed stratified random subset of this many test images (same for every "
            "seed; 0 = all); the triggered test set for ASR is built from it"
        ),
    )
    model: str = setting(
        "model",
        "cnn",
        group="data",
        choices=MODELS,
        help="`cnn`, `mlp`, `resnet18`, `vit`",
    )
    partitioner: str = setting(
        "partitioner",
        "iid",
        group="data",
        choices=PARTITIONERS,
        help="`iid` or `dirichlet`",
    )
    dirichlet_alpha: float = setting(
        "dirichlet-alpha",
        0.5,
        group="data",
        above=0,
        help="Dirichlet concentration (> 0; smaller = more skewed)",
    )
    val_fraction: float = setting(
        "val-fraction",
        0.1,
        group="data",
        interval="[0, 1)",
        help="share of each client's partition kept as its validation split, in [0, 1)",
    )
    local_epochs: int = setting(
        "local-epochs",
        2,
        group="training",
        minimum=1,
        help="local epochs per round",
    )
    batch_size: int = setting(
        "batch-size",
        16,
        group="training",
        minimum=1,
        help="local mini-batch size",
    )
    lr: float = setting(
        "lr",
        0.05,
        group="training",
        above=0,
        help="local SGD learning rate",
    )
    momentum: float = setting(
        "momentum",
        0.9,
        group="training",
        interval="[0, 1)",
        help="local SGD momentum (fresh optimizer every round)",
    )
    fraction_train: float = setting(
        "fraction-train",
        1.0,
        group="training",
        interval="(0, 1]",
        help="share of (eligible) nodes sampled for training, in (0, 1]",
    )
    fraction_evaluate: float = setting(
        "fraction-evaluate",
        1.0,
        group="training",
        interval="[0, 1]",
        help="share sampled for federated evaluation, in [0, 1]",
    )
    eval_recovery_rounds: tuple[str, ...] = setting(
        "eval-recovery-rounds",
        (),
        group="evaluation",
        help="comma list of K: also measure the model after K recovery rounds (`recovered@K`)",
    )
