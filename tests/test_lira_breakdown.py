"""benchmarks/lira_breakdown.py: the per-group numbers on a constructed case, and its tables."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import lira_breakdown  # noqa: E402


def test_breakdown_of_a_group_far_below_its_out_mean():
    rng = np.random.default_rng(0)
    m, n = 8, 400
    keep = np.zeros((m, n), dtype=bool)
    keep[: m // 2] = True  # models 0-3 "in" for every sample
    ref = rng.normal(0.0, 1.0, (m, n))
    ref[: m // 2] += 1.0  # gap 1 everywhere ...
    low = np.zeros(n, dtype=bool)
    low[:100] = True
    ref[: m // 2, :100] += 2.0  # ... 3 on the first 100 samples
    target = ref[m // 2 :].mean(axis=0)  # at the "out" mean: a non-member everywhere
    target[:100] -= 4.0  # far below it on the first 100 (a model without the backdoor)
    heldout = np.zeros(n, dtype=bool)
    heldout[200:] = True
    masks = {"forget-poisoned": low, "forget-clean": ~low & ~heldout, "heldout": heldout}
    got = lira_breakdown.breakdown(target, ref, keep, masks)
    assert got["forget-poisoned"]["n"] == 100 and got["heldout"]["auc"] == 0.5
    assert got["forget-poisoned"]["gap"] == pytest.approx(3.0, abs=0.3)
    assert got["forget-poisoned"]["z_out"] < -3 and abs(got["heldout"]["z_out"]) < 0.1
    assert got["forget-poisoned"]["auc"] < 0.05  # far below every held-out sample
    assert 0.4 < got["forget-clean"]["auc"] < 0.6
    per_seed = {"seed0": {"original": {**got, "_metrics": {}}}}
    lines = lira_breakdown.table(per_seed)
    assert lines[0].startswith("| model | group |") and len(lines) == 2 + 3
