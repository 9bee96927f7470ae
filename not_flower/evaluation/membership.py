"""Per-example membership inference (LiRA, online): pure functions over logits and labels.

The population "MIA-efficacy" score (an SVC on confidence and entropy) asks whether the
forget set *as a whole* looks like training data. A per-example attack asks, for each
sample, whether *this* model was trained on it, calibrated against reference models that
were and were not trained on that very sample. This module implements the online
Likelihood Ratio Attack (LiRA) of Carlini et al., "Membership Inference Attacks From
First Principles" (IEEE S&P 2022):

1. the statistic per (model, sample) is the logit-scaled confidence of the true label,
   ``phi = log(p_y / (1 - p_y))`` (:func:`logit_confidence`), which is close to Gaussian
   over the randomness of training;
2. for each sample, Gaussians are fitted to ``phi`` under the reference models that
   trained on it ("in") and under those that did not ("out");
3. the score of the attacked model on a sample is the log likelihood ratio
   ``log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out)`` (:func:`lira_scores`);
   high means "member".

Why LiRA and not RMIA (Zarifzadeh et al., ICML 2024): the evaluation harness can train
reference models on random halves of the pooled data, so every sample has both "in" and
"out" models, which is the setting where online LiRA is strongest and has a closed-form
per-example score; RMIA's advantage is with few or only "out" reference models (offline).
U-LiRA (Hayes et al. 2024), the per-example test for unlearning, is built on LiRA too.
With few reference models (e.g. 8, four "in" and four "out" per sample) the per-example
variances are noisy; as Carlini et al. recommend below 64 models, :func:`lira_scores`
uses per-example means and a fixed variance (``fixed_variance=True``, the default): one
variance, pooled over all samples' deviations from their own means and shared by the "in"
and "out" sides. Sharing it makes the ratio monotone in the confidence for every sample
(``mu_in > mu_out``): with two different variances a sample far below both means (a
poisoned sample under a model without the backdoor) would score as a member merely
because the wider Gaussian's tail is heavier. For the same reason an "in" mean below the
"out" mean, which training does not produce (it is noise, e.g. on poisoned samples whose
backdoor every reference model learns from the others), is raised to the "out" mean: such
a sample scores 0, whatever the attacked model's confidence.

Reporting (:func:`membership_metrics`): the attacked set (the forget set) is the positive
class, a held-out set the model never trained on the negative class; AUC, and TPR at 1 %
and 0.1 % FPR, the threshold being set on the held-out scores alone. The held-out set
must be made like the forget set (:func:`matching_weights` weighs it to the forget set's
make-up): a score's null distribution depends on the sample (its mean is
``-(mu_in - mu_out)^2 / (2 sd^2)``), and samples that no model without them predicts (a
backdoor's poisoned samples, mislabelled ones) sit far below their "out" mean under such
a model. Compared with clean held-out samples only, a forget set 40 % poisoned scores an
AUC of about 40 for every model, the one that never saw it included. For the forget set
the TPR at 1 % FPR *is* the share of forget samples the attack calls members at the
threshold that calls 1 % of the held-out samples members. With fewer than ``1 / fpr``
held-out samples the threshold is the largest held-out score (FPR 0 on them).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FPR_LEVELS",
    "balanced_membership",
    "logit_confidence",
    "lira_gaussians",
    "lira_scores",
    "threshold_at_fpr",
    "tpr_at_fpr",
    "matching_weights",
    "membership_auc",
    "membership_metrics",
]

#: False-positive rates the metrics are reported at, with their key suffixes.
FPR_LEVELS: tuple[tuple[float, str], ...] = ((0.01, "fpr1"), (0.001, "fpr01"))


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logit-scaled confidence of the true label, ``log(p_y / (1 - p_y))``, per sample.

    Computed stably from the logits as ``z_y - logsumexp_{j != y} z_j`` (the softmax
    normaliser cancels), so that confidences of 1 - 1e-20 stay finite and distinct.

    Parameters
    ----------
    logits : np.ndarray
        ``(N, K)`` finite logits, ``K >= 2``.
    labels : np.ndarray
        ``(N,)`` integer labels in ``[0, K)``.

    Returns
    -------
    np.ndarray
        ``(N,)`` float64.

    Raises
    ------
    ValueError
        If the shapes do not match, ``K < 2``, a logit is not finite or a label is out
        of range.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, K) with K >= 2, got {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},) to match logits, got {y.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite (found NaN or inf)")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(
            f"labels must be integers in [0, {z.shape[1]}), got dtype {y.dtype} "
            f"and range [{y.min()}, {y.max()}]"
        )
    rows = np.arange(len(y))
    true = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1)
    rest = top + np.log(np.exp(others - top[:, None]).sum(axis=1))
    return true - rest


def balanced_membership(num_models: int, num_samples: int, seed: int) -> np.ndarray:
    """Which reference model trains on which sample: each sample "in" for exactly half.

    Parameters
    ----------
    num_models : int
        Number of reference models ``M``, even and ``>= 2``.
    num_samples : int
        Number of samples ``N >= 1``.
    seed : int
        Seeds the assignment.

    Returns
    -------
    np.ndarray
        ``(M, N)`` bool; column ``n`` has exactly ``M / 2`` True entries, and each model
        (row) holds about ``N / 2`` samples (binomial around it).

    Raises
    ------
    ValueError
        If ``num_models`` is odd or below 2, or ``num_samples < 1``.
    """
    if (
        isinstance(num_models, bool)
        or int(num_models) != num_models
        or num_models < 2
        or num_models % 2
    ):
        raise ValueError(
            f"num_models must be an even integer >= 2 (half in, half out), got {num_models}"
        )
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    noise = np.random.default_rng(seed).random((int(num_models), int(num_samples)))
    return np.argsort(noise, axis=0) < num_models // 2


def _check_lira_inputs(
    c: np.ndarray,
    ref: np.ndarray,
    ins: np.ndarray,
    *,
    fixed_variance: bool,
    min_std: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Check the inputs of :func:`lira_scores`; count each sample's "in" and "out" models.

    Parameters
    ----------
    c : np.ndarray
        ``(N,)`` float64 target confidences.
    ref : np.ndarray
        ``(M, N)`` float64 reference confidences.
    ins : np.ndarray
        ``(M, N)`` bool membership of the reference models.
    fixed_variance : bool
        One pooled standard deviation (one "in" and one "out" model per sample suffice)
        or one per sample and side (two of each needed).
    min_std : float
        Floor of the standard deviations; must be positive.

    Returns
    -------
    tuple of np.ndarray
        ``(n_in, n_out)``: per sample, the number of "in" and of "out" reference models.

    Raises
    ------
    ValueError
        As :func:`lira_scores` documents.
    """
    if c.ndim != 1:
        raise ValueError(f"target_conf must have shape (N,), got {c.shape}")
    if ref.ndim != 2 or ref.shape[1] != c.shape[0]:
        raise ValueError(f"reference_conf must have shape (M, {c.shape[0]}), got {ref.shape}")
    if ins.shape != ref.shape or ins.dtype != bool:
        raise ValueError(
            f"reference_in must be a bool array of shape {ref.shape}, got {ins.dtype} {ins.shape}"
        )
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(ref))):
        raise ValueError("confidences must be finite (found NaN or inf)")
    if min_std <= 0:
        raise ValueError(f"min_std must be > 0, got {min_std}")
    need = 1 if fixed_variance else 2
    n_in = ins.sum(axis=0)
    n_out = (~ins).sum(axis=0)
    if n_in.min() < need or n_out.min() < need:
        raise ValueError(
            f"every sample needs at least {need} 'in' and {need} 'out' reference model(s); "
            f"found samples with {int(n_in.min())} in / {int(n_out.min())} out "
            "(use balanced_membership to assign them)"
        )
    return n_in, n_out


