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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

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

#: Metrics averaged by :func:`avg_gap` by default (the paper's four).
GAP_KEYS: tuple[str, ...] = ("retain_acc", "forget_acc", "test_acc", "mia_efficacy")

#: The second gap, "Avg Gap (LiRA)": the paper's four with MIA-efficacy replaced by the
#: per-example attack's AUC on the forget set against held-out samples
#: (:mod:`not_flower.membership`), which does not saturate or flip with the population
#: attack's decision boundary.
GAP_KEYS_LIRA: tuple[str, ...] = ("retain_acc", "forget_acc", "test_acc", "lira_auc")


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _check_logits(logits: np.ndarray, name: str = "logits") -> np.ndarray:
    arr = np.asarray(logits)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, K); got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one class column; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_:
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; found NaN or inf")
    return arr


def _check_labels(labels: np.ndarray, n: int, k: int, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the logits have {n} rows")
    if not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_):
        raise ValueError(f"{name} must hold integer class indices; got dtype {arr.dtype}")
    if n and (arr.min() < 0 or arr.max() >= k):
        raise ValueError(
            f"{name} must lie in [0, {k}) for {k} classes; "
            f"got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int64, copy=False)


def _check_pair(
    logits: np.ndarray, labels: np.ndarray, what: str = "", *, allow_empty: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    pre = f"{what} " if what else ""
    lg = _check_logits(logits, f"{pre}logits")
    lb = _check_labels(labels, lg.shape[0], lg.shape[1], f"{pre}labels")
    if not allow_empty and lg.shape[0] == 0:
        raise ValueError(f"{pre}logits are empty (N = 0); need at least one sample")
    return lg, lb


# --------------------------------------------------------------------------- #
# running a model
# --------------------------------------------------------------------------- #
def predict_logits(
    model: torch.nn.Module,
    x: np.ndarray,
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Run ``model`` on ``x`` in evaluation mode and return its logits.

    The model is put in ``eval()`` mode and run under ``torch.no_grad()``;
    its previous training flag is restored afterwards, even on error.  The
    model must already be on ``device``; only the inputs are moved there.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier mapping a float32 batch ``(B, ...)`` to logits ``(B, K)``.
    x : np.ndarray
        Inputs, shape ``(N, ...)``, already preprocessed (they are cast to
        float32, not rescaled).  ``N`` must be at least 1.
    batch_size : int, default 512
        Samples per forward pass, ``>= 1``.
    device : str or torch.device, default "cpu"
        Device the inputs are moved to.

    Returns
    -------
    np.ndarray
        float32 logits, shape ``(N, K)``.

    Raises
    ------
    ValueError
        If ``x`` is empty or not at least 1-D, ``batch_size < 1``, or the
        model does not return a 2-D output with one row per sample.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    arr = np.asarray(x)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(f"x must hold at least one sample; got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    was_training = model.training
    model.eval()
    outs: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for start in range(0, arr.shape[0], batch_size):
                xb = torch.from_numpy(np.array(arr[start : start + batch_size])).to(device)
                out = model(xb)
                if out.ndim != 2 or out.shape[0] != xb.shape[0]:
                    raise ValueError(
                        "model must return logits of shape (batch, K); "
                        f"got {tuple(out.shape)} for a batch of {xb.shape[0]}"
                    )
                outs.append(out.detach().to("cpu", torch.float32).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(outs, axis=0)


# --------------------------------------------------------------------------- #
# basic metrics
# --------------------------------------------------------------------------- #
def _shifted_logits(logits: np.ndarray) -> np.ndarray:
    """Checked float64 logits ``(N, K)`` less each row's maximum (so ``exp`` cannot overflow)."""
    lg = _check_logits(logits)
    return lg - lg.max(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis.

    Parameters
    ----------
    logits : np.ndarray
        Finite logits, shape ``(N, K)``.

    Returns
    -------
    np.ndarray
        float64 log-probabilities, shape ``(N, K)``.
    """
    shifted = _shifted_logits(logits)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis.

    Takes the same ``logits`` as :func:`log_softmax` (finite, shape ``(N, K)``) and
    returns float64 probabilities, shape ``(N, K)``; each row sums to 1.
    """
    e = np.exp(_shifted_logits(logits))
    return e / e.sum(axis=1, keepdims=True)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy.

    Ties in the logits go to the lowest class index (``np.argmax``).

    Parameters
    ----------
    logits : np.ndarray
        Logits, shape ``(N, K)``, ``N >= 1``.
    labels : np.ndarray
        Integer labels in ``[0, K)``, shape ``(N,)``.

    Returns
    -------
    float
        Share of correct predictions, in ``[0, 1]``.

    Raises
    ------
    ValueError
        If the set is empty or shapes / labels are invalid.
    """
    lg, lb = _check_pair(logits, labels)
    return float(np.mean(lg.argmax(axis=1) == lb))


def per_sample_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each sample, ``logsumexp(z) - z[y]``.

    Parameters
    ----------
    logits : np.ndarray
        Logits, shape ``(N, K)`` (``N`` may be 0).
    labels : np.ndarray
        Integer labels in ``[0, K)``, shape ``(N,)``.

    Returns
    -------
    np.ndarray
        float64 losses (nats), shape ``(N,)``, each ``>= 0``.
    """
    lg, lb = _check_pair(logits, labels, allow_empty=True)
    if lg.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    logp = log_softmax(lg)
    return -logp[np.arange(lg.shape[0]), lb]


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats), computed with log-sum-exp.

    Parameters
    ----------
    logits : np.ndarray
        Logits, shape ``(N, K)``, ``N >= 1``.
    labels : np.ndarray
        Integer labels in ``[0, K)``, shape ``(N,)``.

    Returns
    -------
    float
        Mean per-sample loss.

    Raises
    ------
    ValueError
        If the set is empty or shapes / labels are invalid.
    """
    lg, lb = _check_pair(logits, labels)
    return float(per_sample_loss(lg, lb).mean())


# --------------------------------------------------------------------------- #
# membership inference
# --------------------------------------------------------------------------- #
def mia_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample features of the MIA-efficacy attack.

    Parameters
    ----------
    logits : np.ndarray
        Logits, shape ``(N, K)``.
    labels : np.ndarray
        Integer labels in ``[0, K)``, shape ``(N,)``.

    Returns
    -------
    np.ndarray
        float64 array of shape ``(N, 2)``: column 0 is the softmax
        probability of the true label (confidence), column 1 the entropy
        ``-sum_k p_k log p_k`` of the prediction in nats.
    """
    lg, lb = _check_pair(logits, labels, allow_empty=True)
    if lg.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.float64)
    logp = log_softmax(lg)
    p = np.exp(logp)
    conf = p[np.arange(lg.shape[0]), lb]
    ent = -(p * logp).sum(axis=1)
    ent = np.maximum(ent, 0.0)  # clip -0.0 / rounding noise
    return np.stack([conf, ent], axis=1)


def _subsample(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``m`` of ``n`` items, without replacement."""
    if m >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=m, replace=False))


def mia_efficacy(
    forget_logits: np.ndarray,
    forget_labels: np.ndarray,
    retain_logits: np.ndarray,
    retain_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    *,
    seed: int = 0,
    max_per_class: int | None = 5000,
) -> float:
    """MIA-efficacy of SalUn / Jia et al. (2023).

    An attack ``make_pipeline(StandardScaler(), SVC(kernel="rbf", C=3,
    gamma="auto"))`` is trained on :func:`mia_features` of retain samples
    (members, label 1) and test samples (non-members, label 0).  The two
    groups are balanced: each is subsampled without replacement (with
    ``np.random.default_rng(seed)``; retain first, then test) to
    ``min(n_retain, n_test, max_per_class)`` samples.  The attack is then
    applied to every forget sample.

    Parameters
    ----------
    forget_logits, forget_labels : np.ndarray
        Logits ``(N_f, K)`` and labels of the forget set, ``N_f >= 1``.
    retain_logits, retain_labels : np.ndarray
        Logits and labels of the retain set (members), at least 2 samples.
    test_logits, test_labels : np.ndarray
        Logits and labels of the test set (non-members), at least 2 samples.
    seed : int, default 0
        Seed of the balancing subsample.
    max_per_class : int or None, default 5000
        Cap on the samples per group (``>= 2``); ``None`` means no cap.

    Returns
    -------
    float
        Share of forget samples predicted non-member, in ``[0, 1]``.  High
        means the forget set looks unseen; compare with Retrain's value
        (about 0.5 in the paper's setting), not with 1.

    Raises
    ------
    ValueError
        If the forget set is empty, the retain or test group has fewer than
        2 samples, ``max_per_class < 2``, the class counts (K) differ, or
        shapes / labels are invalid.
    """
    f_lg, f_lb = _check_pair(forget_logits, forget_labels, "forget", allow_empty=True)
    r_lg, r_lb = _check_pair(retain_logits, retain_labels, "retain", allow_empty=True)
    t_lg, t_lb = _check_pair(test_logits, test_labels, "test", allow_empty=True)
    if f_lg.shape[0] == 0:
        raise ValueError("forget set is empty; MIA-efficacy needs at least one forget sample")
    for name, n in (("retain", r_lg.shape[0]), ("test", t_lg.shape[0])):
        if n < 2:
            raise ValueError(
                f"{name} set has {n} sample(s); the MIA attack needs at least 2 per group"
            )
    ks = {f_lg.shape[1], r_lg.shape[1], t_lg.shape[1]}
    if len(ks) != 1:
        raise ValueError(
            "forget, retain and test logits must have the same number of classes; got "
            f"{f_lg.shape[1]}, {r_lg.shape[1]}, {t_lg.shape[1]}"
        )
    if max_per_class is not None and (
        isinstance(max_per_class, bool)
        or not isinstance(max_per_class, Integral)
        or max_per_class < 2
    ):
        raise ValueError(f"max_per_class must be None or an integer >= 2; got {max_per_class!r}")

    m = min(r_lg.shape[0], t_lg.shape[0])
    if max_per_class is not None:
        m = min(m, int(max_per_class))
    rng = np.random.default_rng(seed)
    r_idx = _subsample(r_lg.shape[0], m, rng)
    t_idx = _subsample(t_lg.shape[0], m, rng)

    x_mem = mia_features(r_lg[r_idx], r_lb[r_idx])
    x_non = mia_features(t_lg[t_idx], t_lb[t_idx])
    x_train = np.concatenate([x_mem, x_non], axis=0)
    y_train = np.concatenate([np.ones(m, dtype=np.int64), np.zeros(m, dtype=np.int64)])

    attack = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=3, gamma="auto"))
    attack.fit(x_train, y_train)
    pred = np.asarray(attack.predict(mia_features(f_lg, f_lb)))
    return float(np.mean(pred == 0))


def loss_threshold_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    """ROC AUC of the loss-threshold attack "lower loss => member".

    Scores are ``-loss``; members are the positive class.

    Parameters
    ----------
    member_losses : np.ndarray
        Per-sample losses of the (putative) members, 1-D, non-empty, finite.
    nonmember_losses : np.ndarray
        Per-sample losses of the non-members, 1-D, non-empty, finite.

    Returns
    -------
    float
        AUC in ``[0, 1]``: 1.0 = perfect attack (every member has a lower
        loss than every non-member), 0.5 = chance, 0.0 = perfectly reversed.
        Ties count one half.

    Raises
    ------
    ValueError
        If either array is empty, not 1-D or not finite.
    """
    arrays = []
    for name, a in (("member_losses", member_losses), ("nonmember_losses", nonmember_losses)):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D; got shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"{name} is empty; the AUC needs at least one sample per group")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite; found NaN or inf")
        arrays.append(a)
    mem, non = arrays
    y = np.concatenate([np.ones(mem.size), np.zeros(non.size)])
    scores = -np.concatenate([mem, non])
    return float(roc_auc_score(y, scores))


# --------------------------------------------------------------------------- #
# backdoor
# --------------------------------------------------------------------------- #
def attack_success_rate(
    triggered_logits: np.ndarray, true_labels: np.ndarray, target: int
) -> float:
    """Backdoor attack success rate.

    Parameters
    ----------
    triggered_logits : np.ndarray
        Logits ``(N, K)`` of triggered images (any classes).
    true_labels : np.ndarray
        Their true (clean) labels, shape ``(N,)``.
    target : int
        Backdoor target class, in ``[0, K)``.

    Returns
    -------
    float
        Among the images whose true label differs from ``target``, the share
        predicted (argmax, ties to the lowest index) as ``target``; in
        ``[0, 1]``.  Images of class ``target`` are ignored.

    Raises
    ------
    ValueError
        If ``target`` is outside ``[0, K)`` or no image has a true label
        other than ``target``.
    """
    lg, lb = _check_pair(triggered_logits, true_labels, "triggered", allow_empty=True)
    k = lg.shape[1]
    if isinstance(target, bool) or not isinstance(target, Integral) or not 0 <= target < k:
        raise ValueError(f"target must be an integer class in [0, {k}); got {target!r}")
    eligible = lb != target
    if not np.any(eligible):
        raise ValueError(
            f"no triggered sample has a true label other than target {target}; "
            "ASR is undefined"
        )
    return float(np.mean(lg[eligible].argmax(axis=1) == target))


# --------------------------------------------------------------------------- #
# comparison with Retrain
# --------------------------------------------------------------------------- #
def avg_gap(
    method: Mapping[str, float],
    retrain: Mapping[str, float],
    keys: Sequence[str] = GAP_KEYS,
) -> float:
    """Average gap to Retrain, in points.

    Parameters
    ----------
    method : Mapping[str, float]
        The method's metrics as fractions in ``[0, 1]``.
    retrain : Mapping[str, float]
        Retrain's metrics (same seed), fractions in ``[0, 1]``.
    keys : sequence of str, default ``GAP_KEYS``
        Metrics to average: retain, forget, test accuracy and MIA-efficacy.

    Returns
    -------
    float
        ``mean_k |method[k] - retrain[k]| * 100``.

    Raises
    ------
    ValueError
        If ``keys`` is empty, a key is missing from either mapping, or a
        value is not a finite number in ``[0, 1]`` (e.g. already in points).
    """
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)
    if not keys:
        raise ValueError("keys must name at least one metric")
    gaps = []
    for key in keys:
        vals = []
        for name, d in (("method", method), ("retrain", retrain)):
            if key not in d:
                raise ValueError(
                    f"metric {key!r} missing from {name}; it has {sorted(d)}"
                )
            v = d[key]
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"{name}[{key!r}] must be a number; got {v!r}") from None
            if not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(
                    f"{name}[{key!r}] must be a fraction in [0, 1]; got {v!r}"
                )
            vals.append(v)
        gaps.append(abs(vals[0] - vals[1]) * 100.0)
    return float(np.mean(gaps))


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
        :func:`not_flower.backdoor.triggered_test_set`.
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
    if (backdoor_target is None) != (triggered_test_x is None):
        raise ValueError(
            "backdoor_target and triggered_test_x must be given together; got "
            f"backdoor_target={backdoor_target!r} and triggered_test_x "
            f"{'None' if triggered_test_x is None else 'given'}"
        )
    if triggered_test_y is not None and triggered_test_x is None:
        raise ValueError("triggered_test_y was given without triggered_test_x")

    def run(x: np.ndarray) -> np.ndarray:
        return predict_logits(model, x, batch_size=batch_size, device=device)

    out: dict[str, float] = {}
    x_te, y_te = _split(test, "test")
    x_re, y_re = _split(retain, "retain")
    te_lg = run(x_te)
    re_lg = run(x_re)
    out["test_acc"] = accuracy(te_lg, y_te)
    out["test_loss"] = cross_entropy(te_lg, y_te)
    out["retain_acc"] = accuracy(re_lg, y_re)
    out["retain_loss"] = cross_entropy(re_lg, y_re)

    if forget is not None:
        x_fo, y_fo = _split(forget, "forget")
        fo_lg = run(x_fo)
        out["forget_acc"] = accuracy(fo_lg, y_fo)
        out["forget_loss"] = cross_entropy(fo_lg, y_fo)
        out["mia_efficacy"] = mia_efficacy(
            fo_lg, y_fo, re_lg, y_re, te_lg, y_te, seed=seed, max_per_class=mia_max_per_class
        )
        out["mia_loss_auc"] = loss_threshold_auc(
            per_sample_loss(fo_lg, y_fo), per_sample_loss(te_lg, y_te)
        )

    if triggered_test_x is not None:
        tr_lg = run(np.asarray(triggered_test_x))
        if triggered_test_y is None:
            # Every image is taken to be of a class other than the target.
            k = tr_lg.shape[1]
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
            y_tr = np.full(tr_lg.shape[0], (int(backdoor_target) + 1) % k, dtype=np.int64)
        else:
            y_tr = np.asarray(triggered_test_y)
        out["asr"] = attack_success_rate(tr_lg, y_tr, backdoor_target)
    return out
