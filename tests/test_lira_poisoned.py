"""LiRA on a forget set with poisoned samples: the below-50 AUC and its fix, on a known case.

A forget set 40 % poisoned (trigger + backdoor label), as the backdoor scenario's, compared
with clean held-out samples only, scores an AUC below 50 for a model that never saw it:
such a model has no backdoor, so it is far less confident on the poisoned samples than the
"out" reference models, which learn the backdoor from the other poisoned samples of their
half, and LiRA's ratio, linear in the confidence with the sample's large in-out gap as
slope, turns that into scores far below any held-out sample's. Compared with held-out
samples made the way the forget set was (the test images again with the trigger and the
backdoor label, weighted to the forget set's make-up), the attack gives about 50 for that
model and well above 50 for a model trained on the forget set.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from not_flower.evaluation.membership import (
    balanced_membership,
    lira_gaussians,
    lira_scores,
    logit_confidence,
    matching_weights,
    membership_auc,
    threshold_at_fpr,
    tpr_at_fpr,
)
from not_flower.evaluation.metrics import predict_logits
from not_flower.task.backdoor import poison, stamp_trigger
from not_flower.task.data import load_dataset
from not_flower.task.models import build_model
from not_flower.task.training import train

TRAIN = dict(epochs=30, batch_size=32, lr=0.1, momentum=0.9)
N_TRAIN, N_FORGET, N_HELDOUT = 1000, 150, 400
N_POISONED = 60  # 40 % of the forget set; as many held-out copies (as the harness makes)


@pytest.fixture(scope="module")
def case():
    """Digits: a universe of 1000 training samples (the first 150 the forget set, 60 of
    them poisoned), 400 held-out images and 60 of them again with the trigger and label 0
    (each reference model then trains on about as many poisoned samples as the target);
    a target trained on all 1000 ("member"), one on the 850 others ("non-member"), 8
    reference MLPs (the file ran in 35 s on the loaded 2-core machine)."""
    data = load_dataset("digits")
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test]).astype(np.int64)
    perm = np.random.default_rng(5).permutation(len(y))
    tr, ho = perm[:N_TRAIN], perm[N_TRAIN : N_TRAIN + N_HELDOUT]
    xf, yf, poisoned_idx = poison(x[tr[:N_FORGET]], y[tr[:N_FORGET]], 0.4, 0, seed=1)
    ux = np.concatenate([xf, x[tr[N_FORGET:]], x[ho], stamp_trigger(x[ho[:N_POISONED]])])
    uy = np.concatenate([yf, y[tr[N_FORGET:]], y[ho], np.zeros(N_POISONED, dtype=np.int64)])
    n = len(uy)
    forget = np.zeros(n, dtype=bool)
    forget[:N_FORGET] = True
    poisoned = np.zeros(n, dtype=bool)
    poisoned[poisoned_idx] = True
    poisoned[N_TRAIN + N_HELDOUT :] = True
    heldout = np.zeros(n, dtype=bool)
    heldout[N_TRAIN:] = True
    make = lambda: build_model("mlp", (1, 8, 8), 10)  # noqa: E731
    cpu = torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: threads only contend
    try:
        keep = balanced_membership(8, n, seed=0)
        ref = np.zeros(keep.shape)
        for m, rows in enumerate(keep):
            torch.manual_seed(m)
            model = make()
            train(model, ux[rows], uy[rows], seed=m, dev=cpu, **TRAIN)
            ref[m] = logit_confidence(predict_logits(model, ux), uy)
        conf = {}
        for name, rows in (("member", slice(0, N_TRAIN)), ("nonmember", slice(N_FORGET, N_TRAIN))):
            torch.manual_seed(100)
            model = make()
            train(model, ux[rows], uy[rows], seed=100, dev=cpu, **TRAIN)
            conf[name] = logit_confidence(predict_logits(model, ux), uy)
    finally:
        torch.set_num_threads(threads)
    return dict(
        ref=ref, keep=keep, conf=conf, forget=forget, poisoned=poisoned, heldout=heldout, y=uy
    )


def _attack(case, name):
    scores = lira_scores(case["conf"][name], case["ref"], case["keep"])
    f, h, p = case["forget"], case["heldout"], case["poisoned"]
    clean = h & ~p
    strata = case["y"] + 10 * p
    w = matching_weights(strata[f], strata[h])
    return {
        "unmatched_auc": membership_auc(scores[f], scores[clean]),
        "poisoned_auc": membership_auc(scores[f & p], scores[clean]),
        "matched_auc": membership_auc(scores[f], scores[h], w),
        "matched_tpr": tpr_at_fpr(scores[f], scores[h], 0.01, w),
        "z_poisoned": float(
            np.mean(
                (
                    case["conf"][name]
                    - lira_gaussians(case["conf"][name], case["ref"], case["keep"])["mu_out"]
                )[f & p]
            )
        ),
    }


def test_unmatched_held_out_set_puts_a_model_that_never_saw_the_forget_set_below_50(case):
    got = _attack(case, "nonmember")
    print("non-member:", {k: round(v, 3) for k, v in got.items()})
    assert got["unmatched_auc"] < 0.45  # the reported symptom: below 50 without a member
    assert got["poisoned_auc"] < 0.3  # driven by the poisoned samples ...
    assert got["z_poisoned"] < -2  # ... on which it is far below the "out" Gaussian


def test_matched_held_out_set_gives_50_without_and_above_50_with_membership(case):
    non, mem = _attack(case, "nonmember"), _attack(case, "member")
    print("non-member:", {k: round(v, 3) for k, v in non.items()})
    print("member:", {k: round(v, 3) for k, v in mem.items()})
    assert 0.42 < non["matched_auc"] < 0.58
    assert mem["matched_auc"] > 0.56  # measured 0.604
    assert mem["matched_tpr"] > 3 * max(non["matched_tpr"], 0.01)


def test_matching_weights_give_each_stratum_the_members_share():
    w = matching_weights(np.array([0, 0, 0, 1]), np.array([0, 1, 1, 2, 0]))
    np.testing.assert_allclose(w, [1.5, 0.5, 0.5, 0.0, 1.5])
    with pytest.raises(ValueError, match="no non-member"):
        matching_weights(np.array([3]), np.array([0, 1]))


def test_weighted_threshold_auc_and_tpr_known_answers():
    neg = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    # unit weights: the old rule (floor(fpr * N) + 1-th largest)
    assert threshold_at_fpr(neg, 0.2) == threshold_at_fpr(neg, 0.2, np.ones(5)) == 4.0
    # 5.0 carries half the weight: calling it a member already costs 50 % FPR
    w = np.array([4.0, 1.0, 1.0, 1.0, 1.0])
    assert threshold_at_fpr(neg, 0.2, w) == 5.0
    assert threshold_at_fpr(neg, 0.5, w) == 4.0
    assert threshold_at_fpr(neg, 0.25, np.array([0.0, 1, 1, 1, 1])) == 3.0  # weight 0: ignored
    assert tpr_at_fpr([4.5, 6.0], neg, 0.2, w) == 0.5
    # AUC: P(member > non-member) under the weights
    assert membership_auc([4.5], neg) == pytest.approx(0.8)
    assert membership_auc([4.5], neg, w) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="nonmember_weights"):
        membership_auc([1.0], neg, np.zeros(5))