def _masked_gaussian(
    ref: np.ndarray, mask: np.ndarray, count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample mean of the masked reference confidences, and their squared deviations.

    Parameters
    ----------
    ref : np.ndarray
        ``(M, N)`` reference confidences.
    mask : np.ndarray
        ``(M, N)`` bool: which entries count.
    count : np.ndarray
        ``(N,)`` number of ``True`` entries per sample.

    Returns
    -------
    tuple of np.ndarray
        ``(mean, sq)``: ``(N,)`` means and ``(M, N)`` squared deviations from them (0
        where masked out).
    """
    mean = np.where(mask, ref, 0.0).sum(axis=0) / count
    sq = np.where(mask, (ref - mean) ** 2, 0.0)
    return mean, sq


def lira_gaussians(
    target_conf: np.ndarray,
    reference_conf: np.ndarray,
    reference_in: np.ndarray,
    *,
    fixed_variance: bool = True,
    min_std: float = 1e-3,
) -> dict[str, np.ndarray]:
    """The per-sample "in" and "out" Gaussians that :func:`lira_scores` compares.

    Parameters
    ----------
    target_conf, reference_conf, reference_in, fixed_variance, min_std
        As :func:`lira_scores` (``target_conf`` only fixes ``N`` and is checked).

    Returns
    -------
    dict[str, np.ndarray]
        ``(N,)`` arrays: ``mu_in_raw`` (the "in" mean as fitted), ``mu_in`` (raised to
        ``mu_out`` where it was below), ``mu_out``, ``sd_in``, ``sd_out``, and ``clamped``
        (bool: the "in" mean was raised; such a sample scores exactly 0).
    """
    c = np.asarray(target_conf, dtype=np.float64)
    ref = np.asarray(reference_conf, dtype=np.float64)
    ins = np.asarray(reference_in)
    n_in, n_out = _check_lira_inputs(c, ref, ins, fixed_variance=fixed_variance, min_std=min_std)
    mu_in_raw, sq_in = _masked_gaussian(ref, ins, n_in)
    mu_out, sq_out = _masked_gaussian(ref, ~ins, n_out)
    # training on a sample does not lower its own label's confidence: an "in" mean below
    # the "out" mean is estimation noise (e.g. a backdoor that every reference model
    # learns from the other poisoned samples), and would flip the test for that sample
    mu_in = np.maximum(mu_in_raw, mu_out)
    if fixed_variance:
        dof = max(ref.size - 2 * ref.shape[1], 1)  # two means fitted per sample
        sd_in = sd_out = np.full(c.shape, max(np.sqrt((sq_in.sum() + sq_out.sum()) / dof), min_std))
    else:
        sd_in = np.maximum(np.sqrt(sq_in.sum(axis=0) / (n_in - 1)), min_std)
        sd_out = np.maximum(np.sqrt(sq_out.sum(axis=0) / (n_out - 1)), min_std)
    return {
        "mu_in_raw": mu_in_raw,
        "mu_in": mu_in,
        "mu_out": mu_out,
        "sd_in": sd_in,
        "sd_out": sd_out,
        "clamped": mu_in_raw < mu_out,
    }


def lira_scores(
    target_conf: np.ndarray,
    reference_conf: np.ndarray,
    reference_in: np.ndarray,
    *,
    fixed_variance: bool = True,
    min_std: float = 1e-3,
) -> np.ndarray:
    """Online LiRA: per-sample log likelihood ratio of "in" against "out".

    Parameters
    ----------
    target_conf : np.ndarray
        ``(N,)`` :func:`logit_confidence` of the attacked model on the samples.
    reference_conf : np.ndarray
        ``(M, N)`` the same statistic of each of ``M`` reference models.
    reference_in : np.ndarray
        ``(M, N)`` bool: reference model ``m`` trained on sample ``n``. Every sample needs
        at least one "in" and one "out" model (two each with ``fixed_variance=False``).
    fixed_variance : bool, default True
        One standard deviation for both sides and all samples (deviations of each
        confidence from its sample's own "in" or "out" mean, pooled), instead of one per
        sample and side; Carlini et al. fix the variance below 64 reference models, and
        one shared value keeps the ratio monotone in the confidence.
    min_std : float, default 1e-3
        Floor of every standard deviation (a sample whose "in" confidences are all equal
        would otherwise give an infinite ratio).

    Returns
    -------
    np.ndarray
        ``(N,)`` float64 scores, ``log N(c; mu_in, sd_in) - log N(c; mu_out, sd_out)``;
        larger means more likely a member.

    Raises
    ------
    ValueError
        On mismatched shapes, non-finite values, or a sample without enough "in" or
        "out" reference models.
    """
    c = np.asarray(target_conf, dtype=np.float64)
    fit = lira_gaussians(
        c, reference_conf, reference_in, fixed_variance=fixed_variance, min_std=min_std
    )
    mu_in, mu_out, sd_in, sd_out = fit["mu_in"], fit["mu_out"], fit["sd_in"], fit["sd_out"]
    log_in = -np.log(sd_in) - 0.5 * ((c - mu_in) / sd_in) ** 2
    log_out = -np.log(sd_out) - 0.5 * ((c - mu_out) / sd_out) ** 2
    return log_in - log_out


def _scores(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array of scores, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN")
    return arr


def _check_fpr(fpr: float) -> float:
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    return float(fpr)


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"nonmember_weights must be {n} finite non-negative weights, not all 0, "
            f"got shape {w.shape}"
        )
    return w


def threshold_at_fpr(
    nonmember_scores: np.ndarray, fpr: float, weights: np.ndarray | None = None
) -> float:
    """The lowest threshold ``t`` that calls at most ``fpr`` of the non-members members.

    A sample is called a member when its score is strictly above ``t``.

    Parameters
    ----------
    nonmember_scores : np.ndarray
        ``(N,)`` scores of samples the model never trained on.
    fpr : float
        Target false-positive rate in ``[0, 1)``.
    weights : np.ndarray, optional
        ``(N,)`` non-negative weight of each non-member (:func:`matching_weights`); the
        rate is the weighted share. Default: all 1.

    Returns
    -------
    float
        ``t`` such that the (weighted) share of ``nonmember_scores > t`` is ``<= fpr``:
        unweighted, the ``floor(fpr * N) + 1``-th largest score (ties only lower the
        realised rate).
    """
    scores = _scores(nonmember_scores, "nonmember_scores")
    w = _weights(weights, len(scores))
    fpr = _check_fpr(fpr)
    keep = w > 0
    order = np.argsort(-scores[keep], kind="stable")
    neg, share = scores[keep][order], np.cumsum(w[keep][order]) / w.sum()
    k = int(np.searchsorted(share, fpr + 1e-9, side="right"))
    return float(neg[min(k, len(neg) - 1)])


def tpr_at_fpr(
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    fpr: float,
    weights: np.ndarray | None = None,
) -> float:
    """Share of ``member_scores`` above :func:`threshold_at_fpr` of the non-members.

    Parameters
    ----------
    member_scores, nonmember_scores : np.ndarray
        Scores of the attacked set (positives) and of held-out samples (negatives).
    fpr : float
        False-positive rate in ``[0, 1)`` that fixes the threshold.
    weights : np.ndarray, optional
        Weights of the non-members (:func:`threshold_at_fpr`).

    Returns
    -------
    float
        A fraction in ``[0, 1]``.
    """
    pos = _scores(member_scores, "member_scores")
    return float(np.mean(pos > threshold_at_fpr(nonmember_scores, fpr, weights)))


def membership_auc(
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    weights: np.ndarray | None = None,
) -> float:
    """Area under the ROC curve of the attack (0.5 = chance, 1 = perfect separation).

    ``weights`` (optional) weigh the non-members (:func:`matching_weights`); the
    members count 1 each.
    """
    pos = _scores(member_scores, "member_scores")
    neg = _scores(nonmember_scores, "nonmember_scores")
    w = _weights(weights, len(neg))
    truth = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    from sklearn.metrics import roc_auc_score  # here: a ClientApp imports this module

    if weights is None:
        return float(roc_auc_score(truth, np.r_[pos, neg]))
    return float(roc_auc_score(truth, np.r_[pos, neg], sample_weight=np.r_[np.ones(len(pos)), w]))


def matching_weights(member_strata: np.ndarray, nonmember_strata: np.ndarray) -> np.ndarray:
    """Weights that give the non-members the members' make-up, stratum by stratum.

    A non-member of stratum ``s`` (e.g. its label and whether it carries the trigger)
    weighs ``n_members(s) / n_nonmembers(s)``, so every stratum has the same total weight
    on both sides; strata the members lack weigh 0. AUC and TPR against the weighted
    non-members then compare the forget set with held-out samples drawn the way it was:
    with a forget set 40 % poisoned, 40 % of the non-members' weight is on poisoned
    held-out samples.

    Parameters
    ----------
    member_strata, nonmember_strata : np.ndarray
        ``(P,)`` and ``(N,)`` integer stratum of each member and non-member.

    Returns
    -------
    np.ndarray
        ``(N,)`` float64 weights.

    Raises
    ------
    ValueError
        If no non-member shares a stratum with a member.
    """
    pos = np.asarray(member_strata)
    neg = np.asarray(nonmember_strata)
    strata, pos_count = np.unique(pos, return_counts=True)
    neg_count = np.array([(neg == s).sum() for s in strata])
    w = np.zeros(len(neg))
    for s, p, n in zip(strata, pos_count, neg_count):
        if n:
            w[neg == s] = p / n
    if not w.any():
        raise ValueError("no non-member shares a stratum with the members: nothing to match")
    return w


def membership_metrics(
    forget_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    retain_scores: np.ndarray | None = None,
    *,
    prefix: str = "lira",
    nonmember_weights: np.ndarray | None = None,
    retain_weights: np.ndarray | None = None,
) -> dict[str, float]:
    """The per-example attack's report for the forget set against held-out non-members.

    Parameters
    ----------
    forget_scores : np.ndarray
        Scores of the forget set (positives).
    nonmember_scores : np.ndarray
        Scores of held-out samples the attacked model never trained on (negatives).
    retain_scores : np.ndarray, optional
        Scores of samples the model did train on (the retained clients' data): their
        share called members at the 1 % threshold shows the attack works on this model.
    prefix : str, default "lira"
        Key prefix.
    nonmember_weights : np.ndarray, optional
        Weights of the non-members for the forget set's AUC and TPRs
        (:func:`matching_weights` of the forget set's strata); default all 1.
    retain_weights : np.ndarray, optional
        Weights of the non-members for the retained data's TPR (matched to it).

    Returns
    -------
    dict[str, float]
        ``<prefix>_auc``, ``<prefix>_tpr_fpr1`` and ``<prefix>_tpr_fpr01`` (TPR at 1 %
        and 0.1 % FPR; the first is also the share of forget samples called members at
        the 1 %-FPR threshold), and with ``retain_scores`` ``<prefix>_retain_tpr_fpr1``.
        All fractions in ``[0, 1]``.
    """
    w = nonmember_weights
    out = {f"{prefix}_auc": membership_auc(forget_scores, nonmember_scores, w)}
    for fpr, suffix in FPR_LEVELS:
        out[f"{prefix}_tpr_{suffix}"] = tpr_at_fpr(forget_scores, nonmember_scores, fpr, w)
    if retain_scores is not None:
        out[f"{prefix}_retain_tpr_fpr1"] = tpr_at_fpr(
            retain_scores, nonmember_scores, 0.01, retain_weights
        )
    return out
