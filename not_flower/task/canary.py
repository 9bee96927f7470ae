"""Canaries a departing client keeps, and the test it can run on any model itself.

Before leaving, a client can check whether a global model still carries what it trained on
(the idea of VeriFi's markers), without the server's cooperation and without reference
models. From a secret seed it generates ``n_in + n_out`` *canaries*
(:func:`make_canaries`): random black-and-white pixel images, each with a random label,
all drawn from the same distribution. It mixes the ``n_in`` "in" canaries into its
training data and keeps the ``n_out`` "out" canaries to itself. Given a model, it scores
every canary (:func:`canary_scores`: the logit-scaled confidence of the canary's own
label) and asks whether the in-canaries fit better than the out-canaries
(:func:`canary_test`).

Why the p-value is valid
    For a model that never trained on any canary (a model retrained without the client,
    or one that forgot them), the in- and out-canaries are exchangeable: the generator
    draws them i.i.d. and the split is fixed before the model exists, so every assignment
    of the ``n_in + n_out`` scores to "in" and "out" is equally likely. The permutation
    p-value of :func:`permutation_p_value` (one-sided: in-canaries fit better) is then
    uniform (conservative with ties): at ``alpha = 0.05`` such a model is flagged in 5 %
    of canary seeds at most. A model that memorised the in-canaries scores them higher and
    gets a small p-value.

Statistic
    ``AUC = U / (n_in * n_out)``, the Mann-Whitney U statistic scaled to [0, 1]: the share
    of (in, out) pairs in which the in-canary scores higher (ties count half). 0.5 means
    no difference.

Command line (:mod:`not_flower.evaluation.canary_cli`; exit 0 not detected, 1 detected,
2 bad input)::

    python -m not_flower.evaluation.canary_cli check --checkpoint RUN_DIR/checkpoint-final.pt \\
        --seed SECRET [--count 16] [--json OUT.json]
    python -m not_flower.evaluation.canary_cli check --checkpoint PATH --canary-seed 0 --client 1

The functions here are pure (numpy in, numpy out) apart from :func:`canary_scores`, which
runs a torch model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch

__all__ = [
    "ALPHA",
    "DEFAULT_PERMUTATIONS",
    "CanarySet",
    "canary_scores",
    "canary_test",
    "check_model",
    "client_canary_seed",
    "heldout_canary_seed",
    "make_canaries",
    "node_canary_seed",
    "permutation_p_value",
    "rank_auc",
]

#: Significance level of the verdict: ``p < ALPHA`` -> the model still carries the canaries.
ALPHA = 0.05
#: Random permutations of :func:`permutation_p_value` (p-value resolution 1 / 10,000).
DEFAULT_PERMUTATIONS = 9_999
#: Mixed into the generator's seed so that canaries never share a stream with other draws.
_STREAM = 0xCA7A


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class CanarySet:
    """A client's canaries: the ``in`` ones it trains on and the ``out`` ones it keeps.

    Attributes
    ----------
    seed : int
        The secret seed they were generated from (:func:`make_canaries`).
    x_in, y_in : np.ndarray
        In-canaries: float32 images ``(n_in, C, H, W)`` of 0s and 1s and int64 labels.
    x_out, y_out : np.ndarray
        Out-canaries, drawn the same way, never trained on.
    """

    seed: int
    x_in: np.ndarray
    y_in: np.ndarray
    x_out: np.ndarray
    y_out: np.ndarray

    def spec(self) -> dict:
        """What regenerates the set: seed, sizes, image shape and number of classes."""
        return {
            "seed": self.seed,
            "n_in": len(self.y_in),
            "n_out": len(self.y_out),
            "input_shape": list(self.x_in.shape[1:]),
        }


def make_canaries(
    seed: int,
    input_shape: tuple[int, int, int],
    num_classes: int,
    n_in: int,
    n_out: int | None = None,
) -> CanarySet:
    """Generate a client's canaries from its secret seed (deterministic).

    Every canary is an image of i.i.d. pixels, each 0 or 1 with probability 1/2 (the same
    in every channel of a pixel is not required: channels are drawn independently), with a
    uniformly drawn label; the first ``n_in`` are the in-canaries, the next ``n_out`` the
    out-canaries. Random pixels lie far from any natural image, so nothing but training on
    a canary teaches a model its label. Black-and-white rather than uniform grey levels: the
    federated CNN of ``tests/test_e2e_canary.py`` (digits, 4 clients, 6 rounds) fits them,
    AUC 0.89 and p 0.0001, where uniform grey pixels gave AUC 0.55 and p 0.31.

    Parameters
    ----------
    seed : int
        The client's secret seed, ``>= 0``.
    input_shape : tuple of int
        ``(C, H, W)`` of one image of the data set.
    num_classes : int
        Number of classes, ``>= 2``.
    n_in : int
        In-canaries (trained on), ``>= 1``.
    n_out : int, optional
        Out-canaries (kept); default ``n_in``.

    Returns
    -------
    CanarySet

    Raises
    ------
    ValueError
        On a negative or non-integer seed or count, a bad shape or fewer than 2 classes.
    """
    seed = _check_count("canary seed", seed, 0)
    n_in = _check_count("n_in", n_in, 1)
    n_out = n_in if n_out is None else _check_count("n_out", n_out, 1)
    num_classes = _check_count("num_classes", num_classes, 2)
    shape = tuple(input_shape)
    if len(shape) != 3 or any(
        isinstance(s, bool) or not isinstance(s, Integral) or s < 1 for s in shape
    ):
        raise ValueError(f"input_shape must be (C, H, W) with sizes >= 1; got {input_shape!r}")
    rng = np.random.default_rng([_STREAM, seed])
    n = n_in + n_out
    x = (rng.random((n, *shape)) < 0.5).astype(np.float32)
    y = rng.integers(0, num_classes, size=n).astype(np.int64)
    return CanarySet(seed, x[:n_in], y[:n_in], x[n_in:], y[n_in:])


#: The node-config key of a deployed client's own secret canary seed.
NODE_SEED_KEY = "canary-seed"


def node_canary_seed(node_config) -> int | None:
    """A deployed client's own secret canary seed, from its node config, if it set one.

    A SuperNode started with ``--node-config "... canary-seed=SECRET"`` plants the
    canaries of ``SECRET`` (:func:`make_canaries`, ``canary.count`` of them) in its
    training data and keeps the out-canaries to itself; the server never sees the seed, so
    only the client can run the check (``python -m not_flower.evaluation.canary_cli check
    --seed SECRET``). Without the key: ``None`` (the run config's ``canary.clients`` and
    ``canary.seed`` decide, as in a simulation).

    Parameters
    ----------
    node_config : Mapping
        The node's config (Flower's ``context.node_config``).

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        Naming the key and the value when it is not an integer >= 0.
    """
    if NODE_SEED_KEY not in node_config:
        return None
    value = node_config[NODE_SEED_KEY]
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError(
            f"node config {NODE_SEED_KEY}={value!r}: expected an integer >= 0 (the client's "
            "own secret canary seed)"
        )
    return int(str(value).strip())


def client_canary_seed(canary_seed: int, partition_id: int) -> int:
    """The seed of one client's canaries in a simulated run (``canary.seed``, partition id).

    A real client keeps its own secret seed; in a simulation every client with canaries
    gets its own from the run config's ``canary.seed``.
    """
    return int(np.random.SeedSequence([_STREAM, canary_seed, partition_id]).generate_state(1)[0])


#: The third word of :func:`heldout_canary_seed`'s seed sequence (no partition id is this
#: large, so the held-out canaries never share a client's stream).
_HELDOUT = 0x4E_4F_54


def heldout_canary_seed(canary_seed: int) -> int:
    """The seed of the membership attack's held-out canaries in a simulated run.

    The per-example attack (:mod:`not_flower.evaluation.reference_models`) scores the
    canaries a client planted against canaries drawn the same way that no federated model
    trains on; they come from this seed, which no client's
    (:func:`client_canary_seed`) equals.
    """
    return int(np.random.SeedSequence([_STREAM, canary_seed, _HELDOUT]).generate_state(1)[0])


@torch.no_grad()
def canary_scores(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 512,
    device: torch.device | None = None,
) -> np.ndarray:
    """Logit-scaled confidence of each sample's own label: ``log p_y - log(1 - p_y)``.

    Computed stably from the logits as ``z_y - logsumexp(z_j, j != y)``; higher means the
    model fits the sample better. The model is put in eval mode (its flag is restored).

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits.
    x, y : np.ndarray
        Images ``(N, C, H, W)`` and int labels ``(N,)``.
    batch_size : int
        Evaluation batch size.
    device : torch.device, optional
        Where to run (default: where the model's parameters are).

    Returns
    -------
    np.ndarray
        float64 scores, shape ``(N,)``.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
    if device is None:
        device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.asarray(x[start : start + batch_size], dtype=np.float32))
        yb = torch.as_tensor(np.asarray(y[start : start + batch_size], dtype=np.int64))
        logits = model(xb.to(device)).double().cpu()
        own = logits.gather(1, yb[:, None])[:, 0]
        others = logits.scatter(1, yb[:, None], -math.inf).logsumexp(1)
        out.append((own - others).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def rank_auc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """``U / (n_in * n_out)``: share of (in, out) pairs where the in-score is higher.

    Ties count half (average ranks). 0.5: no difference; 1: every in-score is higher.
    """
    a = np.asarray(scores_in, dtype=np.float64)
    b = np.asarray(scores_out, dtype=np.float64)
    return float(_u_statistics(np.concatenate([a, b]), len(a))[0] / (len(a) * len(b)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` (ties share their average rank)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def _u_statistics(pooled: np.ndarray, n_in: int, assignments: np.ndarray | None = None):
    """Mann-Whitney U of the first ``n_in`` values (or of each row of ``assignments``)."""
    ranks = _average_ranks(pooled)
    if assignments is None:
        return np.array([ranks[:n_in].sum() - n_in * (n_in + 1) / 2.0])
    return ranks[assignments].sum(axis=1) - n_in * (n_in + 1) / 2.0


def permutation_p_value(
    scores_in: np.ndarray,
    scores_out: np.ndarray,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> float:
    """One-sided p-value that the in-scores are higher (Mann-Whitney U, permutation test).

    ``p = (1 + #{permutations with U >= U_observed}) / (1 + permutations)``, where each
    permutation reassigns the pooled scores at random to ``n_in`` "in" and ``n_out``
    "out". Exchangeable scores give ``P(p <= a) <= a`` for every ``a``.

    Parameters
    ----------
    scores_in, scores_out : np.ndarray
        Scores of the in- and out-canaries (1-D, finite, at least one each).
    permutations : int
        Random permutations, ``>= 1``; the smallest p-value is ``1 / (1 + permutations)``.
    seed : int
        Seeds the permutations (the same scores always give the same p-value).

    Returns
    -------
    float
        The p-value, in ``(0, 1]``.

    Raises
    ------
    ValueError
        On empty or non-finite scores or a bad ``permutations``.
    """
    a = np.asarray(scores_in, dtype=np.float64).ravel()
    b = np.asarray(scores_out, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"need at least one in- and one out-score; got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite")
    permutations = _check_count("permutations", permutations, 1)
    pooled = np.concatenate([a, b])
    observed = _u_statistics(pooled, len(a))[0]
    rng = np.random.default_rng([_STREAM, seed])
    hits = 0
    for start in range(0, permutations, 1000):  # in blocks: bounded memory
        block = min(1000, permutations - start)
        chosen = rng.permuted(np.tile(np.arange(len(pooled)), (block, 1)), axis=1)[:, : len(a)]
        hits += int((_u_statistics(pooled, len(a), chosen) >= observed - 1e-9).sum())
    return (1 + hits) / (1 + permutations)


def canary_test(
    scores_in: np.ndarray,
    scores_out: np.ndarray,
    *,
    alpha: float = ALPHA,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> dict:
    """The canary test on given scores: statistic, p-value, verdict and sizes.

    Parameters
    ----------
    scores_in, scores_out : np.ndarray
        Per-canary scores (:func:`canary_scores`) of the in- and out-canaries.
    alpha : float
        Significance level, in ``(0, 1)``.
    permutations, seed
        See :func:`permutation_p_value`.

    Returns
    -------
    dict
        ``auc`` (:func:`rank_auc`), ``p_value``, ``alpha``, ``detected``
        (``p_value < alpha``: the model still carries the in-canaries), ``n_in``,
        ``n_out``, ``mean_score_in``, ``mean_score_out`` and ``permutations``.
    """
    if not (isinstance(alpha, float | int) and 0 < alpha < 1) or isinstance(alpha, bool):
        raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}")
    p = permutation_p_value(scores_in, scores_out, permutations=permutations, seed=seed)
    return {
        "auc": rank_auc(scores_in, scores_out),
        "p_value": p,
        "alpha": float(alpha),
        "detected": bool(p < alpha),
        "n_in": len(scores_in),
        "n_out": len(scores_out),
        "mean_score_in": float(np.mean(scores_in)),
        "mean_score_out": float(np.mean(scores_out)),
        "permutations": permutations,
    }


def check_model(model: torch.nn.Module, canaries: CanarySet, **kwargs) -> dict:
    """Score ``canaries`` under ``model`` and run :func:`canary_test` (``kwargs`` go there).

    Parameters
    ----------
    model : torch.nn.Module
        The model to check (a global model loaded from a checkpoint).
    canaries : CanarySet
        The client's canaries.

    Returns
    -------
    dict
        :func:`canary_test`'s result.
    """
    scores_in = canary_scores(model, canaries.x_in, canaries.y_in)
    scores_out = canary_scores(model, canaries.x_out, canaries.y_out)
    return canary_test(scores_in, scores_out, **kwargs)
