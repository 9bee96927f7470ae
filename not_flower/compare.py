"""The comparison command: Original, Retrain, FT, NoT and the baselines over seeds and scenarios.

Runs the not-flower app through Flower's simulation engine once per (scenario, seed,
method), one after the other, and writes ``report.json``, ``report.md`` and PNG plots
(see :mod:`not_flower.report`) to ``--out``::

    python -m not_flower.compare --out runs/compare --seeds 0 1 2 \\
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
    IID; the target client stamps the trigger on ``backdoor-fraction`` (0.4) of its samples
    and relabels them to ``backdoor-target`` (0).
``class`` (class-wise forgetting)
    IID; forget the classes ``--forget-classes`` (default 3) of every client
    (``--class-scope federation``, the default: ``unlearn-clients = "*"``) or of the
    target only (``--class-scope client``); the clients keep training on their other
    classes. Retrain = FedAvg from scratch without exactly those samples. The table adds
    the test accuracy on the forgotten class(es) and on the other classes.
``instance`` (instance-wise forgetting)
    The backdoor scenario, but the target asks to forget exactly its poisoned samples
    (``unlearn-mode = "instance"``, ``unlearn-samples = "poisoned"``) and keeps training
    on its clean ones. Retrain = FedAvg from scratch without the poisoned samples.
    ``forget`` is the accuracy on the forgotten samples (with their poisoned labels).

The baselines (pgd, federaser, fukd) forget whole clients only: with ``class`` or
``instance`` the command stops with an error before any run.

Methods
-------
``retrain``
    FedAvg from scratch for ``--train-rounds`` rounds without the target (the gold
    standard).
``ft``, ``not``
    ``--train-rounds`` rounds of FedAvg with everyone, then recovery without the target
    (NoT negates the first layer first); run once with ``recovery-rounds = max(K)`` and
    ``eval-recovery-rounds = K1,K2,...`` so that one run gives a row per K. "Original" (the
    model before unlearning) comes from these runs.
``pgd``, ``federaser``, ``fukd`` (not run by default; ``--methods retrain ft not pgd ...``)
    The baselines NoT is judged against (:mod:`strategies.pgd`,
    :mod:`strategies.federaser`, :mod:`strategies.fukd`): the same training, their own
    unlearning step at the request (reported as X@0), then the same recovery rows X@K.
    ``fukd`` needs server-side data: ``--server-data-fraction`` (default 0.1 when fukd is
    among the methods, else 0) of the training set is kept by the server and given to no
    client, in *every* method's runs, so that all methods' clients hold the same data.

A run that fails is reported and the comparison goes on; it is marked failed in
``report.json`` and the command exits with status 1 at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from .config import ConfigError, RunConfig, parse_run_config, to_run_config
from .outdir import CONTROL_KEYS
from .methods import REGISTRY
from .report import METHOD_NAMES, METHODS, RECOVERY_METHODS, STEP_METHODS, write_report

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
    "plan_runs",
    "summary_line",
    "config_mismatch",
    "main",
]

SCENARIOS: tuple[str, ...] = ("iid", "dirichlet", "backdoor", "class", "instance")
#: Scenarios run when ``--scenarios`` is not given (the client-wise ones).
DEFAULT_SCENARIOS: tuple[str, ...] = ("iid", "dirichlet", "backdoor")
#: Class-wise scope: every client's samples of the classes, or the target's only.
CLASS_SCOPES: tuple[str, ...] = ("federation", "client")
#: Methods run when ``--methods`` is not given: all but the baselines (from the registry).
DEFAULT_METHODS: tuple[str, ...] = tuple(m for m in METHODS if m not in STEP_METHODS)
#: ``--server-data-fraction`` when fukd runs and the option is not given.
DEFAULT_SERVER_DATA_FRACTION = 0.1
#: Run-config keys this command sets itself; ``--set`` may not override them.
RESERVED_KEYS: dict[str, str] = {
    "out-dir": "--out",
    "seed": "--seeds",
    "method": "--methods",
    "num-train-rounds": "--train-rounds",
    "recovery-rounds": "--recovery-rounds",
    "eval-recovery-rounds": "--recovery-rounds",
    "unlearn-clients": "--target",
    "partitioner": "--scenarios",
    "dirichlet-alpha": "--alpha",
    "backdoor-clients": "--scenarios backdoor",
    "unlearn-mode": "--scenarios class / instance",
    "unlearn-classes": "--forget-classes",
    "unlearn-samples": "--scenarios instance",
    "server-data-fraction": "--server-data-fraction",
}


@dataclass(frozen=True)
class RunSpec:
    """One simulation of the comparison."""

    scenario: str
    seed: int
    method: str
    run_config: dict

    @property
    def name(self) -> str:
        """Short description, e.g. ``"backdoor seed0 NoT"``."""
        return f"{self.scenario} seed{self.seed} {METHOD_NAMES[self.method]}"

    @property
    def folder(self) -> Path:
        """The run's output folder (``out-dir``)."""
        return Path(self.run_config["out-dir"])


