from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from not_flower.evaluation import population_mia
from not_flower.evaluation.metrics import (
    accuracy,
    attack_success_rate,
    avg_gap,
    cross_entropy,
    evaluate_model,
    loss_threshold_auc,
    mia_efficacy,
    mia_features,
    per_sample_loss,
    predict_logits,
    softmax,
)


# --------------------------------------------------------------------------- #
# accuracy / loss / softmax
# --------------------------------------------------------------------------- #
def test_accuracy_and_cross_entropy_hand_computed():
    logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    labels = np.array([0, 0])
    assert accuracy(logits, labels) == 0.5
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2
    assert cross_entropy(logits, labels) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(
        per_sample_loss(logits, labels),
        [math.log1p(math.exp(-2)), math.log1p(math.exp(2))],
        rtol=1e-12,
    )


def test_accuracy_ties_go_to_lowest_index():
    assert accuracy(np.zeros((3, 4)), np.array([0, 1, 0])) == pytest.approx(2 / 3)


def test_softmax_values_and_stability():
    p = softmax(np.array([[0.0, math.log(3.0)], [1000.0, 1000.0]]))
    np.testing.assert_allclose(p, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-12)
    # Huge logits: no overflow, loss finite and exact.
    loss = cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0, rel=1e-12)
    np.testing.assert_allclose(softmax(np.array([[-1e4, 0.0, 1e4]])).sum(), 1.0)


def test_uniform_logits_loss_is_log_k():
    assert cross_entropy(np.zeros((5, 10)), np.arange(5)) == pytest.approx(math.log(10))


