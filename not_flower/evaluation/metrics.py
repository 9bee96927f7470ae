"""Evaluation metrics for federated unlearning.

Everything here is a pure function over numpy arrays except
:func:`predict_logits` (which runs a torch model) and :func:`evaluate_model`
(which calls it).  Accuracies, MIA-efficacy and ASR are fractions in
``[0, 1]``; only :func:`avg_gap` reports points (fractions times 100), as the
unlearning literature does.

Definitions (as in the NoT paper, Khalil et al. CVPR 2025, and the unlearning
literature it follows):

* **MIA-efficacy** (SalUn / Jia et al. 2023): an RBF SVC is trained on
  per-sample ``[confidence of the true label, prediction entropy]`` features
  with retain samples as members (1) and test samples as non-members (0),
  balanced; the score is the share of forget samples it predicts to be
  non-members.  Retrain lands near 0.5 on a balanced attack.
* **ASR**: share of triggered test images whose true class differs from the
  backdoor target that the model assigns to the target.
* **Avg Gap**: mean of ``|method - retrain|`` over retain, forget and test
  accuracy and MIA-efficacy, in points.

This module holds :func:`evaluate_model`, the one-call evaluation, and re-exports
every metric from where it is defined: accuracy, losses, softmax, ASR and
:func:`predict_logits` from :mod:`not_flower.evaluation.classification`; the MIA-efficacy
attack and the loss-threshold AUC from :mod:`not_flower.evaluation.population_mia`; Avg Gap and
its metric keys from :mod:`not_flower.evaluation.gap`.
"""

from __future__ import annotations

import functools
from numbers import Integral

import numpy as np
import torch

from not_flower.evaluation.classification import (
    accuracy,
    attack_success_rate,
    cross_entropy,
    log_softmax,
    per_sample_loss,
    predict_logits,
    softmax,
)
from not_flower.evaluation.gap import GAP_KEYS, GAP_KEYS_LIRA, avg_gap
from not_flower.evaluation.population_mia import loss_threshold_auc, mia_efficacy, mia_features

__all__ = [
    "GAP_KEYS",
    "GAP_KEYS_LIRA",
    "predict_logits",
    "accuracy",
    "cross_entropy",
    "per_sample_loss",
    "softmax",
    "log_softmax",
    "mia_features",
    "mia_efficacy",
    "loss_threshold_auc",
    "attack_success_rate",
    "avg_gap",
    "evaluate_model",
]


