"""not_flower.evaluation.membership: LiRA's statistic, score and low-FPR metrics on cases with known
answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from not_flower.evaluation.membership import (
    balanced_membership,
    lira_scores,
    logit_confidence,
    membership_auc,
    membership_metrics,
    threshold_at_fpr,
    tpr_at_fpr,
)

# --------------------------------------------------------------------------- statistic


def test_logit_confidence_known_values():
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0], [1.0, 2.0], [50.0, 0.0]])
    got = logit_confidence(logits, np.array([0, 0, 1, 0]))
    # p = 1/2 -> 0; p = 3/4 -> log 3; [1, 2] label 1: p = e/(1+e) -> log e = 1; [50, 0] -> 50
    np.testing.assert_allclose(got, [0.0, math.log(3.0), 1.0, 50.0], rtol=0, atol=1e-12)


def test_logit_confidence_matches_the_softmax_formula_and_stays_finite():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 10)) * 3
    y = rng.integers(0, 10, size=200)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p[np.arange(200), y]
    np.testing.assert_allclose(logit_confidence(z, y), np.log(py / (1 - py)), rtol=1e-9, atol=1e-9)
    # where 1 - p underflows to 0 the direct formula is inf; this one is exact
    got = logit_confidence(np.array([[200.0, 0.0, -5.0]]), np.array([0]))[0]
    assert got == pytest.approx(200.0 - math.log(1.0 + math.exp(-5.0)), rel=1e-12)


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (np.zeros((3, 1)), np.zeros(3, dtype=int), "K >= 2"),
        (np.zeros((3, 2)), np.zeros(2, dtype=int), r"shape \(3,\)"),
        (np.array([[np.nan, 0.0]]), np.array([0]), "finite"),
        (np.zeros((2, 2)), np.array([0, 2]), r"\[0, 2\)"),
    ],
)
def test_logit_confidence_bad_input(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        logit_confidence(logits, labels)


# --------------------------------------------------------------------------- assignment


def test_balanced_membership_half_in_each_sample():
    keep = balanced_membership(8, 1000, seed=1)
    assert keep.shape == (8, 1000) and keep.dtype == bool
    assert (keep.sum(axis=0) == 4).all()
    assert np.abs(keep.sum(axis=1) - 500).max() < 60  # binomial(1000, 1/2): sd 16
    assert np.array_equal(keep, balanced_membership(8, 1000, seed=1))
    assert not np.array_equal(keep, balanced_membership(8, 1000, seed=2))


@pytest.mark.parametrize("m", [0, 1, 7, 2.5])
def test_balanced_membership_needs_even_count(m):
    with pytest.raises(ValueError, match="even integer >= 2"):
        balanced_membership(m, 10, seed=0)


# --------------------------------------------------------------------------- LiRA score


def _two_point_reference(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sample: 'in' models at 1.1 and 0.9, 'out' models at -1.1 and -0.9."""
    ref = np.tile(np.array([[1.1], [0.9], [-1.1], [-0.9]]), (1, n))
    ins = np.tile(np.array([[True], [True], [False], [False]]), (1, n))
    return ref, ins


