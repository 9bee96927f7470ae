"""Running a comparison's runs: reuse of stored results, one simulation each, progress lines."""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Mapping

from not_flower.common.config import RunConfig, parse_run_config, to_run_config
from not_flower.common.methods import REGISTRY
from not_flower.common.outdir import CONTROL_KEYS
from not_flower.common.settings import migrate_keys
from not_flower.experiments.plan import ORIGINAL, RunSpec, shares_original


def _pct(value) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


def _is_retrain(method: str) -> bool:
    """Retrain or a variant of it (``retrain-recipe``): trains from scratch, no recovery."""
    return method in REGISTRY and REGISTRY[method].app_method == "retrain"


def summary_line(
    spec: RunSpec, results: Mapping, seconds: float | None = None, status: str = "ok"
) -> str:
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
    parts = [
        f"test {_pct(m.get('test_acc'))}",
        f"retain {_pct(m.get('retain_acc'))}",
        f"forget {_pct(m.get('forget_acc'))}",
        f"MIA {_pct(m.get('mia_efficacy'))}",
    ]
    if "lira_auc" in m:
        parts.append(f"LiRA AUC {_pct(m.get('lira_auc'))} TPR@1%FPR {_pct(m.get('lira_tpr_fpr1'))}")
    if "asr" in m:
        parts.append(f"ASR {_pct(m.get('asr'))}")
    text = f"[{status}] {spec.name}: " + " ".join(parts) + " %"
    costs = results.get("costs") or {}
    cost = costs.get("unlearning_fixed_length") or costs.get("unlearning")
    if cost:
        mb = (cost.get("bytes_down", 0) + cost.get("bytes_up", 0)) / 1e6
        phase = "retraining" if _is_retrain(spec.method) else "recovery"
        text += (
            f" | {phase} {cost.get('rounds')} rounds {mb:.2f} MB "
            f"{cost.get('client_seconds', 0):.1f} client-s"
        )
    stop = (results.get("stopping") or {}).get("chosen_recovery_rounds")
    if not _is_retrain(spec.method) and results.get("stopping"):
        text += f" | stop at {stop if stop is not None else 'none'}"
    if seconds is not None:
        text += f" ({seconds:.0f} s)"
    return text


#: Run-config keys whose value was fixed before the key existed: every earlier run ran to
#: the recovery cap.
BEFORE_THE_KEY: dict = {"recovery.run-to-cap": True}


def config_mismatch(
    run_config: Mapping, results: Mapping, num_clients: int | None = None
) -> str | None:
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
    stored = migrate_keys(stored, RunConfig)  # a run from before the keys were grouped
    planned = to_run_config(parse_run_config(run_config))
    defaults = to_run_config(RunConfig())
    for key, value in planned.items():
        if key in ("out-dir", *CONTROL_KEYS):
            continue
        if key not in stored:
            # a key added to the app after that run, planned at its default (or at the
            # value every run had before the key existed)
            if value == defaults.get(key) or value == BEFORE_THE_KEY.get(key, defaults.get(key)):
                continue
            return f"the stored run has no {key!r} (planned {value!r})"
        if stored[key] != value:
            return f"{key} differs (stored {stored[key]!r}, planned {value!r})"
    stored_n = results.get("num_partitions")
    if num_clients is not None and stored_n is not None and int(stored_n) != int(num_clients):
        return f"the stored run had {stored_n} clients (planned {num_clients})"
    return None


def _run_one(spec: RunSpec, args: argparse.Namespace) -> dict:
    from not_flower.experiments.simulation import simulate  # pylint: disable=import-outside-toplevel

    spec.folder.mkdir(parents=True, exist_ok=True)
    # a run repeated into its folder (failed, or its config changed): the old files are
    # moved to previous-<time>/ there
    return simulate(
        {**spec.run_config, "overwrite": True},
        num_supernodes=args.num_clients,
        num_cpus=args.num_cpus,
        cpus_per_client=args.cpus_per_client,
        gpus_per_client=args.gpus_per_client,
        verbose=args.verbose,
    )