# --------------------------------------------------------------------------- #
# one-call evaluation
# --------------------------------------------------------------------------- #
def _split(pair: tuple[np.ndarray, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        x, y = pair
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a tuple (x, y); got {type(pair).__name__}") from None
    return np.asarray(x), np.asarray(y)


def evaluate_model(
    model: torch.nn.Module,
    *,
    forget: tuple[np.ndarray, np.ndarray] | None,
    retain: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    backdoor_target: int | None = None,
    triggered_test_x: np.ndarray | None = None,
    triggered_test_y: np.ndarray | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    mia_max_per_class: int | None = 5000,
) -> dict[str, float]:
    """Evaluate a model on the unlearning protocol's sets.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (already on ``device``); its training flag is kept.
    forget : tuple (x, y) or None
        The target client's training data as it held it (poisoned labels
        included), or ``None`` to skip the forget metrics.
    retain : tuple (x, y)
        The other clients' training data.
    test : tuple (x, y)
        The held-out test split.
    backdoor_target : int or None
        Backdoor target class; give together with ``triggered_test_x``.
    triggered_test_x : np.ndarray or None
        Triggered test images, e.g. from
        :func:`not_flower.task.backdoor.triggered_test_set`.
    triggered_test_y : np.ndarray or None
        Their true labels.  If given, images of class ``backdoor_target`` are
        excluded from the ASR; if ``None``, every image is assumed to have a
        true label other than the target (as ``triggered_test_set`` returns).
    seed : int, default 0
        Seed of the MIA balancing subsample.
    device : str or torch.device, default "cpu"
        Where inputs are sent.
    batch_size : int, default 512
        Forward-pass batch size.
    mia_max_per_class : int or None, default 5000
        ``max_per_class`` of :func:`mia_efficacy`.

    Returns
    -------
    dict[str, float]
        Always ``test_acc``, ``test_loss``, ``retain_acc``, ``retain_loss``.
        With ``forget``: ``forget_acc``, ``forget_loss``, ``mia_efficacy``
        (:func:`mia_efficacy`, retain = members, test = non-members) and
        ``mia_loss_auc`` = :func:`loss_threshold_auc` of forget losses
        (positive) against test losses (negative): 0.5 means the forget set's
        losses are indistinguishable from unseen data, near 1 that the model
        still fits it like training data.  With ``backdoor_target`` and
        ``triggered_test_x``: ``asr``.  Accuracies, MIA and ASR are fractions
        in ``[0, 1]``; losses are mean cross-entropy in nats.

    Raises
    ------
    ValueError
        If only one of ``backdoor_target`` / ``triggered_test_x`` is given,
        ``triggered_test_y`` is given without them, or any set is invalid.
    """
    _check_backdoor_args(backdoor_target, triggered_test_x, triggered_test_y)
    run = functools.partial(predict_logits, model, batch_size=batch_size, device=device)
    x_te, y_te = _split(test, "test")
    x_re, y_re = _split(retain, "retain")
    te_lg, re_lg = run(x_te), run(x_re)
    out = {**_set_metrics("test", te_lg, y_te), **_set_metrics("retain", re_lg, y_re)}
    if forget is not None:
        x_fo, y_fo = _split(forget, "forget")
        out.update(
            _forget_metrics(
                run(x_fo),
                y_fo,
                re_lg,
                y_re,
                te_lg,
                y_te,
                seed=seed,
                mia_max_per_class=mia_max_per_class,
            )
        )
    if triggered_test_x is not None:
        tr_lg = run(np.asarray(triggered_test_x))
        out["asr"] = attack_success_rate(
            tr_lg, _triggered_labels(tr_lg, triggered_test_y, backdoor_target), backdoor_target
        )
    return out


def _set_metrics(name: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{name}_acc`` (:func:`accuracy`) and ``{name}_loss`` (:func:`cross_entropy`)."""
    return {f"{name}_acc": accuracy(logits, labels), f"{name}_loss": cross_entropy(logits, labels)}


def _check_backdoor_args(
    backdoor_target: int | None,
    triggered_test_x: np.ndarray | None,
    triggered_test_y: np.ndarray | None,
) -> None:
    """Refuse a half-given backdoor evaluation (see :func:`evaluate_model`).

    Raises
    ------
    ValueError
        If only one of ``backdoor_target`` / ``triggered_test_x`` is given, or
        ``triggered_test_y`` is given without ``triggered_test_x``.
    """
    if (backdoor_target is None) != (triggered_test_x is None):
        raise ValueError(
            "backdoor_target and triggered_test_x must be given together; got "
            f"backdoor_target={backdoor_target!r} and triggered_test_x "
            f"{'None' if triggered_test_x is None else 'given'}"
        )
    if triggered_test_y is not None and triggered_test_x is None:
        raise ValueError("triggered_test_y was given without triggered_test_x")


def _forget_metrics(
    forget_logits: np.ndarray,
    forget_labels: np.ndarray,
    retain_logits: np.ndarray,
    retain_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    *,
    seed: int,
    mia_max_per_class: int | None,
) -> dict[str, float]:
    """The forget set's metrics of :func:`evaluate_model`, from the three sets' logits.

    Returns
    -------
    dict[str, float]
        ``forget_acc``, ``forget_loss``, ``mia_efficacy`` (retain = members, test =
        non-members) and ``mia_loss_auc`` (forget losses against test losses).
    """
    return {
        "forget_acc": accuracy(forget_logits, forget_labels),
        "forget_loss": cross_entropy(forget_logits, forget_labels),
        "mia_efficacy": mia_efficacy(
            forget_logits,
            forget_labels,
            retain_logits,
            retain_labels,
            test_logits,
            test_labels,
            seed=seed,
            max_per_class=mia_max_per_class,
        ),
        "mia_loss_auc": loss_threshold_auc(
            per_sample_loss(forget_logits, forget_labels),
            per_sample_loss(test_logits, test_labels),
        ),
    }


def _triggered_labels(
    triggered_logits: np.ndarray,
    triggered_test_y: np.ndarray | None,
    backdoor_target: int,
) -> np.ndarray:
    """True labels of the triggered images for the ASR.

    Parameters
    ----------
    triggered_logits : np.ndarray
        The model's logits ``(N, K)`` on the triggered images.
    triggered_test_y : np.ndarray or None
        Their true labels; if ``None``, every image is taken to be of a class other than
        the target, and the labels returned are ``(backdoor_target + 1) % K``.
    backdoor_target : int
        Backdoor target class.

    Returns
    -------
    np.ndarray
        Labels, shape ``(N,)``.

    Raises
    ------
    ValueError
        ``triggered_test_y`` is ``None`` and ``backdoor_target`` is not an integer class
        in ``[0, K)`` with ``K >= 2``.
    """
    if triggered_test_y is not None:
        return np.asarray(triggered_test_y)
    k = triggered_logits.shape[1]
    if (
        isinstance(backdoor_target, bool)
        or not isinstance(backdoor_target, Integral)
        or not 0 <= backdoor_target < k
        or k < 2
    ):
        raise ValueError(
            f"backdoor_target must be an integer class in [0, {k}) with K >= 2; "
            f"got {backdoor_target!r}"
        )
    return np.full(triggered_logits.shape[0], (int(backdoor_target) + 1) % k, dtype=np.int64)