def test_lira_score_known_answer_fixed_variance():
    ref, ins = _two_point_reference(5)
    # means +1 / -1; one pooled variance: 4N deviations of 0.1, 2N means fitted -> 0.02
    target = np.array([1.0, -1.0, 0.0, 3.0, -3.0])
    got = lira_scores(target, ref, ins)
    var = 0.02
    expected = [
        2.0**2 / (2 * var),
        -(2.0**2) / (2 * var),
        0.0,
        (16 - 4) / (2 * var),
        -(16 - 4) / (2 * var),
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert got[0] == pytest.approx(100.0)


def test_fixed_variance_is_shared_so_the_score_is_monotone():
    """In-side wide, out-side narrow: with separate variances a confidence far below both
    means would score as a member; with the shared one it is the least member-like."""
    ref = np.array([[4.0, 4.0], [8.0, 8.0], [1.9, 1.9], [2.1, 2.1]])
    ins = np.array([[True, True], [True, True], [False, False], [False, False]])
    c = np.array([-20.0, 6.0])
    shared = lira_scores(c, ref, ins)
    assert shared[0] < 0 < shared[1]
    separate = lira_scores(c, ref, ins, fixed_variance=False)
    assert separate[0] > 0  # the artefact the shared variance avoids
    grid = np.linspace(-30, 30, 61)
    ref1, ins1 = ref[:, :1], ins[:, :1]
    scores = [lira_scores(np.array([g]), ref1, ins1)[0] for g in grid]
    assert np.all(np.diff(scores) > 0)


def test_in_mean_below_out_mean_carries_no_evidence():
    """Sample 1's 'in' models are (by noise) less confident than its 'out' models: its score
    is 0 for any confidence, instead of calling a model that is wrong on it a member."""
    ref = np.array([[3.0, 1.0], [3.2, 1.2], [1.0, 3.0], [1.2, 3.2]])
    ins = np.array([[True, True], [True, True], [False, False], [False, False]])
    got = lira_scores(np.array([-50.0, -50.0]), ref, ins)
    assert got[0] < -100 and got[1] == 0.0
    assert lira_scores(np.array([50.0, 50.0]), ref, ins)[1] == 0.0


def test_lira_score_per_example_variance():
    # one sample; in: {2, 4} (mean 3, sd sqrt 2), out: {0, 0.2} (mean 0.1, sd sqrt 0.02)
    ref = np.array([[2.0], [4.0], [0.0], [0.2]])
    ins = np.array([[True], [True], [False], [False]])
    c = np.array([3.0])
    got = lira_scores(c, ref, ins, fixed_variance=False)[0]
    expected = norm.logpdf(3.0, 3.0, math.sqrt(2)) - norm.logpdf(3.0, 0.1, math.sqrt(0.02))
    assert got == pytest.approx(expected, rel=1e-9)


def test_lira_score_is_per_example():
    """Same target confidence, different samples: what counts is the sample's own in/out."""
    ref = np.array([[5.0, -5.0], [5.2, -4.8], [3.0, -7.0], [3.2, -6.8]])
    ins = np.array([[True, True], [True, True], [False, False], [False, False]])
    got = lira_scores(np.array([5.1, -4.9]), ref, ins)
    np.testing.assert_allclose(got[0], got[1])  # both sit on their own "in" mean
    assert got[0] > 0
    # the confidence 0 that is "out"-like for neither sample scores very differently
    swap = lira_scores(np.array([-4.9, 5.1]), ref, ins)
    assert swap[0] < 0 and swap[1] > 0


def test_lira_score_floor_and_errors():
    ref = np.ones((4, 3))
    ins = np.array([[True] * 3, [True] * 3, [False] * 3, [False] * 3])
    assert np.all(np.isfinite(lira_scores(np.zeros(3), ref, ins)))  # sd 0 -> min_std
    with pytest.raises(ValueError, match="at least 1 'in' and 1 'out'"):
        lira_scores(np.zeros(3), ref, np.ones((4, 3), dtype=bool))
    with pytest.raises(ValueError, match="at least 2 'in'"):
        lira_scores(
            np.zeros(3),
            ref,
            np.array([[True] * 3, [False] * 3, [False] * 3, [False] * 3]),
            fixed_variance=False,
        )
    with pytest.raises(ValueError, match="bool array of shape"):
        lira_scores(np.zeros(3), ref, ins.astype(int))
    with pytest.raises(ValueError, match=r"shape \(M, 2\)"):
        lira_scores(np.zeros(2), ref, ins)


def test_lira_on_gaussian_model_of_training_reaches_the_theoretical_tpr():
    """phi_in ~ N(d + 2, 1), phi_out ~ N(d, 1), d a per-sample difficulty: the optimal
    test's TPR at 1 % FPR is Phi(2 - z_0.99) = 0.372; LiRA with 4 + 4 reference models
    gets near it, and on non-members it calls about 1 % members."""
    rng = np.random.default_rng(0)
    n, m, shift = 20_000, 8, 2.0
    difficulty = rng.normal(0, 3, size=n)  # large: a global threshold would fail
    ins = balanced_membership(m, 2 * n, seed=0)
    d = np.r_[difficulty, rng.normal(0, 3, size=n)]
    ref = d + rng.normal(size=(m, 2 * n)) + shift * ins
    target = d + rng.normal(size=2 * n) + shift * np.r_[np.ones(n), np.zeros(n)]
    scores = lira_scores(target, ref, ins)
    members, nonmembers = scores[:n], scores[n:]
    optimal = norm.cdf(shift - norm.ppf(0.99))
    tpr = tpr_at_fpr(members, nonmembers, 0.01)
    assert optimal == pytest.approx(0.372, abs=1e-3)
    assert 0.6 * optimal < tpr <= optimal + 0.02
    # null: a fresh set of non-members against the same threshold -> about 1 %
    fresh = rng.normal(0, 3, size=n)
    ins2 = balanced_membership(m, n, seed=1)
    null = lira_scores(
        fresh + rng.normal(size=n), fresh + rng.normal(size=(m, n)) + shift * ins2, ins2
    )
    assert 0.005 < tpr_at_fpr(null, nonmembers, 0.01) < 0.02
    # the confidence alone (no reference models) is much weaker
    assert tpr_at_fpr(target[:n], target[n:], 0.01) < 0.5 * tpr


# --------------------------------------------------------------------------- metrics


def test_threshold_and_tpr_known_answers():
    neg = np.arange(100, dtype=float)  # 0 .. 99
    assert threshold_at_fpr(neg, 0.01) == 98.0  # only 99 is above: 1 %
    assert threshold_at_fpr(neg, 0.001) == 99.0  # none above
    assert threshold_at_fpr(neg, 0.05) == 94.0
    pos = np.array([98.5, 99.5, 50.0])
    assert tpr_at_fpr(pos, neg, 0.01) == pytest.approx(2 / 3)
    assert tpr_at_fpr(pos, neg, 0.001) == pytest.approx(1 / 3)
    # ties at the threshold only lower the realised FPR
    tied = np.r_[np.zeros(98), 5.0, 5.0]
    assert np.mean(tied > threshold_at_fpr(tied, 0.01)) == 0.0


def test_auc_known_answers():
    assert membership_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert membership_auc([1.0, 3.0], [2.0]) == 0.5
    assert membership_auc([0.0], [1.0, 2.0]) == 0.0


def test_membership_metrics_keys_and_values():
    neg = np.arange(1000, dtype=float)
    forget = np.array([995.5, 999.5, 10.0, 20.0])  # 2 above the 1 % threshold (989), 1 above 0.1 %
    retain = np.array([1e4, 1e4, 0.0, 0.0, 0.0])
    got = membership_metrics(forget, neg, retain)
    assert set(got) == {"lira_auc", "lira_tpr_fpr1", "lira_tpr_fpr01", "lira_retain_tpr_fpr1"}
    assert got["lira_tpr_fpr1"] == 0.5 and got["lira_tpr_fpr01"] == 0.25
    assert got["lira_retain_tpr_fpr1"] == pytest.approx(0.4)
    assert got["lira_auc"] == pytest.approx(
        np.mean([0.996, 1.0, 0.0105, 0.0205]),  # ties with a negative count half
        abs=1e-9,
    )


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([], [1.0]), "member_scores must be a non-empty"),
        (([1.0], [np.nan]), "must not contain NaN"),
    ],
)
def test_metrics_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        membership_metrics(*args)


def test_fpr_out_of_range():
    with pytest.raises(ValueError, match=r"fpr must be in \[0, 1\)"):
        tpr_at_fpr([1.0], [0.0], 1.0)
