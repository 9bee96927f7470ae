"""Reference models for the per-example membership attack, trained centrally and cached on disk.

The evaluation harness rebuilds every client's training data from the run's data spec; this
module pools it with the held-out test split into one *universe*, trains ``K`` reference
models of the run's architecture centrally, each on a random half of the universe (every
sample "in" for exactly ``K / 2`` of them,
:func:`not_flower.evaluation.membership.balanced_membership`), and keeps each model's
:func:`~not_flower.evaluation.membership.logit_confidence` on every sample.
That is the whole of what LiRA needs from them, so the cache is one small ``.npz`` per
(data, partitioning, seed, model, training settings): every method of a comparison, run
after run, loads the same reference models.

:class:`MembershipHarness` is what the ServerApp's evaluator calls: ``set_forget`` fixes
the forget set inside the universe, ``metrics(model)`` attacks a global model.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from logging import INFO
from pathlib import Path

import numpy as np
import torch
from flwr.common.logger import log

from not_flower.common import progress
from not_flower.evaluation.membership import (
    balanced_membership,
    lira_scores,
    logit_confidence,
    matching_weights,
    membership_metrics,
)
from not_flower.evaluation.metrics import predict_logits
from not_flower.task.backdoor import stamp_trigger
from not_flower.task.canary import heldout_canary_seed, make_canaries
from not_flower.task.mislabel import invert, mislabel
from not_flower.task.models import build_model
from not_flower.task.spec import DataSpec
from not_flower.task.training import client_data, dataset_for, device, train

__all__ = [
    "CANARY",
    "CLEAN",
    "DEFAULT_CACHE_DIR",
    "HELDOUT_CANARIES",
    "MISLABELLED",
    "POISONED",
    "STYLED",
    "STYLED_MISLABELLED",
    "MembershipHarness",
    "ReferenceSet",
    "ReferenceSpec",
    "Universe",
    "build_universe",
    "reference_confidences",
    "reference_set",
]

#: Where reference models are cached when ``mia.cache-dir`` is empty.
DEFAULT_CACHE_DIR = Path("~/.cache/not-flower/mia-reference")

#: Bump when the cached content or its meaning changes.
_CACHE_VERSION = 2  # 2: held-out poisoned copies in the universe


#: ``Universe.kind`` values: a clean sample, a poisoned one (trigger + backdoor label), a
#: mislabelled one (a wrong label of its own), an inverted one (``style.clients``), an
#: inverted and mislabelled one, a canary (``canary.clients``; random pixels, random label).
CLEAN, POISONED, MISLABELLED, STYLED, STYLED_MISLABELLED, CANARY = 0, 1, 2, 3, 4, 5

#: Held-out canaries in the universe when clients plant canaries (at least; as many as the
#: clients planted when they planted more): the non-members the planted canaries are scored
#: against, enough for a 1 % false-positive rate to be two of them.
HELDOUT_CANARIES = 200


@dataclass(frozen=True)
class ReferenceSpec:
    """How the reference models train and where they are cached; run-config keys in brackets.

    Parameters
    ----------
    num_models : int
        Reference models, >= 2; 0 turns the attack off (``mia.reference-models``).
    epochs : int
        Central SGD epochs of each reference model (``mia.reference-epochs``, or
        ``num-train-rounds x local-epochs`` when that is 0).
    cache_dir : str
        Folder of the cache; empty: :data:`DEFAULT_CACHE_DIR` (``mia.cache-dir``).
    model : str
        The run's architecture (``model``).
    batch_size : int
        Mini-batch size (``batch-size``).
    lr, momentum : float
        SGD settings (``lr``, ``momentum``).
    """

    num_models: int
    epochs: int
    cache_dir: str = ""
    model: str = "cnn"
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.9


@dataclass(frozen=True)
class Universe:
    """Every sample the attack scores: the clients' training data, then the held-out set.

    Attributes
    ----------
    x, y : np.ndarray
        Samples and labels, as the clients hold them (poisoned ones included).
    offsets : np.ndarray
        ``offsets[p] : offsets[p + 1]`` are partition ``p``'s training samples;
        ``offsets[-1]:`` is the held-out set (never trained on by a federated model):
        the test split, then, when clients poison or mislabel samples, test images
        altered the same way, as many as the clients altered (:func:`build_universe`).
    kind : np.ndarray or None
        ``(N,)`` int8: :data:`CLEAN`, :data:`POISONED`, :data:`MISLABELLED`,
        :data:`STYLED`, :data:`STYLED_MISLABELLED` or :data:`CANARY`; None means all clean.
    """

    x: np.ndarray
    y: np.ndarray
    offsets: np.ndarray
    kind: np.ndarray | None = None

    @property
    def poisoned(self) -> np.ndarray:
        """``(N,)`` bool: the sample carries the trigger and the backdoor label."""
        return self.of_kind(POISONED)

    def of_kind(self, kind: int) -> np.ndarray:
        """``(N,)`` bool: the samples of ``kind`` (:data:`CLEAN`, :data:`POISONED`, ...)."""
        if self.kind is None:
            return np.full(len(self.y), kind == CLEAN)
        return self.kind == kind

    def strata(self) -> np.ndarray:
        """Stratum of each sample for :func:`~not_flower.evaluation.membership.matching_weights`:
        its label and its kind (``label + K * kind``)."""
        if self.kind is None:
            return self.y.copy()
        return self.y + (int(self.y.max()) + 1) * self.kind.astype(np.int64)

    @property
    def num_partitions(self) -> int:
        """Number of client partitions in the universe."""
        return len(self.offsets) - 1

    @property
    def heldout(self) -> slice:
        """Slice of the held-out set (never trained on by a federated model)."""
        return slice(int(self.offsets[-1]), len(self.y))


def _altered_heldout(spec: DataSpec, kinds: np.ndarray, data) -> list[tuple]:
    """Test images altered the way the clients altered theirs: ``(x, y, kind)`` blocks.

    Without them a forget set 40 % poisoned (or 30 % mislabelled) is compared with clean
    held-out samples only, and its altered samples, on which no model that never saw
    them is confident, pull the AUC below 50 for every model (see the evaluation guide's
    membership section). Per kind of the clients' samples (``kinds``), as many copies as
    they hold, so that each reference model (half the universe) trains on about as many
    as the federation does. When clients planted canaries, canaries drawn the same way
    from a seed of their own (:func:`not_flower.task.canary.heldout_canary_seed`),
    :data:`HELDOUT_CANARIES` of them or as many as were planted.
    """
    n_test = len(data.y_test)
    blocks = []
    for kind in (POISONED, MISLABELLED, STYLED, STYLED_MISLABELLED):
        n = min(int((kinds == kind).sum()), n_test)
        if not n:
            continue
        pick = np.sort(np.random.default_rng(spec.seed + 4244 + kind).choice(n_test, n, False))
        x, y = data.x_test[pick], data.y_test[pick]
        if kind == POISONED:
            x = stamp_trigger(x, size=spec.backdoor_trigger_size)
            y = np.full(n, spec.backdoor_target)
        if kind in (MISLABELLED, STYLED_MISLABELLED):
            y, _ = mislabel(y, 1.0, data.num_classes, seed=spec.seed + 4250 + kind)
        if kind in (STYLED, STYLED_MISLABELLED):
            x = invert(x)
        blocks.append((x, y, kind))
    planted = int((kinds == CANARY).sum())
    if planted:  # canaries drawn as the clients draw theirs, from a stream of their own
        n = max(HELDOUT_CANARIES, planted)
        canaries = make_canaries(
            heldout_canary_seed(spec.canary_seed), data.input_shape, data.num_classes, n_in=n
        )
        blocks.append((canaries.x_in.astype(data.x_test.dtype), canaries.y_in, CANARY))
    return blocks


def build_universe(
    spec: DataSpec, num_partitions: int, *, altered_heldout: bool = True
) -> Universe:
    """Pool every partition's training data (partition order) with the held-out set.

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (data set, partitioning, seed, backdoor).
    num_partitions : int
        Partitions of the federation.
    altered_heldout : bool, default True
        When clients poison (``backdoor.clients``), mislabel (``mislabel.clients``) or
        invert (``style.clients``) samples, append a seeded choice of test images
        altered the same way (trigger and backdoor label; a wrong label; inverted), as
        many as the clients altered; when clients plant canaries (``canary.clients``),
        mark them :data:`CANARY` and append held-out canaries (:func:`_altered_heldout`).
        False gives the universe of the attack before they were added (the test split
        only, canaries unmarked), to reproduce its numbers.

    Returns
    -------
    Universe
    """
    parts = [client_data(spec, pid, num_partitions) for pid in range(num_partitions)]
    data = dataset_for(spec)
    sizes = [len(p.y_train) for p in parts]
    offsets = np.cumsum([0, *sizes]).astype(np.int64)
    xs = [*(p.x_train for p in parts), data.x_test]
    ys = [*(p.y_train for p in parts), data.y_test]
    kinds = []
    for p in parts:
        kind = np.zeros(len(p.y_train), dtype=np.int8)
        kind[p.poisoned] = POISONED
        own_style = str(p.partition_id) in spec.style_clients
        if own_style:
            kind[:] = STYLED
        kind[p.mislabelled] = STYLED_MISLABELLED if own_style else MISLABELLED
        if altered_heldout:
            kind[p.canaries] = CANARY
        kinds.append(kind)
    altered = _altered_heldout(spec, np.concatenate(kinds), data) if altered_heldout else []
    kinds.append(np.zeros(len(data.y_test), dtype=np.int8))
    for x, y, kind in altered:
        xs.append(x)
        ys.append(y)
        kinds.append(np.full(len(y), kind, dtype=np.int8))
    return Universe(
        x=np.concatenate(xs),
        y=np.concatenate(ys).astype(np.int64),
        offsets=offsets,
        kind=np.concatenate(kinds),
    )


def forget_mask(
    universe: Universe,
    forget_ids: set[int],
    *,
    classes: set[int] | None = None,
    samples: dict[int, set[int]] | None = None,
    all_clients: bool = False,
) -> np.ndarray:
    """Boolean mask of the forget set in ``universe`` (the forget set the evaluator uses).

    Client-wise: the targets' training data; class-wise (``classes``): the targets' (every
    client's with ``all_clients``) samples of those classes; instance-wise (``samples``:
    partition id -> sample ids): those samples. Test samples are never in it.
    """
    mask = np.zeros(len(universe.y), dtype=bool)
    for pid in range(universe.num_partitions):
        if not (all_clients or pid in forget_ids):
            continue
        lo, hi = int(universe.offsets[pid]), int(universe.offsets[pid + 1])
        if classes:
            mask[lo:hi] = np.isin(universe.y[lo:hi], list(classes))
        elif samples is not None:
            ids = [i for i in samples.get(pid, ()) if i < hi - lo]
            mask[lo + np.asarray(ids, dtype=np.int64)] = True
        else:
            mask[lo:hi] = True
    return mask


def reference_confidences(
    x: np.ndarray,
    y: np.ndarray,
    membership: np.ndarray,
    make_model: Callable[[], torch.nn.Module],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    seed: int,
    dev: torch.device | None = None,
    on_model: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, float]:
    """Train one model per row of ``membership`` on its "in" samples; score every sample.

    Parameters
    ----------
    x, y : np.ndarray
        The universe's samples and labels.
    membership : np.ndarray
        ``(M, N)`` bool, row ``m`` = the samples model ``m`` trains on.
    make_model : callable
        Returns a fresh untrained model (called after seeding torch per model).
    epochs, batch_size : int
        Central SGD epochs and batch size of each reference model.
    lr, momentum : float
        SGD settings.
    seed : int
        Model ``m`` is initialised after ``torch.manual_seed(seed * 1000 + m)`` and
        shuffled with the same number.
    dev : torch.device, optional
        Where to train; default :func:`not_flower.task.training.device`.
    on_model : Callable[[int, int], None] or None
        Called as ``on_model(m + 1, M)`` before model ``m`` trains (progress).

    Returns
    -------
    tuple[np.ndarray, float]
        ``(M, N)`` float32 logit-scaled confidences of the true label, and the wall
        seconds the training and scoring took.
    """
    dev = dev or device()
    t0 = time.perf_counter()
    conf = np.zeros(membership.shape, dtype=np.float32)
    for m, keep in enumerate(membership):
        if on_model is not None:
            on_model(m + 1, len(membership))
        torch.manual_seed(seed * 1000 + m)
        model = make_model().to(dev)
        train(
            model,
            x[keep],
            y[keep],
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            momentum=momentum,
            seed=seed * 1000 + m,
            dev=dev,
        )
        conf[m] = logit_confidence(predict_logits(model, x, device=dev), y)
    return conf, time.perf_counter() - t0


@dataclass(frozen=True)
class ReferenceSet:
    """Cached reference models: their confidences and which samples each trained on."""

    confidences: np.ndarray  # (M, N) float32
    membership: np.ndarray  # (M, N) bool
    train_seconds: float
    path: Path
    loaded: bool  # True when read from the cache, False when trained by this call


def _cache_key(
    spec: DataSpec, reference: ReferenceSpec, num_partitions: int, universe: Universe
) -> dict:
    # canaries change the planting clients' data; without them the key is as before
    canaries = (
        {
            "canary_clients": sorted(spec.canary_clients),
            "canary_count": spec.canary_count,
            "canary_seed": spec.canary_seed,
        }
        if spec.canary_clients
        else {}
    )
    return {
        **canaries,
        "version": _CACHE_VERSION,
        "dataset": spec.dataset,
        "data_dir": spec.data_dir,
        "train_subset": spec.train_subset,
        "test_subset": spec.test_subset,
        "partitioner": spec.partitioner,
        "dirichlet_alpha": spec.dirichlet_alpha,
        "val_fraction": spec.val_fraction,
        "seed": spec.seed,
        "num_partitions": num_partitions,
        "backdoor_clients": sorted(spec.backdoor_clients),
        "backdoor_fraction": spec.backdoor_fraction,
        "backdoor_target": spec.backdoor_target,
        "backdoor_trigger_size": spec.backdoor_trigger_size,
        "server_data_fraction": spec.server_data_fraction,
        "model": reference.model,
        "num_models": reference.num_models,
        "epochs": reference.epochs,
        "batch_size": reference.batch_size,
        "lr": reference.lr,
        "momentum": reference.momentum,
        "num_samples": len(universe.y),
        "mislabel_clients": sorted(spec.mislabel_clients),
        "mislabel_fraction": spec.mislabel_fraction,
        "style_clients": sorted(spec.style_clients),
        "altered_samples": 0 if universe.kind is None else int((universe.kind > 0).sum()),
        # the samples themselves: a changed data file must not reuse old models
        "labels_sha256": hashlib.sha256(universe.y.tobytes()).hexdigest(),
    }


def reference_set(
    spec: DataSpec, reference: ReferenceSpec, universe: Universe, num_partitions: int
) -> ReferenceSet:
    """Load the run's reference models from the cache, or train and cache them.

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (part of the cache key; its seed seeds the training).
    reference : ReferenceSpec
        Needs ``num_models`` >= 2; the cache folder is ``cache_dir`` (default
        ``~/.cache/not-flower/mia-reference``).
    universe : Universe
        From :func:`build_universe`.
    num_partitions : int
        Partitions of the federation (part of the cache key).

    Returns
    -------
    ReferenceSet
    """
    key = _cache_key(spec, reference, num_partitions, universe)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    folder = (
        Path(reference.cache_dir).expanduser()
        if reference.cache_dir
        else DEFAULT_CACHE_DIR.expanduser()
    )
    path = folder / f"reference-{spec.dataset}-seed{spec.seed}-{digest}.npz"
    if path.is_file():
        with np.load(path) as f:
            if json.loads(str(f["key"])) == key:
                log(
                    INFO,
                    "membership: %d reference models loaded from %s",
                    reference.num_models,
                    path,
                )
                return ReferenceSet(
                    f["confidences"],
                    f["membership"].astype(bool),
                    float(f["train_seconds"]),
                    path,
                    loaded=True,
                )
    membership = balanced_membership(reference.num_models, len(universe.y), seed=spec.seed + 4243)
    data = dataset_for(spec)
    epochs = reference.epochs
    log(
        INFO,
        "membership: training %d reference models (%s, %d epochs on ~%d samples each; "
        "run-config mia.reference-models = 0 turns the attack off)",
        reference.num_models,
        reference.model,
        epochs,
        len(universe.y) // 2,
    )
    conf, seconds = reference_confidences(
        universe.x,
        universe.y,
        membership,
        lambda: build_model(reference.model, data.input_shape, data.num_classes),
        epochs=epochs,
        batch_size=reference.batch_size,
        lr=reference.lr,
        momentum=reference.momentum,
        seed=spec.seed,
        on_model=lambda done, total: progress.report(
            "membership: reference model", done, total, f"{epochs} epochs"
        ),
    )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        confidences=conf,
        membership=membership,
        train_seconds=seconds,
        key=json.dumps(key, sort_keys=True),
    )
    os.replace(tmp, path)
    log(INFO, "membership: reference models trained in %.1f s, cached in %s", seconds, path)
    return ReferenceSet(conf, membership, seconds, path, loaded=False)


class MembershipHarness:
    """The per-example attack on the run's global models (LiRA, online; see membership.py).

    Parameters
    ----------
    spec : DataSpec
        The run's data spec.
    reference : ReferenceSpec
        The reference models, ``num_models`` >= 2.
    """

    def __init__(self, spec: DataSpec, reference: ReferenceSpec) -> None:
        self.spec = spec
        self.reference_spec = reference
        self.universe: Universe | None = None
        self.reference: ReferenceSet | None = None
        self.mask: np.ndarray | None = None

    def set_forget(self, num_partitions: int, forget_ids: set[int], **kind) -> None:
        """Fix the forget set (same arguments as the evaluator's); trains or loads references."""
        if self.universe is None or self.universe.num_partitions != num_partitions:
            self.universe = build_universe(self.spec, num_partitions)
            self.reference = reference_set(
                self.spec, self.reference_spec, self.universe, num_partitions
            )
        self.mask = forget_mask(self.universe, forget_ids, **kind)

    def metrics(self, model: torch.nn.Module) -> dict[str, float]:
        """LiRA's AUC and TPR at 1 % / 0.1 % FPR of the forget set against the test split.

        The held-out samples are weighted to the forget set's make-up (label, poisoned
        or not; :func:`~not_flower.evaluation.membership.matching_weights`), and to the retained
        data's for ``lira_retain_tpr_fpr1``, so that a model that never saw the forget
        set scores an AUC of about 50 whatever the forget set holds. When the forget set
        holds canaries, the same attack on them alone, against the held-out canaries
        (unweighted: canaries and their labels are drawn i.i.d.).

        Returns
        -------
        dict[str, float]
            :func:`not_flower.evaluation.membership.membership_metrics` keys (``lira_auc``,
            ``lira_tpr_fpr1``, ``lira_tpr_fpr01``, ``lira_retain_tpr_fpr1``), and with
            canaries in the forget set ``lira_canary_auc``, ``lira_canary_tpr_fpr1`` and
            ``lira_canary_tpr_fpr01``; empty before :meth:`set_forget` or with an empty
            forget set.
        """
        if self.mask is None or not self.mask.any():
            return {}
        u = self.universe
        conf = logit_confidence(predict_logits(model, u.x, device=device()), u.y)
        scores = lira_scores(conf, self.reference.confidences, self.reference.membership)
        heldout = np.zeros(len(u.y), dtype=bool)
        heldout[u.heldout] = True
        retain = ~self.mask & ~heldout
        strata = u.strata()
        out = membership_metrics(
            scores[self.mask],
            scores[heldout],
            scores[retain],
            nonmember_weights=matching_weights(strata[self.mask], strata[heldout]),
            retain_weights=matching_weights(strata[retain], strata[heldout]),
        )
        canary = u.of_kind(CANARY)
        if (self.mask & canary).any():
            out.update(
                membership_metrics(
                    scores[self.mask & canary], scores[heldout & canary], prefix="lira_canary"
                )
            )
        return out

    def info(self) -> dict:
        """What ``results.json`` keeps about the attack: models, epochs, time, cache."""
        ref = self.reference
        return {
            "attack": (
                "LiRA (online, one fixed variance), logit-scaled confidence of the true label"
            ),
            "reference_models": self.reference_spec.num_models,
            "reference_epochs": self.reference_spec.epochs,
            "universe": None
            if self.universe is None
            else {
                "train": int(self.universe.offsets[-1]),
                "heldout": int(len(self.universe.y) - self.universe.offsets[-1]),
                "heldout_altered": int((self.universe.kind[self.universe.heldout] > 0).sum()),
                "heldout_canaries": int(self.universe.of_kind(CANARY)[self.universe.heldout].sum()),
                "nonmembers": "the held-out samples weighted to the forget set's make-up "
                "(label; clean, poisoned or mislabelled)",
            },
            "train_seconds": None if ref is None else ref.train_seconds,
            "loaded_from_cache": None if ref is None else ref.loaded,
            "cache": None if ref is None else str(ref.path),
        }