# --------------------------------------------------------------------------- #
# arguments
# --------------------------------------------------------------------------- #
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


def parse_value(text: str):
    """Type a ``--set`` value: bool (``true``/``false``), int, float, else the string.

    Parameters
    ----------
    text : str
        The text after ``=``.

    Returns
    -------
    bool, int, float or str
    """
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _known_keys() -> set[str]:
    return {f.name.replace("_", "-") for f in fields(RunConfig)}


def parse_set(items: Sequence[str] | None) -> dict:
    """Parse ``--set key=value`` items into typed run-config overrides.

    Parameters
    ----------
    items : sequence of str or None
        ``"key=value"`` strings.

    Returns
    -------
    dict
        Key -> typed value (:func:`parse_value`); a later item wins over an earlier one.

    Raises
    ------
    ValueError
        For an item without ``=``, an empty key, a key the app does not know, or a key
        this command sets itself (the message names the option to use instead).
    """
    known = _known_keys()
    out: dict = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"--set expects key=value with a key, got {item!r}")
        if key in RESERVED_KEYS:
            raise ValueError(f"--set {key}=...: {key!r} is set by this command; use "
                             f"{RESERVED_KEYS[key]} instead")
        if key not in known:
            raise ValueError(f"--set {item!r}: unknown run-config key {key!r}; known keys: "
                             f"{', '.join(sorted(known - set(RESERVED_KEYS)))}")
        out[key] = parse_value(value)
    return out


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
    p.add_argument("--seeds", nargs="+", type=_int_at_least(0), default=[0, 1, 2],
                   help="seeds (one run per seed, scenario and method)")
    p.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(DEFAULT_SCENARIOS),
                   help="client-wise: iid; dirichlet (label skew, --alpha); backdoor (iid, "
                        "the target plants a trigger). Partial: class (forget "
                        "--forget-classes); instance (the target forgets its poisoned "
                        "samples)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS),
                   help="methods to run (Original is reported from the ft/not runs); the "
                        "baselines pgd, federaser, fukd run only when named")
    p.add_argument("--num-clients", type=_int_at_least(2), default=10,
                   help="number of clients (SuperNodes)")
    p.add_argument("--target", type=_int_at_least(0), default=0,
                   help="partition id of the client to forget")
    p.add_argument("--train-rounds", type=_int_at_least(1), default=20,
                   help="FedAvg rounds before unlearning (and Retrain's rounds)")
    p.add_argument("--recovery-rounds", nargs="+", type=_int_at_least(1), default=[10, 20],
                   help="recovery lengths K reported for ft and not (one run up to max K)")
    p.add_argument("--forget-classes", nargs="+", type=_int_at_least(0), default=[3],
                   help="classes to forget in the class scenario")
    p.add_argument("--class-scope", choices=CLASS_SCOPES, default="federation",
                   help="class scenario: forget the classes in every client's data "
                        "(federation) or in the target's only (client)")
    p.add_argument("--alpha", type=_positive_float, default=0.1,
                   help="Dirichlet concentration of the dirichlet scenario")
    p.add_argument("--server-data-fraction", type=_non_negative_float, default=None,
                   help="share of the training set the server keeps and no client gets, "
                        "applied to every method (fukd distils on it); default "
                        f"{DEFAULT_SERVER_DATA_FRACTION} when fukd is among the methods, else 0")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra run-config override (repeatable), e.g. --set lr=0.02")
    p.add_argument("--mia-reference-models", type=_int_at_least(0), default=8,
                   help="reference models of the per-example membership attack (LiRA; an "
                        "even number, trained once per seed and shared by every method, "
                        "cached in <out>/mia-reference); 0 turns the attack off")
    p.add_argument("--resume", action="store_true",
                   help="reuse runs whose results.json already exists and was made with "
                        "the same run config")
    p.add_argument("--num-cpus", type=_int_at_least(1), default=2,
                   help="CPUs the simulation engine (Ray) may use")
    p.add_argument("--cpus-per-client", type=_positive_float, default=1.0,
                   help="CPUs per ClientApp actor")
    p.add_argument("--gpus-per-client", type=_non_negative_float, default=0.0,
                   help="GPUs per ClientApp actor")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    return p


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
        parser.error(f"--target {args.target} is not a client: partition ids are 0.."
                     f"{args.num_clients - 1} with --num-clients {args.num_clients}")
    try:
        args.overrides = parse_set(args.overrides)
    except ValueError as err:
        parser.error(str(err))
    args.seeds = list(dict.fromkeys(args.seeds))
    args.scenarios = list(dict.fromkeys(args.scenarios))
    args.methods = [m for m in METHODS if m in args.methods]
    # methods that work on server-side data (fukd): the registry's requirements say which
    server_data = [m for m in args.methods if REGISTRY[m].requirements["server_data"]]
    if args.server_data_fraction is None:
        args.server_data_fraction = DEFAULT_SERVER_DATA_FRACTION if server_data else 0.0
    if not args.server_data_fraction < 1:
        parser.error(f"--server-data-fraction must be in [0, 1), got {args.server_data_fraction}")
    if server_data and args.server_data_fraction <= 0:
        parser.error(f"--methods {' '.join(server_data)} needs --server-data-fraction > 0 "
                     "(the server's unlabelled data)")
    partial = [s for s in args.scenarios if s in ("class", "instance")]
    baselines = [m for m in args.methods if m in STEP_METHODS]
    if partial and baselines:
        parser.error(f"--methods {' '.join(baselines)} forget whole clients only; they "
                     f"cannot run the scenario(s) {' '.join(partial)} (use retrain ft not)")
    if args.mia_reference_models % 2:
        parser.error(f"--mia-reference-models must be 0 (off) or even (each sample is in half "
                     f"of them), got {args.mia_reference_models}")
    args.forget_classes = sorted(set(args.forget_classes))
    args.recovery_rounds = sorted(set(args.recovery_rounds))
    args.out = args.out.expanduser().resolve()
    return args


