"""Reference models and the LiRA harness: the attack detects an overfit model's training samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from not_flower.app.specs import data_spec, reference_spec
from not_flower.common.config import ConfigError, parse_run_config
from not_flower.evaluation.membership import (
    balanced_membership,
    lira_scores,
    logit_confidence,
    tpr_at_fpr,
)
from not_flower.evaluation.metrics import predict_logits
from not_flower.evaluation.reference_models import (
    MembershipHarness,
    build_universe,
    forget_mask,
    reference_confidences,
    reference_set,
)
from not_flower.task.data import load_dataset
from not_flower.task.models import build_model
from not_flower.task.training import train

TRAIN = dict(epochs=100, batch_size=32, lr=0.1, momentum=0.9)


@pytest.fixture(scope="module")
def overfit():
    """A deliberately overfit MLP and 8 reference MLPs, about 10 s on one core.

    1000 digits, a quarter of them with a random label (a model fits those only by
    memorising them); the target trains 100 epochs on a random half (100 % training
    accuracy, about 60 % on the other half); each reference model likewise on its half.
    """
    data = load_dataset("digits")
    x = np.concatenate([data.x_train, data.x_test])[:1000]
    y = np.concatenate([data.y_train, data.y_test])[:1000].copy()
    rng = np.random.default_rng(3)
    noisy = rng.random(len(y)) < 0.25
    y[noisy] = rng.integers(0, 10, int(noisy.sum()))
    n = len(y)
    members = np.zeros(n, dtype=bool)
    members[rng.permutation(n)[: n // 2]] = True
    make = lambda: build_model("mlp", (1, 8, 8), 10)  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: threads only contend
    try:
        torch.manual_seed(99)
        target = make()
        train(target, x[members], y[members], seed=99, dev=torch.device("cpu"), **TRAIN)
        keep = balanced_membership(8, n, seed=0)
        conf, seconds = reference_confidences(
            x, y, keep, make, seed=0, dev=torch.device("cpu"), **TRAIN
        )
        target_conf = logit_confidence(predict_logits(target, x), y)
    finally:
        torch.set_num_threads(threads)
    return members, lira_scores(target_conf, conf, keep), target_conf, seconds


def test_overfit_models_training_samples_are_detected(overfit):
    members, scores, target_conf, seconds = overfit
    nonmember = np.flatnonzero(~members)
    calib, unseen = nonmember[::2], nonmember[1::2]  # threshold set on one half only
    tpr_members = tpr_at_fpr(scores[members], scores[calib], 0.01)
    tpr_unseen = tpr_at_fpr(scores[unseen], scores[calib], 0.01)
    print(
        f"LiRA TPR@1%FPR: members {tpr_members:.3f}, unseen {tpr_unseen:.3f}; "
        f"8 reference MLPs in {seconds:.1f} s"
    )
    assert tpr_members > 0.15  # far above the 1 % of chance (measured 0.276)
    assert tpr_unseen < 0.035  # about 1 % (250 samples, threshold from 250 others; measured 0.020)
    # the reference models are what makes it work: raw confidence does much worse
    assert tpr_at_fpr(target_conf[members], target_conf[calib], 0.01) < 0.5 * tpr_members


# --------------------------------------------------------------------------- the harness


def _cfg(tmp_path, **extra):
    return parse_run_config(
        {
            "mia.reference-models": 4,
            "mia.reference-epochs": 3,
            "mia.cache-dir": str(tmp_path / "cache"),
            "model": "mlp",
            "backdoor.clients": "1",
            **extra,
        }
    )


def test_universe_is_the_clients_data_then_the_test_split(tmp_path):
    cfg = _cfg(tmp_path)
    u = build_universe(data_spec(cfg), 4)
    from not_flower.task.training import client_data, dataset_for

    for pid in range(4):
        part = client_data(data_spec(cfg), pid, 4)
        lo, hi = u.offsets[pid], u.offsets[pid + 1]
        np.testing.assert_array_equal(u.y[lo:hi], part.y_train)  # poisoned labels included
        np.testing.assert_array_equal(u.x[lo:hi], part.x_train)
    test = dataset_for(data_spec(cfg))
    n_test = len(test.y_test)
    np.testing.assert_array_equal(u.y[u.heldout][:n_test], test.y_test)
    # then as many test images as client 1 poisoned, with the trigger and label 0
    copies = u.y[u.heldout][n_test:]
    assert (
        len(copies) == len(client_data(data_spec(cfg), 1, 4).poisoned) > 0 and (copies == 0).all()
    )
    assert u.poisoned[u.heldout][n_test:].all() and not u.poisoned[u.heldout][:n_test].any()
    assert u.poisoned[: u.offsets[-1]].sum() == len(copies)
    assert (u.x[u.heldout][n_test:, :, -2:, -2:] == 1.0).all()
    plain = build_universe(data_spec(cfg), 4, altered_heldout=False)  # the attack before the copies
    assert len(plain.y) == u.offsets[-1] + n_test
    mask = forget_mask(u, {2})
    assert mask.sum() == u.offsets[3] - u.offsets[2] and not mask[u.heldout].any()
    cls = forget_mask(u, set(), classes={3}, all_clients=True)
    assert (u.y[cls] == 3).all() and cls.sum() == (u.y[: u.offsets[-1]] == 3).sum()
    inst = forget_mask(u, {1}, samples={1: {0, 5}})
    np.testing.assert_array_equal(np.flatnonzero(inst), u.offsets[1] + np.array([0, 5]))


def test_reference_set_is_cached_per_seed_and_shared(tmp_path):
    cfg = _cfg(tmp_path)
    u = build_universe(data_spec(cfg), 4)
    first = reference_set(data_spec(cfg), reference_spec(cfg), u, 4)
    assert not first.loaded and first.train_seconds > 0
    assert first.confidences.shape == (4, len(u.y)) and (first.membership.sum(0) == 2).all()
    # another method, same data and seed: loaded, identical
    retrain = _cfg(tmp_path, method="retrain")
    again = reference_set(data_spec(retrain), reference_spec(retrain), u, 4)
    assert again.loaded and again.path == first.path
    np.testing.assert_array_equal(again.confidences, first.confidences)
    # another seed: other models, other file
    cfg1 = _cfg(tmp_path, seed=1)
    other = reference_set(
        data_spec(cfg1), reference_spec(cfg1), build_universe(data_spec(cfg1), 4), 4
    )
    assert not other.loaded and other.path != first.path


def test_harness_metrics_on_a_model(tmp_path):
    cfg = _cfg(tmp_path)
    harness = MembershipHarness(data_spec(cfg), reference_spec(cfg))
    assert harness.metrics(build_model("mlp", (1, 8, 8), 10)) == {}
    harness.set_forget(4, {1})
    got = harness.metrics(build_model("mlp", (1, 8, 8), 10))
    assert set(got) == {"lira_auc", "lira_tpr_fpr1", "lira_tpr_fpr01", "lira_retain_tpr_fpr1"}
    assert all(0.0 <= v <= 1.0 for v in got.values())
    info = harness.info()
    assert info["reference_models"] == 4 and info["reference_epochs"] == 3
    assert info["universe"]["heldout"] == 360 + info["universe"]["heldout_altered"]
    assert info["universe"]["heldout_altered"] > 0 and info["train_seconds"] > 0


@pytest.mark.parametrize("bad", [1, 3, -2])
def test_reference_count_must_be_even(bad):
    with pytest.raises(ConfigError, match="mia.reference-models"):
        parse_run_config({"mia.reference-models": bad})
