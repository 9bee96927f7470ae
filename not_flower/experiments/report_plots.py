"""Plots of the comparison report: per-round curves of each method, mean and std over seeds.

:func:`plot_scenario` writes one PNG per per-round metric of a scenario (test accuracy,
forget accuracy, and ASR or the forgotten classes' accuracy where the runs have them),
with markers for the models right after the unlearning step. matplotlib is imported only
here, and only when plotting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from not_flower.common.methods import REGISTRY
from not_flower.experiments.report_rows import (
    METHOD_NAMES,
    METHODS,
    RECOVERY_METHODS,
    STEP_METHODS,
    _finite,
    _phase_rounds,
)
from not_flower.experiments.report_summary import _by_seed


def round_series(
    results_by_seed: Mapping[int, Mapping], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over seeds of a per-round metric, aligned by round number.

    Parameters
    ----------
    results_by_seed : Mapping[int, Mapping]
        Seed -> ``results.json`` dict.
    key : str
        Per-round key such as ``"test_acc"``, ``"forget_acc"`` or ``"asr"`` (fractions).

    Returns
    -------
    tuple of np.ndarray
        ``(rounds, mean, std)`` in points; ``std`` is 0 where one seed has the value, rounds
        where no seed has it are dropped.
    """
    values: dict[int, list[float]] = {}
    for res in results_by_seed.values():
        for row in res.get("rounds", []):
            v = _finite(row.get(key))
            if v is not None and "round" in row:
                values.setdefault(int(row["round"]), []).append(100.0 * v)
    rounds = np.array(sorted(values), dtype=np.int64)
    mean = np.array([np.mean(values[r]) for r in rounds], dtype=np.float64)
    std = np.array(
        [np.std(values[r], ddof=1) if len(values[r]) > 1 else 0.0 for r in rounds], dtype=np.float64
    )
    return rounds, mean, std


PLOTS: dict[str, tuple[str, str]] = {
    "test_acc": ("test-acc", "test accuracy (%)"),
    "forget_acc": ("forget-acc", "forget accuracy (%)"),
    "asr": ("asr", "attack success rate (%)"),
    "forgotten_classes_test_acc": (
        "forgotten-classes-acc",
        "test accuracy on the forgotten class(es) (%)",
    ),
}


def _request_boundary(by_method: Mapping[str, Mapping[int, Mapping]]) -> float | None:
    """Where the unlearning request falls on the round axis (half a round before recovery)."""
    boundary = None
    for m in RECOVERY_METHODS:
        for res in by_method[m].values():
            rec = _phase_rounds(res, ("recovery",))
            if rec:
                boundary = int(rec[0]["round"]) - 0.5
                break
    return boundary


def _model_values(by_seed: Mapping[int, Mapping], model: str, key: str) -> list[float]:
    """``key`` of ``models[model]`` in points, over the seeds that have it."""
    return [
        100.0 * v
        for res in by_seed.values()
        if (v := _finite((res.get("models", {}).get(model) or {}).get(key))) is not None
    ]


def _draw_curves(ax, by_method: Mapping[str, Mapping[int, Mapping]], series: Mapping) -> None:
    """One line per method with a shaded band of +- one std."""
    for m, (x, mean, std) in series.items():
        n = len(by_method[m])
        ax.plot(
            x,
            mean,
            label=f"{METHOD_NAMES[m]} (n={n})",
            color=REGISTRY[m].color,
            linestyle=REGISTRY[m].linestyle,
            marker="." if x.size < 40 else None,
        )
        ax.fill_between(x, mean - std, mean + std, color=REGISTRY[m].color, alpha=0.2, linewidth=0)


def _draw_request(
    ax, by_method: Mapping[str, Mapping[int, Mapping]], key: str, boundary: float | None
) -> None:
    """The unlearning request: NoT's negated model, the baselines' unlearned ones, a line."""
    if boundary is None:
        return
    markers = [
        (m, "negated", "x", 8, f"{METHOD_NAMES[m]} negated (before recovery)")
        for m in METHODS
        if REGISTRY[m].app_method == "not"
    ]  # NoT and its variants
    markers += [
        (m, "unlearned", "+", 9, f"{METHOD_NAMES[m]} unlearned (before recovery)")
        for m in STEP_METHODS
    ]  # the baselines' models right after their step
    for m, model, fmt, size, label in markers:
        values = _model_values(by_method[m], model, key)
        if values:
            ax.errorbar(
                [boundary],
                [float(np.mean(values))],
                yerr=[float(np.std(values, ddof=1)) if len(values) > 1 else 0.0],
                fmt=fmt,
                color=REGISTRY[m].color,
                markersize=size,
                capsize=3,
                label=label,
            )
    ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
    ax.text(
        boundary,
        1.0,
        " unlearning request",
        transform=ax.get_xaxis_transform(),
        va="top",
        ha="left",
        fontsize=8,
        color="grey",
    )


def _label_axes(ax, scenario: str, ylabel: str) -> None:
    ax.set_xlabel("round (FT/NoT: training then recovery; Retrain: from scratch)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-2, 102)
    ax.set_title(f"{scenario}: {ylabel} per round (mean ± std over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def plot_scenario(runs: Sequence[Mapping], scenario: str, out_dir: str | Path) -> list[Path]:
    """Write the per-round plots of one scenario.

    ``<scenario>-test-acc.png`` and ``<scenario>-forget-acc.png`` always (when any run has
    the numbers), ``<scenario>-asr.png`` when the runs report ASR (backdoor scenario). One
    curve per method (Retrain, FT, NoT; FT and NoT share the original training), mean over
    seeds with a shaded band of +- one std; a dotted line marks the unlearning request, a
    cross NoT's negated model and a plus each baseline's unlearned model (before any
    recovery round) there.

    Parameters
    ----------
    runs : sequence of Mapping
        Run records; failed runs are skipped.
    scenario : str
        Scenario to plot.
    out_dir : str or Path
        Folder for the PNG files (created if needed).

    Returns
    -------
    list[Path]
        The files written.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_method = {m: _by_seed(runs, scenario, m) for m in METHODS}
    boundary = _request_boundary(by_method)
    written = []
    for key, (suffix, ylabel) in PLOTS.items():
        series = {m: round_series(by, key) for m, by in by_method.items() if by}
        series = {m: s for m, s in series.items() if s[0].size}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.2))
        _draw_curves(ax, by_method, series)
        _draw_request(ax, by_method, key, boundary)
        _label_axes(ax, scenario, ylabel)
        fig.tight_layout()
        path = out_dir / f"{scenario}-{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