# --------------------------------------------------------------------------- #
# planning
# --------------------------------------------------------------------------- #
def scenario_config(scenario: str, *, alpha: float = 0.1, target: int = 0,
                    classes: Sequence[int] = (3,), class_scope: str = "federation") -> dict:
    """Run-config keys that define a scenario.

    Parameters
    ----------
    scenario : str
        One of :data:`SCENARIOS`.
    alpha : float (default: 0.1)
        Dirichlet concentration (``dirichlet`` only).
    target : int (default: 0)
        The client to forget (the poisoner in ``backdoor`` and ``instance``).
    classes : sequence of int (default: (3,))
        Classes to forget (``class`` only).
    class_scope : str (default: "federation")
        ``class`` only: ``"federation"`` forgets every client's samples of ``classes``
        (``unlearn-clients = "*"``), ``"client"`` the target's only.

    Returns
    -------
    dict
        Including ``unlearn-clients``.

    Raises
    ------
    ValueError
        For an unknown scenario.
    """
    backdoor = {"partitioner": "iid", "backdoor-clients": str(target),
                "backdoor-fraction": 0.4, "backdoor-target": 0}
    if scenario == "iid":
        return {"partitioner": "iid", "unlearn-clients": str(target)}
    if scenario == "dirichlet":
        return {"partitioner": "dirichlet", "dirichlet-alpha": float(alpha),
                "unlearn-clients": str(target)}
    if scenario == "backdoor":
        return {**backdoor, "unlearn-clients": str(target)}
    if scenario == "class":
        if class_scope not in CLASS_SCOPES:
            raise ValueError(f"unknown class scope {class_scope!r}; choose one of: "
                             f"{', '.join(CLASS_SCOPES)}")
        if not classes:
            raise ValueError("the class scenario needs at least one class to forget")
        return {"partitioner": "iid", "unlearn-mode": "class",
                "unlearn-classes": ",".join(str(int(c)) for c in classes),
                "unlearn-clients": "*" if class_scope == "federation" else str(target)}
    if scenario == "instance":
        return {**backdoor, "unlearn-mode": "instance", "unlearn-samples": "poisoned",
                "unlearn-clients": str(target)}
    raise ValueError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")