def stored_results(spec: RunSpec, args: argparse.Namespace) -> tuple[dict | None, str | None]:
    """A run's stored ``results.json`` when ``--resume`` may reuse it.

    Returns
    -------
    (dict or None, str or None)
        The stored results (None when there are none to reuse) and, when a stored file
        exists but does not fit the planned run, why (it is then run again).
    """
    path = spec.folder / "results.json"
    if not (args.resume and path.is_file()):
        return None, None
    try:
        previous = json.loads(path.read_text())
        why = config_mismatch(spec.run_config, previous, args.num_clients)
    except (OSError, json.JSONDecodeError) as err:
        why = f"cannot read {path} ({err})"
    return (previous, None) if why is None else (None, why)


def execute(spec: RunSpec, args: argparse.Namespace, write) -> dict:
    """Run (or reuse) one run and return its record for the report.

    Parameters
    ----------
    spec : RunSpec
        The run.
    args : argparse.Namespace
        Parsed arguments (resume, clients, resources, verbosity).
    write : callable
        Prints one progress line (``tqdm.write``).

    Returns
    -------
    dict
        ``scenario``, ``seed``, ``method``, ``status`` (ok / resumed / failed), ``error``,
        ``path``, ``seconds`` and ``results``. A failure is recorded, not raised (except
        KeyboardInterrupt).
    """
    path = spec.folder / "results.json"
    record = {
        "scenario": spec.scenario,
        "seed": spec.seed,
        "method": spec.method,
        "status": "ok",
        "error": None,
        "path": str(path),
        "seconds": None,
        "results": None,
    }
    previous, why = stored_results(spec, args)
    if previous is not None:
        write(summary_line(spec, previous, status="resumed"))
        return {**record, "results": previous, "status": "resumed"}
    if why is not None:
        write(f"[rerun] {spec.name}: {why}; running it again")
    start = time.perf_counter()
    try:
        record["results"] = _run_one(spec, args)
        record["seconds"] = time.perf_counter() - start
        write(summary_line(spec, record["results"], record["seconds"]))
    except KeyboardInterrupt:
        raise
    except Exception as err:  # pylint: disable=broad-exception-caught
        record.update(
            seconds=time.perf_counter() - start,
            status="failed",
            error=f"{type(err).__name__}: {err}",
        )
        write(f"[FAILED] {spec.name}: {record['error']}")
        if args.verbose:
            write(traceback.format_exc())
    return record


def with_shared_training(records: list[dict]) -> list[dict]:
    """Records for the report: a run started from the shared original gets its training back.

    With ``--share-original`` NoT's and FT's ``results.json`` begin at the request (round 0
    = the loaded original, then recovery rounds 1..K). For the report's per-round curves
    the original run's ``init`` and ``train`` rows are put in front and the run's own rows
    shifted by the original's training rounds, so every method's curve shows training then
    recovery on one round axis. Costs are not touched (the training is not the
    unlearning's cost); the files on disk are not changed.

    Parameters
    ----------
    records : list of dict
        Run records (:func:`execute`), the original runs (method ``"original"``) among them.

    Returns
    -------
    list of dict
        The records without the original runs, those started from one spliced (new dicts).
    """
    originals = {
        (r["scenario"], r["seed"]): r["results"]
        for r in records
        if r["method"] == ORIGINAL and r["results"]
    }
    out = []
    for record in records:
        if record["method"] == ORIGINAL:
            continue
        original = originals.get((record["scenario"], record["seed"]))
        res = record["results"]
        if not (
            original
            and res
            and shares_original(record["method"])
            and (res.get("config") or {}).get("init-checkpoint")
        ):
            out.append(record)
            continue
        training = [row for row in original["rounds"] if row["phase"] in ("init", "train")]
        shift = max((int(row["round"]) for row in training), default=0)
        own = [
            {**row, "round": int(row["round"]) + shift}
            for row in res["rounds"]
            if row["phase"] != "init"
        ]
        out.append({**record, "results": {**res, "rounds": training + own}})
    return out
