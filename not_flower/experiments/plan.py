"""Planning a comparison: its scenarios, the run config of each run and the list of runs.

:func:`plan_runs` turns the parsed command line of :mod:`not_flower.experiments.compare` into one
:class:`RunSpec` per (scenario, seed, method); ``--share-original`` adds one run per
(scenario, seed) that trains the original model once, which every method that can start
from a checkpoint then loads (``init-checkpoint``, ``num-train-rounds = 0``).
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from not_flower.common.config import RunConfig
from not_flower.common.methods import REGISTRY
from not_flower.common.settings import declarations, flatten, renamed_keys
from not_flower.experiments.report import METHOD_NAMES, METHODS, RECOVERY_METHODS, STEP_METHODS

SCENARIOS: tuple[str, ...] = (
    "iid",
    "dirichlet",
    "backdoor",
    "backdoor-dirichlet",
    "mislabel",
    "style",
    "memorise",
    "canary",
    "class",
    "instance",
)
#: Scenarios run when ``--scenarios`` is not given (the client-wise ones).
DEFAULT_SCENARIOS: tuple[str, ...] = ("iid", "dirichlet", "backdoor")
#: Share of the target's samples that get a wrong label in the ``mislabel`` scenario.
MISLABEL_FRACTION = 0.3
#: Canaries the target plants in the ``canary`` scenario (``--set canary.count=N`` changes it).
CANARY_COUNT = 32
#: Class-wise scope: every client's samples of the classes, or the target's only.
CLASS_SCOPES: tuple[str, ...] = ("federation", "client")
#: Methods run when ``--methods`` is not given: all but the baselines and the variants
#: (from the registry).
DEFAULT_METHODS: tuple[str, ...] = tuple(
    m for m in METHODS if m not in STEP_METHODS and not REGISTRY[m].runs_as
)
#: ``--server-data-fraction`` when fukd runs and the option is not given.
DEFAULT_SERVER_DATA_FRACTION = 0.1
#: ``RunSpec.method`` of the run that trains the shared original (``--share-original``).
ORIGINAL = "original"
#: Run-config keys this command sets itself; ``--set`` may not override them.
RESERVED_KEYS: dict[str, str] = {
    "out-dir": "--out",
    "seed": "--seeds",
    "method": "--methods",
    "num-train-rounds": "--train-rounds / --retrain-rounds",
    "recovery.rounds": "--recovery-rounds",
    "eval-recovery-rounds": "--recovery-rounds",
    "unlearn.clients": "--target",
    "partitioner": "--scenarios",
    "dirichlet-alpha": "--alpha",
    "backdoor.clients": "--scenarios backdoor",
    "mislabel.clients": "--scenarios mislabel",
    "style.clients": "--scenarios style",
    "unlearn.mode": "--scenarios class / instance",
    "unlearn.classes": "--forget-classes",
    "unlearn.samples": "--scenarios instance",
    "fukd.server-data-fraction": "--server-data-fraction",
    # the X@K rows need every round up to max(K); the X@stop row reports the rule's stop
    "recovery.run-to-cap": "--recovery-rounds (a comparison runs every recovery round)",
}


#: The reserved key a Retrain variant may set for itself with ``--set-for`` (its length).
OWN_LENGTH = "num-train-rounds"


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
        label = "Original" if self.method == ORIGINAL else METHOD_NAMES[self.method]
        return f"{self.scenario} seed{self.seed} {label}"

    @property
    def folder(self) -> Path:
        """The run's output folder (``out-dir``)."""
        return Path(self.run_config["out-dir"])


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
    return {decl.key for _, decl in declarations(RunConfig)}


def config_file_items(path: str | Path) -> list[str]:
    """A run-config TOML file (a preset) as ``key=value`` items for :func:`parse_set`.

    The file is what ``flwr run --run-config FILE.toml`` takes: top-level keys and nested
    tables (``[recovery]`` -> ``recovery.*``), flattened to dotted keys as Flower does.

    Parameters
    ----------
    path : str or Path
        The TOML file.

    Returns
    -------
    list of str
        ``"key=value"`` items in the file's order (values as TOML text).

    Raises
    ------
    ValueError
        For a file that cannot be read or is not TOML, naming it.
    """
    try:
        table = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"--config {path}: not a readable TOML file ({err})") from None

    return [
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in flatten(table).items()
    ]


