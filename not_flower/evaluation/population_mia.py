"""The population membership-inference attack ("MIA-efficacy") and the loss-threshold AUC.

* **MIA-efficacy** (SalUn / Jia et al. 2023): an RBF SVC is trained on
  per-sample ``[confidence of the true label, prediction entropy]`` features
  with retain samples as members (1) and test samples as non-members (0),
  balanced; the score is the share of forget samples it predicts to be
  non-members.  Retrain lands near 0.5 on a balanced attack.
* **Loss-threshold AUC**: ROC AUC of "lower loss => member" between two sets of
  per-sample losses.

Both are pure functions over numpy arrays; results are fractions in ``[0, 1]``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from not_flower.evaluation.classification import _check_pair, log_softmax

__all__ = ["mia_features", "mia_efficacy", "loss_threshold_auc"]


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
    _check_attack_sets(f_lg.shape, r_lg.shape, t_lg.shape, max_per_class)
    x_train, y_train = _balanced_attack_set(
        r_lg, r_lb, t_lg, t_lb, seed=seed, max_per_class=max_per_class
    )
    attack = attack_model()
    attack.fit(x_train, y_train)
    pred = np.asarray(attack.predict(mia_features(f_lg, f_lb)))
    return float(np.mean(pred == 0))


def attack_model():
    """A fresh, unfitted attack: ``make_pipeline(StandardScaler(), SVC(kernel="rbf", C=3,
    gamma="auto"))``.

    scikit-learn is imported here, not with the module: a ClientApp imports this module, and
    Flower starts one ClientApp process per message in a deployment.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=3, gamma="auto"))


def _check_attack_sets(
    forget_shape: tuple[int, int],
    retain_shape: tuple[int, int],
    test_shape: tuple[int, int],
    max_per_class: int | None,
) -> None:
    """Refuse sets the attack cannot use, naming the bad value.

    Parameters
    ----------
    forget_shape, retain_shape, test_shape : tuple of int
        Shapes ``(N, K)`` of the checked forget, retain and test logits.
    max_per_class : int or None
        The cap of :func:`mia_efficacy`.

    Raises
    ------
    ValueError
        If the forget set is empty, the retain or test set has fewer than 2 samples, the
        class counts differ, or ``max_per_class`` is not ``None`` or an integer ``>= 2``.
    """
    if forget_shape[0] == 0:
        raise ValueError("forget set is empty; MIA-efficacy needs at least one forget sample")
    for name, n in (("retain", retain_shape[0]), ("test", test_shape[0])):
        if n < 2:
            raise ValueError(
                f"{name} set has {n} sample(s); the MIA attack needs at least 2 per group"
            )
    ks = {forget_shape[1], retain_shape[1], test_shape[1]}
    if len(ks) != 1:
        raise ValueError(
            "forget, retain and test logits must have the same number of classes; got "
            f"{forget_shape[1]}, {retain_shape[1]}, {test_shape[1]}"
        )
    if max_per_class is not None and (
        isinstance(max_per_class, bool)
        or not isinstance(max_per_class, Integral)
        or max_per_class < 2
    ):
        raise ValueError(f"max_per_class must be None or an integer >= 2; got {max_per_class!r}")


def _balanced_attack_set(
    retain_logits: np.ndarray,
    retain_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    *,
    seed: int,
    max_per_class: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training set of the attack: as many members (retain) as non-members (test).

    Parameters
    ----------
    retain_logits, retain_labels : np.ndarray
        Checked logits and labels of the members, at least 2 samples.
    test_logits, test_labels : np.ndarray
        Checked logits and labels of the non-members, at least 2 samples.
    seed : int
        Seed of ``np.random.default_rng``; retain is subsampled first, then test.
    max_per_class : int or None
        Cap on the samples per group; ``None`` means no cap.

    Returns
    -------
    tuple of np.ndarray
        ``(x, y)``: :func:`mia_features` of ``m`` members then ``m`` non-members, shape
        ``(2m, 2)``, and labels 1 then 0, with ``m = min(n_retain, n_test,
        max_per_class)``.
    """
    m = min(retain_logits.shape[0], test_logits.shape[0])
    if max_per_class is not None:
        m = min(m, int(max_per_class))
    rng = np.random.default_rng(seed)
    r_idx = _subsample(retain_logits.shape[0], m, rng)
    t_idx = _subsample(test_logits.shape[0], m, rng)
    x_mem = mia_features(retain_logits[r_idx], retain_labels[r_idx])
    x_non = mia_features(test_logits[t_idx], test_labels[t_idx])
    x_train = np.concatenate([x_mem, x_non], axis=0)
    y_train = np.concatenate([np.ones(m, dtype=np.int64), np.zeros(m, dtype=np.int64)])
    return x_train, y_train


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
    from sklearn.metrics import roc_auc_score  # here: a ClientApp imports this module

    return float(roc_auc_score(y, scores))
