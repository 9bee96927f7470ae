"""The comparison report of fixed hand-made runs is the one recorded in tests/golden/report/.

:func:`runs` builds run records that reach every part of the report: two seeds of Retrain,
FT and NoT with per-K models and a stopping rule (backdoor), failed runs, the class-wise
columns, LiRA numbers with and without separation, the baselines' "X@0" rows and their
requirements, a scenario with one seed (no noise floor) and one with no successful run.
:func:`not_flower.experiments.report.write_report` must write ``report.md`` and
``report.json`` byte for byte as recorded, and the same plot files: a refactoring of the
report modules must not change a character.

Regenerate (only when a change of the report is intended and explained)::

    PYTHONPATH=$PWD .venv/bin/python -m tests.test_report_golden
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from not_flower.experiments import report
from tests.test_baselines import _baseline_results
from tests.test_compare import (
    FT10,
    NOT10,
    NOT20,
    ORIG,
    RETRAIN,
    STOPPED,
    _with_classes,
    metrics,
    record,
    retrain_results,
    unlearner_results,
)
from tests.test_report_lira import _runs as lira_runs
from tests.test_report_lira import lira

GOLDEN = Path(__file__).parent / "golden" / "report"
COMMAND = "python -m not_flower.experiments.compare --out out --seeds 0 1"
SETTINGS = {"seeds": [0, 1], "recovery.rounds": [10, 20]}
#: The plot files write_report makes of :func:`runs`.
PLOTS = {
    "backdoor": ["backdoor-test-acc.png", "backdoor-forget-acc.png", "backdoor-asr.png"],
    "class": ["class-test-acc.png", "class-forget-acc.png", "class-asr.png"],
    "lira": ["lira-test-acc.png", "lira-forget-acc.png", "lira-asr.png"],
    "lira-none": ["lira-none-test-acc.png", "lira-none-forget-acc.png", "lira-none-asr.png"],
    "iid": ["iid-test-acc.png", "iid-forget-acc.png", "iid-asr.png"],
    "instance": [],
}


def runs() -> list[dict]:
    """Run records of six scenarios, each reaching a different part of the report."""
    out = []
    for seed in (0, 1):
        out.append(record("backdoor", seed, "retrain", retrain_results(RETRAIN[seed])))
        out.append(
            record(
                "backdoor",
                seed,
                "ft",
                unlearner_results("ft", ORIG[seed], {10: FT10[seed], 20: FT10[seed]}),
            )
        )
        out.append(
            record(
                "backdoor",
                seed,
                "not",
                unlearner_results(
                    "not",
                    ORIG[seed],
                    {10: NOT10[seed], 20: NOT20[seed]},
                    stop=4 + seed,
                    stopped=STOPPED[seed],
                ),
            )
        )
    out[0]["results"]["models"]["retrained"]["mia_loss_auc"] = float("nan")
    out.append(record("backdoor", 2, "ft", None, status="failed", error="boom"))
    out.append(record("backdoor", 2, "not", None, status="failed"))
    for seed in (0, 1):
        out.append(
            record(
                "class", seed, "retrain", retrain_results(_with_classes(RETRAIN[seed], 0.0, 0.97))
            )
        )
        at = {
            10: _with_classes(NOT10[seed], 0.02 * seed, 0.96),
            20: _with_classes(NOT20[seed], 0.0, 0.98),
        }
        out.append(
            record(
                "class",
                seed,
                "not",
                unlearner_results("not", _with_classes(ORIG[seed], 0.97, 0.97), at),
            )
        )
    for scenario, orig in (
        ("lira", None),
        ("lira-none", {s: lira(metrics(0.96, 0.95, 0.91, 0.05), 0.5, 0.011) for s in (0, 1)}),
    ):
        for r in lira_runs() if orig is None else lira_runs(orig):
            out.append({**r, "scenario": scenario})
    out += [
        record("iid", 0, "retrain", retrain_results(metrics(0.9, 0.4, 0.88, 0.5))),
        record(
            "iid",
            0,
            "not",
            unlearner_results(
                "not", metrics(0.96, 0.95, 0.91, 0.05), {2: metrics(0.9, 0.4, 0.88, 0.5)}, cap=2
            ),
        ),
        record("iid", 0, "pgd", _baseline_results("pgd", storage=3_000_000, step_rounds=1)),
        record(
            "iid", 0, "federaser", _baseline_results("federaser", storage=9_000_000, step_rounds=19)
        ),
        record("iid", 0, "fukd", _baseline_results("fukd", storage=0, step_rounds=2)),
        record("iid", 1, "fukd", _baseline_results("fukd", storage=5, step_rounds=2)),
        record("instance", 0, "retrain", None, status="failed", error="no data"),
    ]
    return out


def write(out_dir: Path) -> dict:
    """:func:`not_flower.experiments.report.write_report` of :func:`runs` into ``out_dir``."""
    return report.write_report(runs(), out_dir, command=COMMAND, settings=SETTINGS)


def test_report_is_the_recorded_one_byte_for_byte(tmp_path):
    rep = write(tmp_path)
    for name in ("report.md", "report.json"):
        assert (tmp_path / name).read_bytes() == (GOLDEN / name).read_bytes(), (
            f"{name} differs from tests/golden/report/{name}"
        )
    assert rep["plots"] == PLOTS
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == sorted(name for names in PLOTS.values() for name in names)


def main() -> int:
    """Write ``tests/golden/report/report.md`` and ``report.json``."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp))
        for name in ("report.md", "report.json"):
            (GOLDEN / name).write_bytes((Path(tmp) / name).read_bytes())
            print(f"wrote {GOLDEN / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