@pytest.mark.parametrize(
    "logits, labels, match",
    [
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "empty"),
        (np.zeros(3), np.zeros(3, dtype=int), "2-D"),
        (np.zeros((2, 2)), np.array([0]), "1 entries"),
        (np.zeros((2, 2)), np.array([0, 2]), r"\[0, 2\)"),
        (np.zeros((2, 2)), np.array([0.0, 1.0]), "integer"),
        (np.array([[np.nan, 0.0]]), np.array([0]), "finite"),
    ],
)
def test_accuracy_and_loss_errors(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        accuracy(logits, labels)
    with pytest.raises(ValueError, match=match):
        cross_entropy(logits, labels)


# --------------------------------------------------------------------------- #
# MIA features and efficacy
# --------------------------------------------------------------------------- #
def test_mia_features_hand_computed():
    logits = np.array([[0.0, 0.0], [0.0, math.log(3.0)], [50.0, 0.0]])
    labels = np.array([0, 1, 0])
    f = mia_features(logits, labels)
    assert f.shape == (3, 2)
    np.testing.assert_allclose(f[:, 0], [0.5, 0.75, 1.0], atol=1e-12)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    np.testing.assert_allclose(f[:, 1], [math.log(2), h, 0.0], atol=1e-12)


def _member_like(rng, n, k=10):
    """Confident, correct: logit of the label ~ 8 above the rest."""
    labels = rng.integers(0, k, n)
    logits = rng.normal(0.0, 0.5, (n, k))
    logits[np.arange(n), labels] += 8.0
    return logits, labels


def _nonmember_like(rng, n, k=10):
    """Unsure: logit of the label only ~ 0.5 above the rest."""
    labels = rng.integers(0, k, n)
    logits = rng.normal(0.0, 0.5, (n, k))
    logits[np.arange(n), labels] += 0.5
    return logits, labels


def test_mia_forget_like_members_gives_near_zero():
    rng = np.random.default_rng(1)
    r = _member_like(rng, 300)
    t = _nonmember_like(rng, 300)
    f = _member_like(rng, 200)
    assert mia_efficacy(*f, *r, *t) <= 0.02


def test_mia_forget_like_nonmembers_gives_near_one():
    rng = np.random.default_rng(2)
    r = _member_like(rng, 300)
    t = _nonmember_like(rng, 300)
    f = _nonmember_like(rng, 200)
    assert mia_efficacy(*f, *r, *t) >= 0.98


def test_mia_half_and_half_forget_gives_half():
    rng = np.random.default_rng(3)
    r = _member_like(rng, 300)
    t = _nonmember_like(rng, 300)
    fm, fn = _member_like(rng, 100), _nonmember_like(rng, 100)
    f = (np.concatenate([fm[0], fn[0]]), np.concatenate([fm[1], fn[1]]))
    assert mia_efficacy(*f, *r, *t) == pytest.approx(0.5, abs=0.03)


class _SpyPipeline:
    """Wraps the real pipeline and records what it was fitted on."""

    calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __init__(self, inner):
        self.inner = inner

    def fit(self, x, y):
        _SpyPipeline.calls.append((np.array(x), np.array(y)))
        self.inner.fit(x, y)
        return self

    def predict(self, x):
        return self.inner.predict(x)


@pytest.fixture
def spy(monkeypatch):
    real = population_mia.attack_model
    _SpyPipeline.calls = []
    monkeypatch.setattr(population_mia, "attack_model", lambda: _SpyPipeline(real()))
    return _SpyPipeline.calls


def test_mia_balances_groups(spy):
    rng = np.random.default_rng(4)
    r = _member_like(rng, 1000)
    t = _nonmember_like(rng, 50)
    f = _member_like(rng, 20)
    mia_efficacy(*f, *r, *t, seed=0)
    ((x, y),) = spy
    assert x.shape == (100, 2)
    assert (y == 1).sum() == 50 and (y == 0).sum() == 50
    # Non-members are the whole test set, in order.
    np.testing.assert_allclose(x[y == 0], mia_features(*t))
    # Members are 50 distinct retain rows.
    member_rows = mia_features(*r)
    picked = [int(np.flatnonzero((member_rows == row).all(axis=1))[0]) for row in x[y == 1]]
    assert len(set(picked)) == 50


def test_mia_cap_and_seed_determinism(spy):
    rng = np.random.default_rng(5)
    r = _member_like(rng, 200)
    t = _nonmember_like(rng, 150)
    f = (
        np.concatenate([_member_like(rng, 30)[0], _nonmember_like(rng, 30)[0]]),
        rng.integers(0, 10, 60),
    )
    a = mia_efficacy(*f, *r, *t, seed=7, max_per_class=40)
    b = mia_efficacy(*f, *r, *t, seed=7, max_per_class=40)
    c = mia_efficacy(*f, *r, *t, seed=8, max_per_class=40)
    assert a == b
    assert 0.0 <= c <= 1.0
    assert [call[0].shape for call in spy] == [(80, 2)] * 3
    np.testing.assert_array_equal(spy[0][0], spy[1][0])
    assert not np.array_equal(spy[0][0], spy[2][0])


def test_mia_result_ignores_extra_members_beyond_the_sample():
    """With the same seed, appending members changes nothing once every
    retain sample is identical: the attack sees 50 vs 50 either way."""
    rng = np.random.default_rng(6)
    row = _member_like(rng, 1)
    r_small = (np.repeat(row[0], 50, axis=0), np.repeat(row[1], 50))
    r_big = (np.repeat(row[0], 1000, axis=0), np.repeat(row[1], 1000))
    t = _nonmember_like(rng, 50)
    f = _nonmember_like(rng, 40)
    assert mia_efficacy(*f, *r_small, *t) == mia_efficacy(*f, *r_big, *t)


def test_mia_errors():
    rng = np.random.default_rng(7)
    r = _member_like(rng, 10)
    t = _nonmember_like(rng, 10)
    f = _member_like(rng, 5)
    empty = (np.zeros((0, 10)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="forget set is empty"):
        mia_efficacy(*empty, *r, *t)
    with pytest.raises(ValueError, match="retain set has 1 sample"):
        mia_efficacy(*f, r[0][:1], r[1][:1], *t)
    with pytest.raises(ValueError, match="test set has 0 sample"):
        mia_efficacy(*f, *r, *empty)
    with pytest.raises(ValueError, match="max_per_class"):
        mia_efficacy(*f, *r, *t, max_per_class=1)
    with pytest.raises(ValueError, match="same number of classes"):
        mia_efficacy(f[0][:, :5], np.zeros(5, dtype=int), *r, *t)


# --------------------------------------------------------------------------- #
# loss-threshold AUC
# --------------------------------------------------------------------------- #
def test_loss_threshold_auc_known_values():
    assert loss_threshold_auc(np.array([0.1, 0.2]), np.array([1.0, 2.0, 3.0])) == 1.0
    assert loss_threshold_auc(np.array([1.0, 2.0]), np.array([0.1, 0.2])) == 0.0
    same = np.array([0.1, 0.5, 0.9])
    assert loss_threshold_auc(same, same) == 0.5
    # One of four pairs ordered wrongly: member 0.5 vs non-member 0.4.
    assert loss_threshold_auc(np.array([0.1, 0.5]), np.array([0.4, 0.9])) == 0.75


def test_loss_threshold_auc_errors():
    with pytest.raises(ValueError, match="member_losses is empty"):
        loss_threshold_auc(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="nonmember_losses is empty"):
        loss_threshold_auc(np.array([1.0]), np.array([]))
    with pytest.raises(ValueError, match="finite"):
        loss_threshold_auc(np.array([np.nan]), np.array([1.0]))


# --------------------------------------------------------------------------- #
# attack success rate
# --------------------------------------------------------------------------- #
def test_asr_hand_made_and_excludes_target_class():
    target = 2
    logits = np.array(
        [
            [0.0, 0.0, 5.0],  # true 0 -> predicted target: success
            [0.0, 5.0, 0.0],  # true 1 -> predicted 1: failure
            [5.0, 0.0, 0.0],  # true 1 -> predicted 0: failure
            [0.0, 0.0, 5.0],  # true 0 -> success
            [0.0, 0.0, 5.0],  # true 2 == target: excluded
            [5.0, 0.0, 0.0],  # true 2 == target: excluded
        ]
    )
    labels = np.array([0, 1, 1, 0, 2, 2])
    assert attack_success_rate(logits, labels, target) == 0.5


def test_asr_errors():
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match="no triggered sample"):
        attack_success_rate(logits, np.array([1, 1]), 1)
    with pytest.raises(ValueError, match=r"target must be .*\[0, 3\).*got 3"):
        attack_success_rate(logits, np.array([0, 1]), 3)


# --------------------------------------------------------------------------- #
# avg gap
# --------------------------------------------------------------------------- #
def test_avg_gap_hand_computed():
    retrain = {
        "retain_acc": 0.9166,
        "forget_acc": 0.8305,
        "test_acc": 0.8232,
        "mia_efficacy": 0.5023,
    }
    method = {
        "retain_acc": 0.9169,
        "forget_acc": 0.8386,
        "test_acc": 0.8265,
        "mia_efficacy": 0.5023,
        "extra": 7.0,
    }
    # (0.03 + 0.81 + 0.33 + 0) / 4 = 0.2925 points
    assert avg_gap(method, retrain) == pytest.approx(0.2925, abs=1e-9)
    assert avg_gap(method, retrain, keys=("forget_acc",)) == pytest.approx(0.81, abs=1e-9)
    assert avg_gap(retrain, retrain) == 0.0


def test_avg_gap_errors():
    full = {"retain_acc": 0.5, "forget_acc": 0.5, "test_acc": 0.5, "mia_efficacy": 0.5}
    partial = {k: v for k, v in full.items() if k != "mia_efficacy"}
    with pytest.raises(ValueError, match="'mia_efficacy' missing from retrain"):
        avg_gap(full, partial)
    with pytest.raises(ValueError, match="'mia_efficacy' missing from method"):
        avg_gap(partial, full)
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]; got 91.66"):
        avg_gap({**full, "retain_acc": 91.66}, full)
    with pytest.raises(ValueError, match="at least one"):
        avg_gap(full, full, keys=())