def parse_set(items: Sequence[str] | None, *, allow: Sequence[str] = ()) -> dict:
    """Parse ``--set key=value`` items into typed run-config overrides.

    Parameters
    ----------
    items : sequence of str or None
        ``"key=value"`` strings.
    allow : sequence of str
        Keys of :data:`RESERVED_KEYS` taken all the same (``--set-for retrain-recipe
        num-train-rounds=N``: a Retrain variant's own length).

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
    renamed = renamed_keys(RunConfig)
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"--set expects key=value with a key, got {item!r}")
        if key in RESERVED_KEYS and key not in allow:
            raise ValueError(
                f"--set {key}=...: {key!r} is set by this command; use {RESERVED_KEYS[key]} instead"
            )
        if key in renamed:
            raise ValueError(
                f"--set {item!r}: run-config key {key!r} was renamed to {renamed[key]!r}"
            )
        if key not in known:
            raise ValueError(
                f"--set {item!r}: unknown run-config key {key!r}; known keys: "
                f"{', '.join(sorted(known - set(RESERVED_KEYS)))}"
            )
        out[key] = parse_value(value)
    return out


def _backdoor(target: int) -> dict:
    """The backdoor's keys: the target poisons 40 % of its samples (IID partition)."""
    return {
        "partitioner": "iid",
        "backdoor.clients": str(target),
        "backdoor.fraction": 0.4,
        "backdoor.target": 0,
    }


def _client_wise(scenario: str, *, alpha: float, target: int) -> dict | None:
    """Run-config keys of a client-wise scenario (the target is forgotten); ``None`` for a
    scenario that is not client-wise."""
    dirichlet = {"partitioner": "dirichlet", "dirichlet-alpha": float(alpha)}
    mislabelled = {"mislabel.clients": str(target), "mislabel.fraction": MISLABEL_FRACTION}
    keys = {
        "iid": {"partitioner": "iid"},
        "dirichlet": dirichlet,
        "backdoor": _backdoor(target),
        # the backdoor on a label-skewed partition
        "backdoor-dirichlet": {**_backdoor(target), **dirichlet},
        # data no other client covers: a membership test can tell
        "mislabel": {"partitioner": "iid", **mislabelled},
        # inverted images: a style only the target has
        "style": {"partitioner": "iid", "style.clients": str(target)},
        # both: inverted, 30 % of them mislabelled
        "memorise": {"partitioner": "iid", "style.clients": str(target), **mislabelled},
        # the target plants canaries: samples only it has, memorised
        "canary": {
            "partitioner": "iid",
            "canary.clients": str(target),
            "canary.count": CANARY_COUNT,
        },
    }.get(scenario)
    return None if keys is None else {**keys, "unlearn.clients": str(target)}


def scenario_config(
    scenario: str,
    *,
    alpha: float = 0.1,
    target: int = 0,
    classes: Sequence[int] = (3,),
    class_scope: str = "federation",
) -> dict:
    """Run-config keys that define a scenario.

    Parameters
    ----------
    scenario : str
        One of :data:`SCENARIOS`.
    alpha : float (default: 0.1)
        Dirichlet concentration (``dirichlet`` and ``backdoor-dirichlet`` only).
    target : int (default: 0)
        The client to forget (the poisoner in ``backdoor`` and ``instance``, the client
        with mislabelled samples in ``mislabel``).
    classes : sequence of int (default: (3,))
        Classes to forget (``class`` only).
    class_scope : str (default: "federation")
        ``class`` only: ``"federation"`` forgets every client's samples of ``classes``
        (``unlearn.clients = "*"``), ``"client"`` the target's only.

    Returns
    -------
    dict
        Including ``unlearn.clients``.

    Raises
    ------
    ValueError
        For an unknown scenario.
    """
    keys = _client_wise(scenario, alpha=alpha, target=target)
    if keys is not None:
        return keys
    if scenario == "class":
        if class_scope not in CLASS_SCOPES:
            raise ValueError(
                f"unknown class scope {class_scope!r}; choose one of: {', '.join(CLASS_SCOPES)}"
            )
        if not classes:
            raise ValueError("the class scenario needs at least one class to forget")
        return {
            "partitioner": "iid",
            "unlearn.mode": "class",
            "unlearn.classes": ",".join(str(int(c)) for c in classes),
            "unlearn.clients": "*" if class_scope == "federation" else str(target),
        }
    if scenario == "instance":
        return {
            **_backdoor(target),
            "unlearn.mode": "instance",
            "unlearn.samples": "poisoned",
            "unlearn.clients": str(target),
        }
    raise ValueError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")


