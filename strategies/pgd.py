"""PGD: the target client unlearns itself by projected gradient ascent (Halimi et al. 2022).

A. Halimi, S. Kadhe, A. Rawat, N. Baracaldo, "Federated Unlearning: How to Efficiently
Erase a Client in FL?", arXiv 2207.05521 (2022).

What the paper does
-------------------
1. A reference model is formed: the average of the *other* clients' local models of the
   last round, ``w_ref = (N w^T - w_i^{T-1}) / (N - 1)``, which is "far from the target,
   close to the others".
2. The target client, starting at ``w_ref``, *maximises* its own empirical loss by
   gradient ascent, each step followed by a projection onto the L2 ball of radius
   ``delta`` around ``w_ref`` (so the model cannot drift into a useless region); it stops
   early once the model is bad enough on its own data.
3. The result becomes the global model and a few FedAvg rounds with the remaining
   clients restore utility ("post-training").

Choices where the paper leaves one open (ours)
----------------------------------------------
* **Reference model.** The paper lets the *target* compute ``w_ref`` from the global
  model and its own last local model (equal client weights). Here the *server* computes
  it: the ``num-examples``-weighted average (FedAvg's weights) of the latest local model
  of every non-target client, kept from the last train round in which each took part
  (with full participation: the last round). The server therefore keeps one local model
  per client, always (any client may ask): that is PGD's storage, measured as the bytes
  of those arrays (:attr:`PGDUnlearner.storage_bytes`; the peak is reported). Non-float tensors
  (BatchNorm's ``num_batches_tracked``) come from the global model. If no non-target
  local model is stored (a request at round 1), ``w_ref`` is the global model; the step
  record says which was used.
* **What is sent.** The target gets ``w_ref`` (ArrayRecord ``"reference"``) and the
  settings (``"config"``); the ascent starts at ``w_ref`` as in the paper, so the global
  model itself is not sent. With several targets at one boundary they run one after the
  other inside the same ball (the second starts from the first's result, sent as
  ``"arrays"``).
* **Radius.** ``delta = sqrt(mean_j ||w_ref - w_rand_j||^2 / radius_divisor)`` over 10
  freshly initialised models ``w_rand_j`` (seeds ``seed .. seed+9``) and over the
  trainable parameters (``param_keys``), with ``radius_divisor = 3``: the authors'
  published notebook takes one third of the mean *squared* distance to random models as
  the squared radius. Computed by the server (``random_model_fn``) and sent as
  ``pgd-radius``; the server checks the reply: a model outside the ball (beyond float
  rounding) is projected back by the server and the step record says so.
* **The ball** covers the trainable parameters only; buffers (BatchNorm running
  statistics) are reset to ``w_ref``'s after the ascent, so the target's data statistics
  do not leak into the model through them.
* **Ascent.** SGD on ``-cross-entropy`` over the target's whole training split,
  ``epochs = 5`` (``pgd.epochs``), ``lr = 0.01`` (``pgd.lr``), momentum 0.9, gradient
  norm clipped at 1.0, the run's batch size; projection after every step (as the
  authors' notebook does).
* **Early stop.** Ten times per epoch (every ``ceil(batches / 10)`` steps and at the end
  of the epoch) the target measures its accuracy on its own whole training split (eval
  mode); below ``stop_accuracy`` (``pgd.stop-accuracy``, default 0.2, twice chance on 10
  classes) the ascent stops. The threshold is ours. At 0.1 (chance) a model that has
  collapsed onto one class scores about that class's share of the data (10-12 % on
  digits) and may never cross it: the ascent then runs all its epochs to the ball's
  boundary (measured on digits, 3 clients: unlearned model 10 % test accuracy, 14 %
  after 2 recovery rounds; with 0.2 it stops within the first epoch at 19 % and one
  recovery round brings 92 %). Public re-implementations of the authors' notebook stop
  instead when the distance to the target's last local model exceeds a data-set specific
  constant; the accuracy rule needs no such constant and no stored client model.
* **Post-training** = not-flower's recovery: ``recovery.rounds`` FedAvg rounds without
  the target, exactly as FT/NoT recover.
* A target that does not answer: the step keeps ``w_ref`` as the unlearned model (with a
  WARNING and ``status`` in the step record); recovery goes on.

Requirements: storage (one local model per client), the target's data and its
participation (one ``train.pgd`` message), no server-side data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from logging import INFO, WARNING

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.supercore import log
from torch import nn

from .not_strategy import NoT
from .pgd_ascent import l2_distance, project_to_ball, projected_gradient_ascent  # noqa: F401
from .replies import array_layout, check_train_reply, reply_metrics
from .unlearner import CLIENT_ONLY, Requirements, UnlearningStep
from .unlearning_step import float_keys, nbytes, to_numpy, to_record

#: Message type of the ascent (``@app.train("pgd")`` in the ClientApp).
PGD_MESSAGE_TYPE = "train.pgd"


# --------------------------------------------------------------------------- pure parts
def pgd_radius(
    reference: dict[str, np.ndarray],
    random_models: Iterable[dict[str, np.ndarray]],
    keys: Sequence[str],
    divisor: float = 3.0,
) -> float:
    """``sqrt(mean_j ||reference - random_j||^2 / divisor)`` over ``keys``."""
    squares = [l2_distance(reference, r, keys) ** 2 for r in random_models]
    if not squares:
        raise ValueError("pgd_radius needs at least one random model")
    return math.sqrt(float(np.mean(squares)) / divisor)


class PGDUnlearner:
    """PGD as an unlearner: keeps every client's latest local model; at a request the
    target runs projected gradient ascent from ``w_ref`` (see the module docstring).

    Parameters
    ----------
    epochs, lr, momentum, clip, stop_accuracy
        Settings of the ascent (see the module docstring).
    radius : float or None
        Fixed ball radius; ``None``: computed from ``random_model_fn``.
    random_model_fn : Callable[[int], dict[str, np.ndarray]] or None
        ``seed -> state dict`` of a freshly initialised model (needed unless ``radius``).
    radius_divisor : float (default: 3.0)
        ``delta^2 = mean squared distance to random models / radius_divisor``.
    radius_draws : int (default: 10)
        Number of random models.
    param_keys : sequence of str or None
        State-dict keys of the trainable parameters (the ball's coordinates); default every
        floating-point tensor.
    message_type : str (default: "train.pgd")
        Message type of the ascent.
    seed : int (default: 0)
        Seeds the random models and the target's shuffling.
    """

    name = "PGD"
    requirements = Requirements(
        storage="every client's latest local model, in server memory",
        target_data=True,
        target_participation=True,
        server_data=False,
    )
    kinds = CLIENT_ONLY
    records_step = True
    layers: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        epochs: int = 5,
        lr: float = 0.01,
        momentum: float = 0.9,
        clip: float = 1.0,
        stop_accuracy: float = 0.2,
        radius: float | None = None,
        random_model_fn: Callable[[int], dict[str, np.ndarray]] | None = None,
        radius_divisor: float = 3.0,
        radius_draws: int = 10,
        param_keys: Sequence[str] | None = None,
        message_type: str = PGD_MESSAGE_TYPE,
        seed: int = 0,
    ) -> None:
        if radius is None and random_model_fn is None:
            raise ValueError(
                "PGD needs radius= or random_model_fn= (to measure the distance "
                "of the reference model to random models)"
            )
        if radius is not None and not radius > 0:
            raise ValueError(f"PGD radius must be > 0, got {radius}")
        if epochs < 1 or lr <= 0 or radius_divisor <= 0 or radius_draws < 1:
            raise ValueError("PGD needs epochs >= 1, lr > 0, radius_divisor > 0, radius_draws >= 1")
        self.epochs, self.lr, self.momentum, self.clip = epochs, lr, momentum, clip
        self.stop_accuracy = stop_accuracy
        self.radius = radius
        self.random_model_fn = random_model_fn
        self.radius_divisor, self.radius_draws = radius_divisor, radius_draws
        self.param_keys = list(param_keys) if param_keys is not None else None
        self.message_type = message_type
        self.seed = seed
        #: node id -> (num-examples, its latest local model)
        self.latest: dict[int, tuple[float, dict[str, np.ndarray]]] = {}

    @property
    def storage_bytes(self) -> int:
        """Bytes of the local models kept (one per client)."""
        return sum(nbytes(w) for _, w in self.latest.values())

    def observe_train(
        self, server_round: int, sent: ArrayRecord, replies: list[Message], weighted_by_key: str
    ) -> None:
        """Keep each replying client's local model (the latest replaces the one before)."""
        del server_round, sent
        for msg in replies:
            record = next(iter(msg.content.array_records.values()))
            weight = float(reply_metrics(msg.content)[weighted_by_key])
            self.latest[msg.metadata.src_node_id] = (weight, to_numpy(record))

    def reference_model(
        self, arrays: ArrayRecord, excluded=frozenset()
    ) -> tuple[dict[str, np.ndarray], str]:
        """``w_ref``: weighted average of the non-excluded clients' latest local models."""
        glob = to_numpy(arrays)
        others = [(w, m) for n, (w, m) in self.latest.items() if n not in excluded]
        if not others:
            return glob, "global model (no stored local model of a non-target client)"
        total = sum(w for w, _ in others)
        ref = dict(glob)
        for k in float_keys(glob):
            acc = np.zeros(glob[k].shape, dtype=np.float64)
            for w, m in others:
                acc += (w / total) * m[k].astype(np.float64)
            ref[k] = acc.astype(glob[k].dtype)
        return ref, (
            f"num-examples-weighted average of the latest local models of "
            f"{len(others)} non-target client(s)"
        )

    def _radius(self, ref: dict[str, np.ndarray], keys: list[str]) -> float:
        if self.radius is not None:
            return float(self.radius)
        with torch.random.fork_rng():
            randoms = [self.random_model_fn(self.seed + j) for j in range(self.radius_draws)]
        return pgd_radius(ref, randoms, keys, self.radius_divisor)

    def unlearn(self, step: UnlearningStep) -> ArrayRecord:
        """Send ``w_ref`` to the target(s) for the ascent; return the projected result."""
        ref, source = self.reference_model(step.arrays, step.excluded)
        keys = self.param_keys or float_keys(ref)
        radius = self._radius(ref, keys)
        connected = set(step.grid.get_node_ids())
        current: dict[str, np.ndarray] | None = None
        details = []
        for target in step.targets:
            detail: dict = {"node_id": target}
            details.append(detail)
            if target not in connected:
                log(
                    WARNING,
                    "PGD: target node %d is not connected; it cannot run the ascent",
                    target,
                )
                detail["status"] = "not connected"
                continue
            w = self._ascent(step, target, ref, current, keys, radius, detail)
            if w is not None:
                current = w
        for target in step.targets:  # the target's local model is not kept after its removal
            self.latest.pop(target, None)
        result = current if current is not None else ref
        step.record.update(
            reference=source,
            radius=radius,
            distance=l2_distance(result, ref, keys),
            num_keys=len(keys),
            targets_detail=details,
        )
        log(
            INFO,
            "PGD: round %d: ascent by %s, radius %.4g, distance %.4g (reference: %s)",
            step.server_round,
            step.targets,
            radius,
            step.record["distance"],
            source,
        )
        return to_record(result)

    # pylint: disable=too-many-arguments
    def _ascent(
        self,
        step: UnlearningStep,
        target: int,
        ref: dict[str, np.ndarray],
        current: dict[str, np.ndarray] | None,
        keys: list[str],
        radius: float,
        detail: dict,
    ) -> dict[str, np.ndarray] | None:
        """One target's ascent: its checked, projected model, or ``None`` (see ``detail``)."""
        config = ConfigRecord(
            {
                "server-round": step.server_round,
                "pgd-radius": radius,
                "pgd-keys": list(keys),
                "pgd-epochs": self.epochs,
                "pgd-lr": self.lr,
                "pgd-momentum": self.momentum,
                "pgd-clip": self.clip,
                "pgd-stop-accuracy": self.stop_accuracy,
                "pgd-seed": self.seed * 100_003 + step.server_round,
            }
        )
        content = RecordDict({"reference": to_record(ref), "config": config})
        if current is not None:
            content["arrays"] = to_record(current)
        msg = Message(content, dst_node_id=target, message_type=self.message_type)
        replies = step.send([msg], who="PGD")
        reply = next((m for m in replies if m.metadata.src_node_id == target), None)
        if reply is None:
            log(WARNING, "PGD: target node %d did not return the ascent", target)
            detail["status"] = "no reply"
            return None
        reason = check_train_reply(reply.content, array_layout(step.arrays), step.weighted_by_key)
        if reason is not None:
            log(WARNING, "PGD: rejected the ascent of node %d: %s", target, reason)
            detail["status"] = f"rejected: {reason}"
            return None
        w = to_numpy(next(iter(reply.content.array_records.values())))
        dist = l2_distance(w, ref, keys)
        detail["projected_by_server"] = dist > radius * (1 + 1e-5) + 1e-6
        if detail["projected_by_server"]:
            log(
                WARNING,
                "PGD: node %d returned a model %.4g from w_ref (radius %.4g); projected",
                target,
                dist,
                radius,
            )
            w = project_to_ball(w, ref, radius, keys)
        detail.update(
            status="ok",
            distance=l2_distance(w, ref, keys),
            **{k: v for k, v in reply_metrics(reply.content).items() if k.startswith("pgd-")},
        )
        return w


class PGD(NoT):
    """PGD's short form: FedAvg wrapped with :class:`PGDUnlearner`.

    Parameters
    ----------
    epochs, lr, momentum, clip, stop_accuracy, radius, random_model_fn, radius_divisor,
    radius_draws, param_keys, message_type, seed
        As :class:`PGDUnlearner`.
    **kwargs
        As :class:`strategies.NoT`, except ``negation``.
    """

    REQUIREMENTS = PGDUnlearner.requirements

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        *,
        epochs: int = 5,
        lr: float = 0.01,
        momentum: float = 0.9,
        clip: float = 1.0,
        stop_accuracy: float = 0.2,
        radius: float | None = None,
        random_model_fn: Callable[[int], dict[str, np.ndarray]] | None = None,
        radius_divisor: float = 3.0,
        radius_draws: int = 10,
        param_keys: Sequence[str] | None = None,
        message_type: str = PGD_MESSAGE_TYPE,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(
            PGDUnlearner(
                epochs=epochs,
                lr=lr,
                momentum=momentum,
                clip=clip,
                stop_accuracy=stop_accuracy,
                radius=radius,
                random_model_fn=random_model_fn,
                radius_divisor=radius_divisor,
                radius_draws=radius_draws,
                param_keys=param_keys,
                message_type=message_type,
                seed=seed,
            ),
            **kwargs,
        )


def random_state_fn(build: Callable[[], nn.Module]) -> Callable[[int], dict[str, np.ndarray]]:
    """``seed -> state dict`` of ``build()`` initialised under ``torch.manual_seed(seed)``."""

    def make(seed: int) -> dict[str, np.ndarray]:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build()
        return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}

    return make


__all__ = [
    "PGD",
    "PGDUnlearner",
    "PGD_MESSAGE_TYPE",
    "l2_distance",
    "pgd_radius",
    "project_to_ball",
    "projected_gradient_ascent",
    "random_state_fn",
]