def run_config_for(args: argparse.Namespace, scenario: str, seed: int, method: str) -> dict:
    """The run config of one run (dashed keys, as ``flwr run --run-config`` takes).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (:func:`parse_args`).
    scenario, seed, method
        Which run.

    Returns
    -------
    dict
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    folder = Path(args.out) / "runs" / scenario / f"seed{seed}" / method
    scenario_keys = scenario_config(
        scenario, alpha=args.alpha, target=args.target,
        classes=getattr(args, "forget_classes", (3,)),
        class_scope=getattr(args, "class_scope", "federation"))
    lira = getattr(args, "mia_reference_models", 0)
    cfg = {
        **scenario_keys,
        # the per-example attack: one cache per comparison, shared by all its methods
        **({"mia-reference-models": int(lira),
            "mia-cache-dir": str(Path(args.out) / "mia-reference")} if lira else {}),
        **args.overrides,
        "out-dir": str(folder),
        "seed": int(seed),
        "method": method,
        "num-train-rounds": int(args.train_rounds),
        "unlearn-clients": scenario_keys["unlearn-clients"],
    }
    fraction = getattr(args, "server_data_fraction", 0.0) or 0.0
    if fraction > 0:  # the same for every method: the clients hold the same data
        cfg["server-data-fraction"] = float(fraction)
    if method in RECOVERY_METHODS:
        cfg["recovery-rounds"] = max(args.recovery_rounds)
        cfg["eval-recovery-rounds"] = ",".join(str(k) for k in args.recovery_rounds)
    return cfg


def plan_runs(args: argparse.Namespace) -> list[RunSpec]:
    """Every run, scenario by scenario, seed by seed, Retrain first.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    list[RunSpec]
    """
    return [RunSpec(scenario, seed, method, run_config_for(args, scenario, seed, method))
            for scenario in args.scenarios for seed in args.seeds for method in args.methods]


# --------------------------------------------------------------------------- #
# running
# --------------------------------------------------------------------------- #
def _pct(value) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


def summary_line(spec: RunSpec, results: Mapping, seconds: float | None = None,
                 status: str = "ok") -> str:
    """One line with a finished run's key numbers (for the progress output).

    Parameters
    ----------
    spec : RunSpec
        The run.
    results : Mapping
        Its ``results.json``.
    seconds : float, optional
        Wall time of the run.
    status : str
        ``"ok"`` or ``"resumed"``.

    Returns
    -------
    str
    """
    models = results.get("models", {})
    final = results.get("final") or ("retrained" if "retrained" in models else "recovered")
    m = models.get(final, {})
    parts = [f"test {_pct(m.get('test_acc'))}", f"retain {_pct(m.get('retain_acc'))}",
             f"forget {_pct(m.get('forget_acc'))}", f"MIA {_pct(m.get('mia_efficacy'))}"]
    if "lira_auc" in m:
        parts.append(f"LiRA AUC {_pct(m.get('lira_auc'))} TPR@1%FPR {_pct(m.get('lira_tpr_fpr1'))}")
    if "asr" in m:
        parts.append(f"ASR {_pct(m.get('asr'))}")
    text = f"[{status}] {spec.name}: " + " ".join(parts) + " %"
    costs = results.get("costs") or {}
    cost = costs.get("unlearning_fixed_length") or costs.get("unlearning")
    if cost:
        mb = (cost.get("bytes_down", 0) + cost.get("bytes_up", 0)) / 1e6
        phase = "retraining" if spec.method == "retrain" else "recovery"
        text += (f" | {phase} {cost.get('rounds')} rounds {mb:.2f} MB "
                 f"{cost.get('client_seconds', 0):.1f} client-s")
    stop = (results.get("stopping") or {}).get("chosen_recovery_rounds")
    if spec.method != "retrain" and results.get("stopping"):
        text += f" | stop at {stop if stop is not None else 'none'}"
    if seconds is not None:
        text += f" ({seconds:.0f} s)"
    return text


def config_mismatch(run_config: Mapping, results: Mapping,
                    num_clients: int | None = None) -> str | None:
    """Why a stored ``results.json`` does not belong to ``run_config`` (``None``: it does).

    Parameters
    ----------
    run_config : Mapping
        The planned run config.
    results : Mapping
        A stored ``results.json`` dict (its ``"config"`` is the full run config it ran with).
    num_clients : int, optional
        Planned number of clients, checked against the stored ``num_partitions``.

    Returns
    -------
    str or None
        A message naming the first differing key, or ``None`` when every key agrees.
    """
    stored = results.get("config")
    if not isinstance(stored, Mapping):
        return "the stored results.json has no run config"
    planned = to_run_config(parse_run_config(run_config))
    defaults = to_run_config(RunConfig())
    for key, value in planned.items():
        if key in ("out-dir", *CONTROL_KEYS):
            continue
        if key not in stored:
            if value == defaults.get(key):
                continue  # a key added to the app after that run, planned at its default
            return f"the stored run has no {key!r} (planned {value!r})"
        if stored[key] != value:
            return f"{key} differs (stored {stored[key]!r}, planned {value!r})"
    stored_n = results.get("num_partitions")
    if num_clients is not None and stored_n is not None and int(stored_n) != int(num_clients):
        return f"the stored run had {stored_n} clients (planned {num_clients})"
    return None


def _run_one(spec: RunSpec, args: argparse.Namespace) -> dict:
    from .simulation import simulate  # pylint: disable=import-outside-toplevel

    spec.folder.mkdir(parents=True, exist_ok=True)
    # a run repeated into its folder (failed, or its config changed): the old files are
    # moved to previous-<time>/ there
    return simulate({**spec.run_config, "overwrite": True}, num_supernodes=args.num_clients, num_cpus=args.num_cpus,
                    cpus_per_client=args.cpus_per_client, gpus_per_client=args.gpus_per_client,
                    verbose=args.verbose)


def _command_line(argv: Sequence[str]) -> str:
    return shlex.join(["python", "-m", "not_flower.compare", *argv])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and write the reports.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when every run succeeded, 1 when at least one failed (argparse errors exit 2).
    """
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    specs = plan_runs(args)
    for spec in specs:  # fail fast, before any simulation
        try:
            parse_run_config(spec.run_config)
        except ConfigError as err:
            build_parser().error(f"{spec.name}: invalid run config: {err}")
    args.out.mkdir(parents=True, exist_ok=True)
    command = _command_line(argv)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}

    from . import simulation  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
    # (imports Flower, whose logger module sets the "flwr" logger's level on import)
    flwr_logger = logging.getLogger("flwr")
    old_level = flwr_logger.level
    if not args.verbose:
        flwr_logger.setLevel(logging.WARNING)
    records: list[dict] = []
    bar = tqdm(specs, unit="run", dynamic_ncols=True, file=sys.stderr)
    try:
        for spec in bar:
            bar.set_description(spec.name)
            path = spec.folder / "results.json"
            record = {"scenario": spec.scenario, "seed": spec.seed, "method": spec.method,
                      "status": "ok", "error": None, "path": str(path), "seconds": None,
                      "results": None}
            if args.resume and path.is_file():
                try:
                    previous = json.loads(path.read_text())
                    why = config_mismatch(spec.run_config, previous, args.num_clients)
                except (OSError, json.JSONDecodeError) as err:
                    why = f"cannot read {path} ({err})"
                if why is None:
                    record["results"] = previous
                    record["status"] = "resumed"
                    tqdm.write(summary_line(spec, previous, status="resumed"))
                    records.append(record)
                    continue
                tqdm.write(f"[rerun] {spec.name}: {why}; running it again")
            start = time.perf_counter()
            try:
                record["results"] = _run_one(spec, args)
                record["seconds"] = time.perf_counter() - start
                tqdm.write(summary_line(spec, record["results"], record["seconds"]))
            except KeyboardInterrupt:
                raise
            except Exception as err:  # pylint: disable=broad-exception-caught
                record["seconds"] = time.perf_counter() - start
                record["status"] = "failed"
                record["error"] = f"{type(err).__name__}: {err}"
                tqdm.write(f"[FAILED] {spec.name}: {record['error']}")
                if args.verbose:
                    tqdm.write(traceback.format_exc())
            records.append(record)
    finally:
        bar.close()
        flwr_logger.setLevel(old_level)
        if records:
            write_report(records, args.out, command=command, settings=settings,
                         ks=args.recovery_rounds)
    failed = [r for r in records if r["status"] == "failed"]
    print(f"report: {args.out / 'report.md'} and {args.out / 'report.json'}; plots in {args.out}")
    if failed:
        print(f"{len(failed)} of {len(records)} run(s) failed: "
              + ", ".join(f"{r['scenario']} seed{r['seed']} {r['method']}" for r in failed),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