def run_config_for(
    args: argparse.Namespace, scenario: str, seed: int, method: str, *, own_keys: bool = True
) -> dict:
    """The run config of one run (dashed keys, as ``flwr run --run-config`` takes).

    ``--set`` keys, then the method's ``--set-for`` keys, then a variant's fixed keys
    (:attr:`not_flower.common.methods.Method.run_config`). ``num-train-rounds`` is
    ``--train-rounds``, or ``--retrain-rounds`` (when given) for Retrain and the variants
    that run as Retrain (``retrain-recipe``).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (:func:`parse_args`).
    scenario, seed, method
        Which run.
    own_keys : bool
        Apply the method's ``--set-for`` and variant keys (``False`` for the shared
        original, which is no method's).

    Returns
    -------
    dict
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    folder = Path(args.out) / "runs" / scenario / f"seed{seed}" / method
    scenario_keys = scenario_config(
        scenario,
        alpha=args.alpha,
        target=args.target,
        classes=getattr(args, "forget_classes", (3,)),
        class_scope=getattr(args, "class_scope", "federation"),
    )
    lira = getattr(args, "mia_reference_models", 0)
    cfg = {
        **scenario_keys,
        # the per-example attack: one cache per comparison, shared by all its methods
        **(
            {
                "mia.reference-models": int(lira),
                "mia.cache-dir": str(Path(args.out) / "mia-reference"),
            }
            if lira
            else {}
        ),
        **args.overrides,
        **(
            (getattr(args, "method_overrides", None) or {}).get(method, {}) if own_keys else {}
        ),  # --set-for
        **(REGISTRY[method].run_config if own_keys else {}),  # a variant's (compare checks)
        "out-dir": str(folder),
        "seed": int(seed),
        "method": REGISTRY[method].app_method,
        "num-train-rounds": _train_rounds(args, method if own_keys else ""),
        "unlearn.clients": scenario_keys["unlearn.clients"],
    }
    fraction = getattr(args, "server_data_fraction", 0.0) or 0.0
    if fraction > 0:  # the same for every method: the clients hold the same data
        cfg["fukd.server-data-fraction"] = float(fraction)
    cfg["recovery.run-to-cap"] = True  # the stopping rule reports, never ends a run here
    if method in RECOVERY_METHODS:
        cfg["recovery.rounds"] = max(args.recovery_rounds)
        cfg["eval-recovery-rounds"] = ",".join(str(k) for k in args.recovery_rounds)
    return cfg


def _train_rounds(args: argparse.Namespace, method: str) -> int:
    """``num-train-rounds`` of a run: for Retrain and its variants (from scratch, so their
    whole length) their own ``--set-for METHOD num-train-rounds=N``, else
    ``--retrain-rounds``; ``--train-rounds`` for every other run."""
    own = (getattr(args, "method_overrides", None) or {}).get(method, {})
    if method in REGISTRY and REGISTRY[method].app_method == "retrain" and own.get(OWN_LENGTH):
        return int(own[OWN_LENGTH])
    retrain_rounds = getattr(args, "retrain_rounds", None)
    if method in REGISTRY and REGISTRY[method].app_method == "retrain" and retrain_rounds:
        return int(retrain_rounds)
    return int(args.train_rounds)


def shares_original(method: str) -> bool:
    """Whether ``method`` can start from a shared original (``--share-original``).

    Methods that recover and keep nothing from the training (NoT, FT: the registry's
    ``storage`` is ``"none"``) can; Retrain trains from scratch, and the baselines keep
    training history (PGD the clients' latest models, FedEraser and FUKD their updates),
    so they train their own original.
    """
    entry = REGISTRY[method]
    return entry.recovers and entry.requirements.storage == "none"


def original_run_config(args: argparse.Namespace, scenario: str, seed: int) -> dict:
    """The run that trains a (scenario, seed)'s original once: training only, no request."""
    cfg = run_config_for(args, scenario, seed, "not", own_keys=False)
    cfg.pop("eval-recovery-rounds", None)
    folder = Path(args.out) / "runs" / scenario / f"seed{seed}" / ORIGINAL
    return {**cfg, "out-dir": str(folder), "unlearn.clients": "", "recovery.rounds": 0}


def plan_runs(args: argparse.Namespace) -> list[RunSpec]:
    """Every run, scenario by scenario, seed by seed, Retrain first.

    With ``args.share_original`` each (scenario, seed) starts with the run that trains the
    original (``method`` :data:`ORIGINAL`), and every method that :func:`shares_original`
    starts from its ``checkpoint-final.pt`` with ``num-train-rounds = 0``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.

    Returns
    -------
    list[RunSpec]
    """
    share = getattr(args, "share_original", False)
    specs = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            original = original_run_config(args, scenario, seed) if share else None
            if original and any(shares_original(m) for m in args.methods):
                specs.append(RunSpec(scenario, seed, ORIGINAL, original))
            for method in args.methods:
                cfg = run_config_for(args, scenario, seed, method)
                if original and shares_original(method):
                    cfg.update(
                        {
                            "num-train-rounds": 0,
                            "init-checkpoint": str(
                                Path(original["out-dir"]) / "checkpoint-final.pt"
                            ),
                        }
                    )
                specs.append(RunSpec(scenario, seed, method, cfg))
    return specs
