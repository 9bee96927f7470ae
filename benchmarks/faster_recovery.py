"""Benchmark: faster recovery after NoT's negation (beyond the paper).

Backdoor scenario on digits (10 clients IID, client 0 stamps a 2x2 trigger on 40 % of its
samples, label 0), client 0 forgotten. Per seed:

1. the original model: 20 FedAvg rounds with everyone (trained once, then reused);
2. Retrain: 20 rounds from scratch without client 0 (the reference);
3. every setting below: NoT (or FT) from the original checkpoint
   (``init-checkpoint``, ``num-train-rounds = 0``), ``--recovery-rounds`` recovery rounds.

For each run: the first recovery round at which the global model is within 1 point of
Retrain's final test accuracy and within 2 points of its ASR (the goal of the
experiment), the same with Retrain's forget accuracy also within 2 points (the rule of
``benchmarks/cost_to_forget.py``), the client compute spent up to the first
(local epochs x samples trained, counted from each round's replies, as a share of
Retrain's: more local epochs or more clients per round cost more per round) and the
client CPU seconds (measured, noisy on shared cores). Retrain's own rounds to its level
are found by the same rule. A setting with ``method = retrain`` (``retrain-local-epochs-2``)
trains from scratch like Retrain and is measured against Retrain's level.

    python benchmarks/faster_recovery.py --out outputs/faster-recovery [--seeds 0 1 2]
        [--recovery-rounds 15] [--settings paper momentum-0.9 ...] [--json out.json]
        [--train-rounds 20] [--set dataset=fashion-mnist --set train-subset=6000 ...]
        [--plot curves.png]

``--set`` adds run-config keys to every run (data set, sizes); ``--train-rounds`` is the
original's and Retrain's number of rounds. Costs to the goal are counted, not estimated:
rounds, MB (bytes down + up of the actual messages) and client CPU seconds, each also as a
share of the same seed's Retrain's cost to its own level. ``--plot`` draws test accuracy
and ASR per round (mean over seeds): Retrain from scratch next to every setting's
recovery, so that one sees whether Retrain's curve has flattened.

Runs whose ``results.json`` exists with the same run config are reused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import write_json  # benchmarks/common.py
from cost_to_forget import first_reach
from not_flower.experiments.compare import config_mismatch, parse_set
from not_flower.experiments.plan import config_file_items
from not_flower.experiments.simulation import simulate

BACKDOOR = {
    "partitioner": "iid",
    "backdoor.clients": "0",
    "backdoor.fraction": 0.4,
    "backdoor.target": 0,
}
#: name -> run-config keys of the recovery run (on top of method=not from the checkpoint)
SETTINGS: dict[str, dict] = {
    "paper": {},
    "ft": {"method": "ft"},
    "server-momentum-0.5": {"recovery.server-momentum": 0.5},
    "server-momentum-0.9": {"recovery.server-momentum": 0.9},
    "server-lr-2": {"recovery.server-lr": 2.0},
    "server-adam-0.01": {"recovery.server-optimizer": "adam", "recovery.server-lr": 0.01},
    "server-adam-0.003": {"recovery.server-optimizer": "adam", "recovery.server-lr": 0.003},
    "client-lr-0.1": {"recovery.lr": 0.1},
    "client-lr-0.02": {"recovery.lr": 0.02},
    "local-epochs-3": {"recovery.local-epochs": 3},
    "local-epochs-4": {"recovery.local-epochs": 4},
    "weights-only": {"negate.bias": False},
    "layer-conv2": {"negate.layers": "conv2"},
    "weights-only+local-epochs-3": {"negate.bias": False, "recovery.local-epochs": 3},
    "weights-only+local-epochs-4": {"negate.bias": False, "recovery.local-epochs": 4},
    "local-epochs-2": {"recovery.local-epochs": 2},
    "weights-only+local-epochs-2": {"negate.bias": False, "recovery.local-epochs": 2},
    "layer-fc1": {"negate.layers": "fc1"},
    "layer-fc1-weights-only": {"negate.layers": "fc1", "negate.bias": False},
    "pgd": {"method": "pgd"},
    "layerwise-3": {"recovery.layerwise-rounds": 3},
    "layerwise-10": {"recovery.layerwise-rounds": 10},
    "weights-only+layerwise-3": {"negate.bias": False, "recovery.layerwise-rounds": 3},
    "server-yogi-0.01": {"recovery.server-optimizer": "yogi", "recovery.server-lr": 0.01},
    "distill-1": {"recovery.distill-weight": 1.0},
    "distill-0.1": {"recovery.distill-weight": 0.1},
    "warmup-5": {"recovery.lr-warmup-rounds": 5},
    "weights-only+server-momentum-0.9": {"negate.bias": False, "recovery.server-momentum": 0.9},
    "weights-only+client-lr-0.1": {"negate.bias": False, "recovery.lr": 0.1},
    "weights-only+local-epochs-2+fraction-0.5": {
        "negate.bias": False,
        "recovery.local-epochs": 2,
        "fraction-train": 0.5,
    },
    # a Retrain variant: trained from scratch like Retrain, measured against Retrain's level
    "retrain-local-epochs-2": {"method": "retrain", "local-epochs": 2},
    "retrain-local-epochs-2+fraction-0.5": {
        "method": "retrain",
        "local-epochs": 2,
        "fraction-train": 0.5,
    },
}
DESCRIPTIONS: dict[str, str] = {
    "paper": "NoT, first layer, FedAvg recovery (the paper's)",
    "ft": "FT (no negation), FedAvg recovery",
    "server-momentum-0.5": "NoT + server momentum 0.5 in recovery (FedAvgM)",
    "server-momentum-0.9": "NoT + server momentum 0.9 in recovery (FedAvgM)",
    "server-lr-2": "NoT + server learning rate 2 in recovery",
    "server-adam-0.01": "NoT + FedAdam server update in recovery (eta 0.01)",
    "server-adam-0.003": "NoT + FedAdam server update in recovery (eta 0.003)",
    "client-lr-0.1": "NoT + client lr 0.1 in recovery (training: {lr})",
    "client-lr-0.02": "NoT + client lr 0.02 in recovery (training: {lr})",
    "local-epochs-3": "NoT + 3 local epochs in recovery (training: {local_epochs})",
    "local-epochs-4": "NoT + 4 local epochs in recovery (training: {local_epochs})",
    "weights-only": "NoT, first layer, weights only (negate.bias=false)",
    "layer-conv2": "NoT, second conv layer instead of the first",
    "weights-only+local-epochs-3": "NoT, weights only, + 3 local epochs in recovery",
    "weights-only+local-epochs-4": "NoT, weights only, + 4 local epochs in recovery",
    "local-epochs-2": "NoT + 2 local epochs in recovery (training: {local_epochs})",
    "weights-only+local-epochs-2": "NoT, weights only, + 2 local epochs in recovery",
    "layer-fc1": "NoT, last hidden layer (fc1) instead of the first",
    "layer-fc1-weights-only": "NoT, last hidden layer (fc1), weights only",
    "pgd": "PGD (the target's projected gradient ascent), then FedAvg recovery",
    "layerwise-3": (
        "NoT + layer-wise recovery: 3 rounds training the negated layer alone, then FedAvg"
    ),
    "layerwise-10": (
        "NoT + layer-wise recovery: 10 rounds training the negated layer alone, then FedAvg"
    ),
    "weights-only+layerwise-3": "NoT, weights only, + 3 layer-wise rounds",
    "server-yogi-0.01": "NoT + FedYogi server update in recovery (eta 0.01)",
    "distill-1": "NoT + distillation toward the pre-unlearning model (weight 1, T 2)",
    "distill-0.1": "NoT + distillation toward the pre-unlearning model (weight 0.1, T 2)",
    "warmup-5": "NoT + client lr warm-up over 5 recovery rounds",
    "weights-only+server-momentum-0.9": "NoT, weights only, + server momentum 0.9 (FedAvgM)",
    "weights-only+client-lr-0.1": "NoT, weights only, + client lr 0.1 in recovery (training: {lr})",
    "weights-only+local-epochs-2+fraction-0.5": (
        "NoT, weights only, + 2 local epochs, half the retained clients per round"
    ),
    "retrain-local-epochs-2": (
        "Retrain with 2 local epochs (training: {local_epochs}), from scratch; "
        "its last columns: after as many rounds as Retrain"
    ),
    "retrain-local-epochs-2+fraction-0.5": (
        "Retrain with 2 local epochs, half the clients per "
        "round, from scratch; its last columns: after "
        "as many rounds as Retrain"
    ),
}


#: Extra keyword arguments of ``simulate`` (CPUs, GPUs per client; set by benchmarks/gpu.py).
SIM_RESOURCES: dict = {}


def _run(config: dict, folder: Path) -> dict:
    """One simulation, or its stored results when they were made with the same config."""
    config = {**config, "out-dir": str(folder)}
    stored = folder / "results.json"
    if stored.is_file():
        previous = json.loads(stored.read_text())
        if config_mismatch(config, previous, 10) is None:
            return previous
    folder.mkdir(parents=True, exist_ok=True)
    return simulate(
        {**config, "overwrite": True},
        num_supernodes=10,  # old files: previous-*/
        **SIM_RESOURCES,
    )


def _reach(results: dict, phase: str, target: dict) -> dict:
    """Rounds (and costs) to Retrain's test accuracy and ASR, and with its forget acc too.

    ``rounds``/``client_s``/``epoch_rounds``: the goal of the experiment (test within 1
    point, ASR within 2 points); ``strict_rounds``: also forget accuracy within 2 points
    (the rule of the cost-to-forget table; one forget sample is 0.77 points here).
    """
    goal = first_reach(results["rounds"], phase, {**target, "forget": None}, True)
    strict = first_reach(results["rounds"], phase, target, True)
    epochs = _phase_epochs(results["config"], phase)
    out = {
        "reached": goal is not None,
        "strict_reached": strict is not None,
        "strict_rounds": strict and strict["rounds"],
    }
    if goal:  # client compute: local epochs over the retained data, summed over rounds
        out.update(
            goal,
            epoch_rounds=goal["rounds"] * epochs,
            epoch_samples=epoch_samples(results["rounds"], phase, goal["round"], epochs),
        )
    return out


def _phase_epochs(cfg: dict, phase: str) -> int:
    """Local epochs per round in ``phase`` (recovery: its own key when set)."""
    if phase == "retrain":
        return cfg.get("local-epochs", 1)
    return cfg.get("recovery.local-epochs") or cfg.get("local-epochs", 1)


def epoch_samples(rounds: list[dict], phase: str, last_round: int, epochs: int) -> int | None:
    """Client compute, counted: local epochs x samples the clients trained on, summed.

    Parameters
    ----------
    rounds : list of dict
        ``results["rounds"]``.
    phase : str
        The phase whose rounds count (``recovery`` or ``retrain``).
    last_round : int
        The last round counted (the round the goal was reached).
    epochs : int
        Local epochs per round in that phase.

    Returns
    -------
    int or None
        ``None`` when a round does not record its clients' ``trained_examples``.
    """
    total = 0
    for row in rounds:
        if row["phase"] != phase or row["round"] > last_round:
            continue
        if not row.get("trained_examples"):
            return None
        total += epochs * sum(row["trained_examples"].values())
    return total


def run_seed(
    out: Path,
    seed: int,
    settings: list[str],
    recovery_rounds: int,
    extra: dict | None = None,
    train_rounds: int = 20,
    deadline: float | None = None,
) -> list[dict]:
    """Original, Retrain and every setting for one seed; one row per setting (and Retrain).

    Parameters
    ----------
    out : Path
        Output folder; runs go to ``<out>/seed<seed>/<setting>/``.
    seed : int
        The run seed.
    settings : list of str
        Names from :data:`SETTINGS`.
    recovery_rounds : int
        Recovery rounds of every setting.
    extra : dict, optional
        Run-config keys added to every run (``--set``).
    train_rounds : int (default: 20)
        Rounds of the original and of Retrain.
    deadline : float, optional
        ``time.monotonic()`` after which no further setting is started (the rows so far
        are returned; a run in progress is not cut).
    """
    base = {**BACKDOOR, **(extra or {}), "seed": seed, "num-train-rounds": train_rounds}
    original = _run(
        {**base, "unlearn.clients": "", "recovery.rounds": 0}, out / f"seed{seed}" / "original"
    )
    checkpoint = out / f"seed{seed}" / "original" / "checkpoint-final.pt"
    retrain = _run(
        {**base, "method": "retrain", "unlearn.clients": "0"}, out / f"seed{seed}" / "retrain"
    )
    final = retrain["models"]["retrained"]
    target = {
        "test": 100 * final["test_acc"],
        "forget": 100 * final["forget_acc"],
        "asr": 100 * final["asr"],
    }
    rows = [
        {
            "setting": "retrain",
            "seed": seed,
            **_reach(retrain, "retrain", target),
            "test": target["test"],
            "forget": target["forget"],
            "asr": target["asr"],
            "curve": _curve(retrain, "retrain"),
            "original_test": 100 * original["models"][original["final"]]["test_acc"],
            "original_asr": 100 * original["models"][original["final"]]["asr"],
        }
    ]
    print(
        f"seed {seed} retrain: reached at {rows[0].get('rounds')} rounds "
        f"({rows[0].get('strict_rounds')} with forget acc); final test "
        f"{target['test']:.2f} forget {target['forget']:.2f} ASR {target['asr']:.2f}",
        flush=True,
    )
    for name in settings:
        if deadline is not None and time.monotonic() > deadline:
            print(
                f"seed {seed}: time budget spent, not started: "
                f"{', '.join(settings[settings.index(name) :])}",
                flush=True,
            )
            break
        if SETTINGS[name].get("method") == "retrain":  # from scratch, like Retrain
            keys, phase = {**base, "unlearn.clients": "0", **SETTINGS[name]}, "retrain"
        else:
            keys = {
                **base,
                "method": "not",
                "init-checkpoint": str(checkpoint),
                "num-train-rounds": 0,
                "recovery.rounds": recovery_rounds,
                "unlearn.clients": "0",
                **SETTINGS[name],
            }
            phase = "recovery"
        res = _run(keys, out / f"seed{seed}" / name)
        last = [r for r in res["rounds"] if r["phase"] == phase][-1]
        rows.append(
            {
                "setting": name,
                "seed": seed,
                **_reach(res, phase, target),
                "test": 100 * last["test_acc"],
                "forget": 100 * last["forget_acc"],
                "asr": 100 * last["asr"],
                "curve": _curve(res, phase),
            }
        )
        print(
            f"seed {seed} {name}: reached at {rows[-1].get('rounds')} rounds "
            f"({rows[-1].get('strict_rounds')} with forget acc); after "
            f"{len(rows[-1]['curve']['test'])}: test {rows[-1]['test']:.2f} "
            f"forget {rows[-1]['forget']:.2f} "
            f"ASR {rows[-1]['asr']:.2f}",
            flush=True,
        )
    return rows


def _curve(results: dict, phase: str) -> dict:
    """Test accuracy, ASR (%) and client compute so far after each round of ``phase``.

    ``compute``: local epochs x samples trained, summed up to that round (see
    :func:`epoch_samples`); left out when the rounds do not record their samples.
    """
    rows = [r for r in results["rounds"] if r["phase"] == phase]
    curve = {"test": [100 * r["test_acc"] for r in rows], "asr": [100 * r["asr"] for r in rows]}
    epochs = _phase_epochs(results.get("config", {}), phase)
    compute = [epoch_samples(results["rounds"], phase, r["round"], epochs) for r in rows]
    if rows and None not in compute:
        curve["compute"] = compute
    return curve


def _ms(values: list[float], digits: int = 1) -> str:
    if not values:
        return "not reached"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def _share(hit: list[dict], base: list[dict], key: str) -> str:
    """Mean cost of the settings' runs that got there as % of Retrain's mean cost."""
    if not hit or not base:
        return "–"
    ratio = statistics.mean(r[key] for r in hit) / statistics.mean(r[key] for r in base)
    return f"{100 * ratio:.0f} %"


def _compute_key(rows: list[dict]) -> str:
    """``epoch_samples`` (counted per sample) when every row has it, else ``epoch_rounds``."""
    return "epoch_samples" if rows and all(r.get("epoch_samples") for r in rows) else "epoch_rounds"


def table(
    rows: list[dict], recovery_rounds: int, train_rounds: int = 20, base_config: dict | None = None
) -> list[str]:
    """Markdown table: one line per setting, Retrain first.

    Costs to the goal (test acc within 1 point, ASR within 2 points of Retrain's final):
    rounds, MB and client CPU seconds, each also as % of Retrain's own cost to its level;
    "client compute" counts local epochs x samples trained (a 4-epoch round costs twice a
    2-epoch one; a round training half the clients half a full one), or local epochs x
    rounds for rows that do not record the samples.
    """
    fmt = {
        "lr": (base_config or {}).get("lr", 0.05),
        "local_epochs": (base_config or {}).get("local-epochs", 2),
    }
    lines = [
        f"| setting | reached | rounds to Retrain's test acc and ASR | % of Retrain's "
        f"rounds | client compute to it (% of Retrain's) | client-s to it | % of Retrain's "
        f"MB | % of Retrain's client-s | + forget acc: "
        f"reached, rounds | test after {recovery_rounds} | forget after {recovery_rounds} "
        f"| ASR after {recovery_rounds} |",
        "|" + "---|" * 12,
    ]
    base = [r for r in rows if r["setting"] == "retrain" and r["reached"]]
    for name in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == name]
        hit = [r for r in mine if r["reached"]]
        label = (
            f"Retrain (from scratch, {train_rounds} rounds; final numbers)"
            if name == "retrain"
            else DESCRIPTIONS.get(name, name).format(**fmt)
        )
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    f"{len(hit)}/{len(mine)}",
                    _ms([r["rounds"] for r in hit]),
                    _share(hit, base, "rounds"),
                    _share(hit, base, _compute_key(hit + base)),
                    _ms([r["client_s"] for r in hit]),
                    _share(hit, base, "MB"),
                    _share(hit, base, "client_s"),
                    f"{sum(r['strict_reached'] for r in mine)}/{len(mine)}, "
                    + _ms([r["strict_rounds"] for r in mine if r["strict_reached"]]),
                    _ms([r["test"] for r in mine], 2),
                    _ms([r["forget"] for r in mine], 2),
                    _ms([r["asr"] for r in mine], 2),
                ]
            )
            + " |"
        )
    return lines


def plot(rows: list[dict], path: str | Path, title: str) -> None:
    """Test accuracy and ASR per round (mean over seeds): Retrain from scratch vs recovery."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_compute = all("compute" in r["curve"] for r in rows)
    fig, axes = plt.subplots(1, 3 if with_compute else 2, figsize=(19 if with_compute else 13, 5))
    retrain_full = (
        [r["curve"]["compute"][-1] for r in rows if r["setting"] == "retrain"]
        if with_compute
        else []
    )
    for name in dict.fromkeys(r["setting"] for r in rows):
        curves = [r["curve"] for r in rows if r["setting"] == name]
        style = {"color": "black", "linewidth": 2.5} if name == "retrain" else {"linewidth": 1.2}
        if name.startswith("retrain-"):
            style["linestyle"] = "--"
        label = "Retrain (from scratch)" if name == "retrain" else name
        for ax, key in zip(axes, ("test", "asr")):
            n = min(len(c[key]) for c in curves)
            mean = [statistics.mean(c[key][i] for c in curves) for i in range(n)]
            ax.plot(range(1, n + 1), mean, label=label, **style)
        if with_compute and retrain_full:  # x: compute as % of Retrain's whole run
            n = min(len(c["test"]) for c in curves)
            scale = statistics.mean(retrain_full) / 100
            x = [statistics.mean(c["compute"][i] for c in curves) / scale for i in range(n)]
            y = [statistics.mean(c["test"][i] for c in curves) for i in range(n)]
            axes[2].plot(x, y, label=label, **style)
    axes[0].set(
        xlabel="round (Retrain: from scratch; others: recovery)",
        ylabel="test accuracy (%)",
        title=f"{title}: test accuracy",
    )
    axes[1].set(xlabel="round", ylabel="ASR (%)", title=f"{title}: backdoor ASR")
    if with_compute:
        axes[2].set(
            xlabel="client compute so far (local epochs x samples, % of Retrain's whole run)",
            ylabel="test accuracy (%)",
            title=f"{title}: test accuracy per client compute",
        )
    axes[0].legend(fontsize=7, loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The command line (its arguments only: parsing runs nothing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--recovery-rounds", type=int, default=15)
    parser.add_argument("--train-rounds", type=int, default=20)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        help="run-config file (a preset: examples/configs/*.toml) applied before every --set",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run-config key added to every run",
    )
    parser.add_argument("--json", default="")
    parser.add_argument("--plot", default="", help="PNG of the per-round curves")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The parsed command line, ``--set`` values typed into ``args.extra`` (exits with
    status 2 on a bad value); runs nothing."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        preset = config_file_items(args.config) if args.config else []
        args.extra = parse_set([*preset, *args.overrides])
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    extra = args.extra
    out = args.out.expanduser().resolve()
    rows = []
    for seed in args.seeds:
        rows += run_seed(out, seed, args.settings, args.recovery_rounds, extra, args.train_rounds)
    print()
    print("\n".join(table(rows, args.recovery_rounds, args.train_rounds, extra)))
    if args.json:
        write_json(
            args.json,
            {
                "config": {
                    **BACKDOOR,
                    **extra,
                    "num-train-rounds": args.train_rounds,
                    "recovery.rounds": args.recovery_rounds,
                },
                "rows": rows,
            },
        )
    if args.plot:
        plot(rows, args.plot, extra.get("dataset", "digits"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