# --------------------------------------------------------------------------- #
# torch: predict_logits / evaluate_model
# --------------------------------------------------------------------------- #
def _fixed_model() -> torch.nn.Module:
    """Linear 2 -> 2 model predicting class 0 iff x0 > x1 (logits = x)."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
        model[1].bias.zero_()
    return model


def test_predict_logits_batches_and_restores_mode():
    model = _fixed_model()
    model.train()
    x = np.arange(14, dtype=np.float64).reshape(7, 2)
    out = predict_logits(model, x, batch_size=3)
    assert out.dtype == np.float32 and out.shape == (7, 2)
    np.testing.assert_array_equal(out, x.astype(np.float32))
    assert model.training is True
    model.eval()
    predict_logits(model, x)
    assert model.training is False


def test_predict_logits_runs_in_eval_mode_without_grad():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["training"] = self.training
            seen["grad"] = torch.is_grad_enabled()
            return x

    probe = Probe().train()
    predict_logits(probe, np.zeros((2, 3)))
    assert seen == {"training": False, "grad": False}
    assert probe.training


def test_predict_logits_errors():
    with pytest.raises(ValueError, match="batch_size"):
        predict_logits(_fixed_model(), np.zeros((2, 2)), batch_size=0)
    with pytest.raises(ValueError, match="at least one sample"):
        predict_logits(_fixed_model(), np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"shape \(batch, K\)"):
        predict_logits(torch.nn.Identity(), np.zeros((2, 2, 2)))


def test_evaluate_model_known_numbers():
    model = _fixed_model()
    rng = np.random.default_rng(0)

    def make(n_right, n_wrong):
        # "right": label 0 with x0 > x1 or label 1 with x1 > x0.
        x = rng.uniform(0, 1, (n_right + n_wrong, 2))
        hi, lo = x.max(axis=1), x.min(axis=1)
        y = rng.integers(0, 2, n_right + n_wrong)
        x[:, 0] = np.where(y == 0, hi, lo)
        x[:, 1] = np.where(y == 0, lo, hi)
        y[n_right:] = 1 - y[n_right:]
        return x.astype(np.float32), y

    retain = make(8, 2)  # 0.8
    test = make(3, 1)  # 0.75
    forget = make(1, 3)  # 0.25
    out = evaluate_model(model, forget=forget, retain=retain, test=test)
    assert out["retain_acc"] == 0.8
    assert out["test_acc"] == 0.75
    assert out["forget_acc"] == 0.25
    assert out["test_loss"] == pytest.approx(cross_entropy(test[0], test[1]), rel=1e-6)
    assert out["retain_loss"] == pytest.approx(cross_entropy(retain[0], retain[1]), rel=1e-6)
    assert out["forget_loss"] == pytest.approx(cross_entropy(forget[0], forget[1]), rel=1e-6)
    assert out["mia_efficacy"] == mia_efficacy(*forget, *retain, *test)
    assert out["mia_loss_auc"] == loss_threshold_auc(
        per_sample_loss(*forget), per_sample_loss(*test)
    )
    assert set(out) == {
        "test_acc",
        "test_loss",
        "retain_acc",
        "retain_loss",
        "forget_acc",
        "forget_loss",
        "mia_efficacy",
        "mia_loss_auc",
    }


def test_evaluate_model_without_forget_and_with_asr():
    model = _fixed_model()
    x = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    y = np.array([0, 1])
    trig = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    out = evaluate_model(
        model, forget=None, retain=(x, y), test=(x, y), backdoor_target=1, triggered_test_x=trig
    )
    assert out["test_acc"] == 1.0 and out["retain_acc"] == 1.0
    assert out["asr"] == pytest.approx(2 / 3)
    assert "forget_acc" not in out and "mia_efficacy" not in out
    # With true labels, the class-1 image is excluded: 1 of 2 eligible hits.
    out = evaluate_model(
        model,
        forget=None,
        retain=(x, y),
        test=(x, y),
        backdoor_target=1,
        triggered_test_x=trig,
        triggered_test_y=np.array([0, 1, 0]),
    )
    assert out["asr"] == 0.5
    with pytest.raises(ValueError, match="together"):
        evaluate_model(model, forget=None, retain=(x, y), test=(x, y), backdoor_target=1)
