"""The comparison command: Original, Retrain, FT, NoT and the baselines over seeds and scenarios.

Runs the not-flower app through Flower's simulation engine once per (scenario, seed,
method), one after the other, and writes ``report.json``, ``report.md`` and PNG plots
(see :mod:`not_flower.experiments.report`) to ``--out``::

    python -m not_flower.experiments.compare --out runs/compare --seeds 0 1 2 \\
        --scenarios iid backdoor --methods retrain ft not --recovery-rounds 10 20

(or the console script ``not-flower-compare``). Each run writes its ``results.json`` and
checkpoints to ``<out>/runs/<scenario>/seed<seed>/<method>/``; ``--resume`` reuses the
runs whose ``results.json`` already exists there.

Scenarios
---------
``iid``
    IID partition.
``dirichlet``
    Dirichlet(``--alpha``) label partition.
``backdoor``
    IID; the target client stamps the trigger on ``backdoor.fraction`` (0.4) of its samples
    and relabels them to ``backdoor.target`` (0).
``backdoor-dirichlet``
    The same backdoor on a Dirichlet(``--alpha``) label partition.
``class`` (class-wise forgetting)
    IID; forget the classes ``--forget-classes`` (default 3) of every client
    (``--class-scope federation``, the default: ``unlearn.clients = "*"``) or of the
    target only (``--class-scope client``); the clients keep training on their other
    classes. Retrain = FedAvg from scratch without exactly those samples. The table adds
    the test accuracy on the forgotten class(es) and on the other classes.
``instance`` (instance-wise forgetting)
    The backdoor scenario, but the target asks to forget exactly its poisoned samples
    (``unlearn.mode = "instance"``, ``unlearn.samples = "poisoned"``) and keeps training
    on its clean ones. Retrain = FedAvg from scratch without the poisoned samples.
    ``forget`` is the accuracy on the forgotten samples (with their poisoned labels).

The baselines (pgd, federaser, fukd) forget whole clients only: with ``class`` or
``instance`` the command stops with an error before any run.

Methods
-------
``retrain``
    FedAvg from scratch for ``--train-rounds`` rounds without the target (the gold
    standard); ``--retrain-rounds N`` gives Retrain its own length, e.g. long enough for
    its curve to be flat (a converged reference).
``retrain-recipe`` (a variant, not run by default)
    Retrain with a recovery's recipe, given with ``--set-for retrain-recipe
    fraction-train=0.5 --set-for retrain-recipe local-epochs=2``: the same clients per
    round and local epochs as a recovery, so that a method's saving over it is the
    method's own and not the recipe's. Same length as Retrain (``--retrain-rounds``)
    unless ``--set-for retrain-recipe num-train-rounds=N``.
``ft``, ``not``
    ``--train-rounds`` rounds of FedAvg with everyone, then recovery without the target
    (NoT negates the first layer first); run once with ``recovery.rounds = max(K)`` and
    ``eval-recovery-rounds = K1,K2,...`` so that one run gives a row per K. "Original" (the
    model before unlearning) comes from these runs.
``pgd``, ``federaser``, ``fukd`` (not run by default; ``--methods retrain ft not pgd ...``)
    The baselines NoT is judged against (:mod:`strategies.pgd`,
    :mod:`strategies.federaser`, :mod:`strategies.fukd`): the same training, their own
    unlearning step at the request (reported as X@0), then the same recovery rows X@K.
    ``fukd`` needs server-side data: ``--server-data-fraction`` (default 0.1 when fukd is
    among the methods, else 0) of the training set is kept by the server and given to no
    client, in *every* method's runs, so that all methods' clients hold the same data.

``--share-original`` trains each (scenario, seed)'s original once (a run in
``runs/<scenario>/seed<seed>/original/``) and starts NoT and FT from its final checkpoint
(``init-checkpoint``, ``num-train-rounds = 0``) instead of each training its own; the
baselines, which keep training history, and Retrain still train themselves.

``--dry-run`` does everything up to the first run (the arguments, the plan, every run's
config, :func:`check_args`), prints the runs and stops: nothing is run or written.

A run that fails is reported and the comparison goes on; it is marked failed in
``report.json`` and the command exits with status 1 at the end.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from not_flower.common import progress
from not_flower.common.config import ConfigError, parse_run_config
from not_flower.common.methods import REGISTRY
from not_flower.experiments.plan import (
    CLASS_SCOPES,
    DEFAULT_METHODS,
    DEFAULT_SCENARIOS,
    DEFAULT_SERVER_DATA_FRACTION,
    ORIGINAL,
    OWN_LENGTH,
    RESERVED_KEYS,
    SCENARIOS,
    RunSpec,
    config_file_items,
    original_run_config,
    parse_set,
    parse_value,
    plan_runs,
    run_config_for,
    scenario_config,
    shares_original,
)
from not_flower.experiments.report import METHODS, STEP_METHODS, write_report
from not_flower.experiments.runs import (
    config_mismatch,
    execute,
    stored_results,
    summary_line,
    with_shared_training,
)

__all__ = [
    "SCENARIOS",
    "RESERVED_KEYS",
    "RunSpec",
    "build_parser",
    "parse_args",
    "parse_value",
    "parse_set",
    "scenario_config",
    "run_config_for",
    "original_run_config",
    "shares_original",
    "plan_runs",
    "summary_line",
    "config_mismatch",
    "stored_results",
    "execute",
    "main",
    "check_args",
    "CLASS_SCOPES",
    "DEFAULT_METHODS",
    "DEFAULT_SCENARIOS",
    "DEFAULT_SERVER_DATA_FRACTION",
    "ORIGINAL",
]


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser.

    Returns
    -------
    argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(
        prog="not-flower-compare",
        description="Run Original/Retrain/FT/NoT (and the baselines PGD/FedEraser/FUKD) for "
        "several seeds and scenarios in Flower's simulation engine and write "
        "report.json, report.md and plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--seeds",
        nargs="+",
        type=_int_at_least(0),
        default=[0, 1, 2],
        help="seeds (one run per seed, scenario and method)",
    )
    p.add_argument(
        "--scenarios",
        nargs="+",
        choices=SCENARIOS,
        default=list(DEFAULT_SCENARIOS),
        help="client-wise: iid; dirichlet (label skew, --alpha); backdoor (iid, "
        "the target plants a trigger); backdoor-dirichlet (the same on a Dirichlet partition, "
        "--alpha); mislabel (iid, 30 %% of the target's samples carry "
        "a wrong label only it has); style (iid, the target's images are inverted); "
        "memorise (both); canary (iid, the target plants 32 canaries: random pixels, random "
        "labels, where LiRA can tell). Partial: class (forget "
        "--forget-classes); instance (the target forgets its poisoned "
        "samples)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(DEFAULT_METHODS),
        help="methods to run (Original is reported from the ft/not runs); the "
        "baselines pgd, federaser, fukd run only when named",
    )
    p.add_argument(
        "--num-clients", type=_int_at_least(2), default=10, help="number of clients (SuperNodes)"
    )
    p.add_argument(
        "--target", type=_int_at_least(0), default=0, help="partition id of the client to forget"
    )
    p.add_argument(
        "--train-rounds",
        type=_int_at_least(1),
        default=20,
        help="FedAvg rounds before unlearning (and Retrain's rounds unless --retrain-rounds)",
    )
    p.add_argument(
        "--retrain-rounds",
        type=_int_at_least(1),
        default=None,
        help="Retrain's own length (retrain and retrain-recipe, from scratch): run it to "
        "convergence for a converged reference; default: --train-rounds",
    )
    p.add_argument(
        "--recovery-rounds",
        nargs="+",
        type=_int_at_least(1),
        default=[10, 20],
        help="recovery lengths K reported for ft and not (one run up to max K)",
    )
    p.add_argument(
        "--forget-classes",
        nargs="+",
        type=_int_at_least(0),
        default=[3],
        help="classes to forget in the class scenario",
    )
    p.add_argument(
        "--class-scope",
        choices=CLASS_SCOPES,
        default="federation",
        help="class scenario: forget the classes in every client's data "
        "(federation) or in the target's only (client)",
    )
    p.add_argument(
        "--alpha",
        type=_positive_float,
        default=0.1,
        help="Dirichlet concentration of the dirichlet and backdoor-dirichlet scenarios",
    )
    p.add_argument(
        "--server-data-fraction",
        type=_non_negative_float,
        default=None,
        help="share of the training set the server keeps and no client gets, "
        "applied to every method (fukd distils on it); default "
        f"{DEFAULT_SERVER_DATA_FRACTION} when fukd is among the methods, else 0",
    )
    _add_run_options(p)
    return p


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Add the options of how the runs are made: overrides, the membership attack, reuse,
    resources and logs.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser (:func:`build_parser`).
    """
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="run-config file (a preset such as examples/configs/fmnist-4k-backdoor.toml, "
        "the same file flwr run --run-config takes), applied before every --set",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra run-config override (repeatable), e.g. --set lr=0.02",
    )
    p.add_argument(
        "--set-for",
        dest="method_overrides",
        nargs=2,
        action="append",
        default=[],
        metavar=("METHOD", "KEY=VALUE"),
        help="run-config override for one method only (repeatable; after --set), "
        "e.g. --set-for not-weights-only recovery.local-epochs=2",
    )
    p.add_argument(
        "--mia-reference-models",
        type=_int_at_least(0),
        default=8,
        help="reference models of the per-example membership attack (LiRA; an "
        "even number, trained once per seed and shared by every method, "
        "cached in <out>/mia-reference); 0 turns the attack off",
    )
    p.add_argument(
        "--share-original",
        action="store_true",
        help="train each (scenario, seed)'s original once and start NoT and FT "
        "from its checkpoint (the baselines and Retrain train themselves)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse runs whose results.json already exists and was made with the same run config",
    )
    p.add_argument(
        "--num-cpus",
        type=_int_at_least(1),
        default=2,
        help="CPUs the simulation engine (Ray) may use",
    )
    p.add_argument(
        "--cpus-per-client", type=_positive_float, default=1.0, help="CPUs per ClientApp actor"
    )
    p.add_argument(
        "--gpus-per-client", type=_non_negative_float, default=0.0, help="GPUs per ClientApp actor"
    )
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the arguments and every run's config, print the runs, run nothing",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line (exits with status 2 on a bad value).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        With ``overrides`` turned into a dict (:func:`parse_set`), seeds, scenarios,
        methods and recovery rounds de-duplicated in order (recovery rounds sorted) and
        ``out`` absolute.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.target >= args.num_clients:
        parser.error(
            f"--target {args.target} is not a client: partition ids are 0.."
            f"{args.num_clients - 1} with --num-clients {args.num_clients}"
        )
    try:
        preset = config_file_items(args.config) if args.config else []
        args.overrides = parse_set([*preset, *args.overrides])
    except ValueError as err:
        parser.error(str(err))
    args.seeds = list(dict.fromkeys(args.seeds))
    args.scenarios = list(dict.fromkeys(args.scenarios))
    args.methods = [m for m in METHODS if m in args.methods]
    # methods that work on server-side data (fukd): the registry's requirements say which
    server_data = [m for m in args.methods if REGISTRY[m].requirements.server_data]
    if args.server_data_fraction is None:
        args.server_data_fraction = DEFAULT_SERVER_DATA_FRACTION if server_data else 0.0
    if not args.server_data_fraction < 1:
        parser.error(f"--server-data-fraction must be in [0, 1), got {args.server_data_fraction}")
    if server_data and args.server_data_fraction <= 0:
        parser.error(
            f"--methods {' '.join(server_data)} needs --server-data-fraction > 0 "
            "(the server's unlabelled data)"
        )
    partial = [s for s in args.scenarios if s in ("class", "instance")]
    baselines = [m for m in args.methods if m in STEP_METHODS]
    if partial and baselines:
        parser.error(
            f"--methods {' '.join(baselines)} forget whole clients only; they "
            f"cannot run the scenario(s) {' '.join(partial)} (use retrain ft not)"
        )
    if args.mia_reference_models % 2:
        parser.error(
            f"--mia-reference-models must be 0 (off) or even (each sample is in half "
            f"of them), got {args.mia_reference_models}"
        )
    per_method: dict[str, dict] = {}
    for method, item in args.method_overrides:
        if method not in args.methods:
            parser.error(
                f"--set-for {method} {item}: {method!r} is not among --methods "
                f"({' '.join(args.methods)})"
            )
        # a Retrain variant (retrain-recipe) may have a length of its own
        own = (OWN_LENGTH,) if REGISTRY[method].app_method == "retrain" else ()
        try:
            per_method.setdefault(method, {}).update(parse_set([item], allow=own))
        except ValueError as err:
            parser.error(f"--set-for {method}: {err}")
    args.method_overrides = per_method
    for method in args.methods:  # a variant fixes keys: --set may not say otherwise
        fixed = REGISTRY[method].run_config
        given = {**args.overrides, **per_method.get(method, {})}
        clash = {k: v for k, v in fixed.items() if k in given and given[k] != v}
        if clash:
            parser.error(
                f"--methods {method} fixes "
                + ", ".join(
                    f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in clash.items()
                )
                + "; drop the --set that says otherwise ("
                + ", ".join(f"{k}={given[k]}" for k in clash)
                + ")"
            )
    if args.share_original and "init-checkpoint" in args.overrides:
        parser.error("--share-original sets init-checkpoint itself; drop --set init-checkpoint=...")
    args.forget_classes = sorted(set(args.forget_classes))
    args.recovery_rounds = sorted(set(args.recovery_rounds))
    args.out = args.out.expanduser().resolve()
    return args


