"""Accuracy, cross-entropy, softmax and backdoor ASR of a classifier's logits.

Everything here is a pure function over numpy arrays except :func:`predict_logits`,
which runs a torch model to get the logits the others take. Accuracies and ASR are
fractions in ``[0, 1]``; losses are in nats. The ``_check_*`` helpers validate logits
and labels for every metric of the package (they are shared with
:mod:`not_flower.evaluation.population_mia`).

* **ASR**: share of triggered test images whose true class differs from the
  backdoor target that the model assigns to the target.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch

__all__ = [
    "predict_logits",
    "accuracy",
    "cross_entropy",
    "per_sample_loss",
    "softmax",
    "log_softmax",
    "attack_success_rate",
]


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
            f"{name} must lie in [0, {k}) for {k} classes; got values in [{arr.min()}, {arr.max()}]"
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
            f"no triggered sample has a true label other than target {target}; ASR is undefined"
        )
    return float(np.mean(lg[eligible].argmax(axis=1) == target))