def _command_line(argv: Sequence[str]) -> str:
    return shlex.join(["python", "-m", "not_flower.experiments.compare", *argv])


def _check_configs(specs: list[RunSpec]) -> None:
    """Fail fast, before any simulation, on a run config the app would refuse."""
    for spec in specs:
        try:
            parse_run_config(spec.run_config)
        except ConfigError as err:
            build_parser().error(f"{spec.name}: invalid run config: {err}")


def check_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[RunSpec]]:
    """Everything the command does before its first run: parse and validate the arguments,
    plan the runs and check each run's config as the app would (exits with status 2 on a
    bad value). Runs nothing and writes nothing.

    Parameters
    ----------
    argv : sequence of str
        Command-line arguments.

    Returns
    -------
    tuple[argparse.Namespace, list[RunSpec]]
        The parsed arguments and the runs, in the order they would run.
    """
    args = parse_args(argv)
    specs = plan_runs(args)
    _check_configs(specs)
    return args, specs


def _print_plan(specs: list[RunSpec]) -> None:
    """``--dry-run``: one line per run (its name and folder), nothing run."""
    for spec in specs:
        print(f"{spec.name}: {spec.folder}")
    print(f"{len(specs)} run(s) planned; --dry-run: nothing run, nothing written")


def _finish(records: list[dict], out: Path) -> int:
    """Print where the report is and which runs failed; the exit status."""
    failed = [r for r in records if r["status"] == "failed"]
    print(f"report: {out / 'report.md'} and {out / 'report.json'}; plots in {out}")
    if not failed:
        return 0
    print(
        f"{len(failed)} of {len(records)} run(s) failed: "
        + ", ".join(f"{r['scenario']} seed{r['seed']} {r['method']}" for r in failed),
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and write the reports.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when every run succeeded (or ``--dry-run`` printed the plan), 1 when at least one
        failed (argparse errors exit 2).
    """
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel

    argv = list(sys.argv[1:] if argv is None else argv)
    args, specs = check_args(argv)
    if args.dry_run:
        _print_plan(specs)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "dry_run"
    }

    from not_flower.experiments import simulation  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import

    # (imports Flower, whose logger module sets the "flwr" logger's level on import)
    flwr_logger = logging.getLogger("flwr")
    old_level = flwr_logger.level
    if not args.verbose:
        flwr_logger.setLevel(logging.WARNING)
    records: list[dict] = []
    bar = tqdm(specs, unit="run", dynamic_ncols=True, file=sys.stderr)
    try:
        # the run's stage (round, reference model) after its name: the bar never sits still
        with progress.listening(bar.set_postfix_str):
            for spec in bar:
                bar.set_description(spec.name)
                bar.set_postfix_str("starting")  # Ray, the nodes, the data: seconds
                records.append(execute(spec, args, tqdm.write))
    finally:
        bar.close()
        flwr_logger.setLevel(old_level)
        methods = with_shared_training(records)  # the report's rows, without the originals
        if methods:
            write_report(
                methods,
                args.out,
                command=_command_line(argv),
                settings=settings,
                ks=args.recovery_rounds,
            )
    return _finish(records, args.out)


if __name__ == "__main__":
    sys.exit(main())
