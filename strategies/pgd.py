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
  of those arrays (:attr:`PGD.storage_bytes`; the peak is reported). Non-float tensors
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
  ``epochs = 5`` (``pgd-epochs``), ``lr = 0.01`` (``pgd-lr``), momentum 0.9, gradient
  norm clipped at 1.0, the run's batch size; projection after every step (as the
  authors' notebook does).
* **Early stop.** Ten times per epoch (every ``ceil(batches / 10)`` steps and at the end
  of the epoch) the target measures its accuracy on its own whole training split (eval
  mode); below ``stop_accuracy`` (``pgd-stop-accuracy``, default 0.2, twice chance on 10
  classes) the ascent stops. The threshold is ours. At 0.1 (chance) a model that has
  collapsed onto one class scores about that class's share of the data (10-12 % on
  digits) and may never cross it: the ascent then runs all its epochs to the ball's
  boundary (measured on digits, 3 clients: unlearned model 10 % test accuracy, 14 %
  after 2 recovery rounds; with 0.2 it stops within the first epoch at 19 % and one
  recovery round brings 92 %). Public re-implementations of the authors' notebook stop
  instead when the distance to the target's last local model exceeds a data-set specific
  constant; the accuracy rule needs no such constant and no stored client model.
* **Post-training** = not-flower's recovery: ``recovery-rounds`` FedAvg rounds without
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
from flwr.serverapp import Grid
from flwr.supercore import log
from torch import nn

from .not_strategy import array_layout, check_train_reply, reply_metrics
from .unlearning_step import StepUnlearning, float_keys, nbytes, to_numpy, to_record

#: Message type of the ascent (``@app.train("pgd")`` in the ClientApp).
PGD_MESSAGE_TYPE = "train.pgd"


# --------------------------------------------------------------------------- pure parts
def l2_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray], keys: Iterable[str]) -> float:
    """L2 norm of ``a - b`` over ``keys`` (float64 accumulation)."""
    return math.sqrt(sum(float(np.sum((a[k].astype(np.float64) - b[k].astype(np.float64)) ** 2))
                         for k in keys))


def project_to_ball(w: dict[str, np.ndarray], center: dict[str, np.ndarray], radius: float,
                    keys: Sequence[str]) -> dict[str, np.ndarray]:
    """``w`` projected onto the L2 ball of ``radius`` around ``center`` (over ``keys``)."""
    dist = l2_distance(w, center, keys)
    if dist <= radius:
        return dict(w)
    scale = radius / dist
    out = dict(w)
    for k in keys:
        out[k] = (center[k] + (w[k] - center[k]) * scale).astype(w[k].dtype)
    return out


def pgd_radius(reference: dict[str, np.ndarray], random_models: Iterable[dict[str, np.ndarray]],
               keys: Sequence[str], divisor: float = 3.0) -> float:
    """``sqrt(mean_j ||reference - random_j||^2 / divisor)`` over ``keys``."""
    squares = [l2_distance(reference, r, keys) ** 2 for r in random_models]
    if not squares:
        raise ValueError("pgd_radius needs at least one random model")
    return math.sqrt(float(np.mean(squares)) / divisor)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    was = model.training
    model.eval()
    correct = 0
    for s in range(0, len(x), batch_size):
        correct += int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
    model.train(was)
    return correct / max(len(x), 1)


def projected_gradient_ascent(
    model: nn.Module,
    reference: dict[str, torch.Tensor],
    x: np.ndarray,
    y: np.ndarray,
    *,
    radius: float,
    keys: Sequence[str] | None = None,
    epochs: int = 5,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 16,
    clip: float = 1.0,
    stop_accuracy: float = 0.2,
    seed: int = 0,
    checks_per_epoch: int = 10,
    start: dict[str, torch.Tensor] | None = None,
    device: torch.device | None = None,
    on_step: Callable[[float], None] | None = None,
) -> dict[str, float]:
    """Gradient ascent on the cross-entropy of ``(x, y)`` inside the ball around ``reference``.

    ``model`` ends holding the result (its buffers reset to ``reference``'s).

    Parameters
    ----------
    model : nn.Module
        The architecture (its weights are replaced by ``start`` or ``reference``).
    reference : dict[str, torch.Tensor]
        State dict of the ball's centre, ``w_ref``.
    x, y : np.ndarray
        The target's training data.
    radius : float
        Radius of the ball (L2 over ``keys``).
    keys : sequence of str, optional
        Parameters the ball covers; default every trainable parameter.
    epochs, lr, momentum, batch_size, clip
        Ascent settings (SGD; gradient norm clipped at ``clip``, none if <= 0).
    stop_accuracy : float
        Stop as soon as the accuracy on ``(x, y)`` is below this; it is measured
        ``checks_per_epoch`` times per epoch (every ``ceil(batches / checks_per_epoch)``
        steps, and after the last step of an epoch).
    checks_per_epoch : int (default: 10)
        How often the accuracy is measured.
    seed : int
        Seeds the shuffling.
    start : dict, optional
        Start here instead of at ``reference`` (projected first).
    device : torch.device, optional
        Where to compute.
    on_step : Callable[[float], None], optional
        Called with the distance to ``reference`` after every projected step.

    Returns
    -------
    dict[str, float]
        ``pgd-radius``, ``pgd-distance`` (final, <= radius), ``pgd-steps``,
        ``pgd-epochs-run`` (epochs started), ``pgd-stopped-early`` (0/1),
        ``pgd-train-acc-start`` (at the start point), ``pgd-train-acc-end``, ``pgd-loss-end``.
    """
    dev = device or torch.device("cpu")
    model.load_state_dict(start if start is not None else reference)
    model.to(dev).train()
    names = [n for n, _ in model.named_parameters()]
    keys = list(keys) if keys is not None else names
    params = dict(model.named_parameters())
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"projected_gradient_ascent: keys {missing[:3]} are not parameters "
                         "of the model")
    centre = {k: reference[k].detach().to(dev, torch.float32) for k in keys}

    def project() -> float:
        with torch.no_grad():
            sq = sum(float(((params[k] - centre[k]) ** 2).sum()) for k in keys)
            dist = math.sqrt(sq)
            if dist > radius:
                scale = radius / dist
                for k in keys:
                    params[k].copy_(centre[k] + (params[k] - centre[k]) * scale)
                dist = math.sqrt(sum(float(((params[k] - centre[k]) ** 2).sum()) for k in keys))
            return dist

    xt = torch.from_numpy(np.array(x, dtype=np.float32)).to(dev)
    yt = torch.from_numpy(np.array(y, dtype=np.int64)).to(dev)
    dist = project()
    acc_start = _accuracy(model, xt, yt)
    opt = torch.optim.SGD([params[n] for n in names], lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    steps, run, stopped, acc, loss_sum, count = 0, 0, False, acc_start, 0.0, 0
    batches = max(1, math.ceil(len(xt) / batch_size))
    check = max(1, math.ceil(batches / max(1, checks_per_epoch)))
    for _ in range(epochs):
        loss_sum, count = 0.0, 0
        order = torch.randperm(len(xt), generator=gen).to(dev)
        for b, s in enumerate(range(0, len(xt), batch_size)):
            idx = order[s:s + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            (-loss).backward()  # ascent
            if clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            dist = project()
            steps += 1
            loss_sum += float(loss.detach()) * len(idx)
            count += len(idx)
            if on_step is not None:
                on_step(dist)
            if (b + 1) % check == 0 or b + 1 == batches:
                acc = _accuracy(model, xt, yt)
                if acc < stop_accuracy:
                    stopped = True
                    break
        run += 1
        if stopped:
            break
    with torch.no_grad():  # buffers (BatchNorm statistics) from the reference
        for name, buf in model.named_buffers():
            if name in reference:
                buf.copy_(reference[name].to(buf.device, buf.dtype))
    return {"pgd-radius": float(radius), "pgd-distance": float(dist), "pgd-steps": steps,
            "pgd-epochs-run": run, "pgd-stopped-early": int(stopped),
            "pgd-train-acc-start": float(acc_start), "pgd-train-acc-end": float(acc),
            "pgd-loss-end": loss_sum / max(count, 1)}


# --------------------------------------------------------------------------- strategy
class PGD(StepUnlearning):
    """Unlearning by the target's projected gradient ascent, then FedAvg without it.

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
    **kwargs
        As :class:`strategies.NoT`, except ``negation``.
    """

    REQUIREMENTS = {
        "storage": "every client's latest local model, in server memory",
        "target_data": True,
        "target_participation": True,
        "server_data": False,
    }

    def __init__(self, *, epochs: int = 5, lr: float = 0.01, momentum: float = 0.9,
                 clip: float = 1.0, stop_accuracy: float = 0.2, radius: float | None = None,
                 random_model_fn: Callable[[int], dict[str, np.ndarray]] | None = None,
                 radius_divisor: float = 3.0, radius_draws: int = 10,
                 param_keys: Sequence[str] | None = None,
                 message_type: str = PGD_MESSAGE_TYPE, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if radius is None and random_model_fn is None:
            raise ValueError("PGD needs radius= or random_model_fn= (to measure the distance "
                             "of the reference model to random models)")
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
        self._latest: dict[int, tuple[float, dict[str, np.ndarray]]] = {}

    @property
    def storage_bytes(self) -> int:
        """Bytes of the local models kept (one per client)."""
        return sum(nbytes(w) for _, w in self._latest.values())

    def _filter(self, server_round: int, replies, what: str) -> list[Message]:
        kept = super()._filter(server_round, replies, what)
        if what == "train":
            for msg in kept:
                if msg.has_error():
                    continue
                record = next(iter(msg.content.array_records.values()))
                weight = float(reply_metrics(msg.content)[self.weighted_by_key])
                self._latest[msg.metadata.src_node_id] = (weight, to_numpy(record))
            self._note_storage()
        return kept

    def reference_model(self, arrays: ArrayRecord) -> tuple[dict[str, np.ndarray], str]:
        """``w_ref``: weighted average of the non-excluded clients' latest local models."""
        glob = to_numpy(arrays)
        others = [(w, m) for n, (w, m) in self._latest.items()
                  if n not in self.excluded_node_ids]
        if not others:
            return glob, "global model (no stored local model of a non-target client)"
        total = sum(w for w, _ in others)
        ref = dict(glob)
        for k in float_keys(glob):
            acc = np.zeros(glob[k].shape, dtype=np.float64)
            for w, m in others:
                acc += (w / total) * m[k].astype(np.float64)
            ref[k] = acc.astype(glob[k].dtype)
        return ref, (f"num-examples-weighted average of the latest local models of "
                     f"{len(others)} non-target client(s)")

    def unlearn(self, server_round: int, arrays: ArrayRecord, targets: list[int],
                grid: Grid) -> ArrayRecord:
        """Send ``w_ref`` to the target(s) for the ascent; return the projected result."""
        step = self._round(server_round)["unlearning_step"]
        ref, source = self.reference_model(arrays)
        keys = self.param_keys or float_keys(ref)
        if self.radius is not None:
            radius = float(self.radius)
        else:
            with torch.random.fork_rng():
                randoms = [self.random_model_fn(self.seed + j) for j in range(self.radius_draws)]
            radius = pgd_radius(ref, randoms, keys, self.radius_divisor)
        layout = array_layout(arrays)
        connected = set(grid.get_node_ids())
        current: dict[str, np.ndarray] | None = None
        details = []
        for target in targets:
            detail: dict = {"node_id": target}
            details.append(detail)
            if target not in connected:
                log(WARNING, "PGD: target node %d is not connected; it cannot run the ascent",
                    target)
                detail["status"] = "not connected"
                continue
            config = ConfigRecord({
                "server-round": server_round, "pgd-radius": radius, "pgd-keys": list(keys),
                "pgd-epochs": self.epochs, "pgd-lr": self.lr, "pgd-momentum": self.momentum,
                "pgd-clip": self.clip, "pgd-stop-accuracy": self.stop_accuracy,
                "pgd-seed": self.seed * 100_003 + server_round,
            })
            content = RecordDict({"reference": to_record(ref), "config": config})
            if current is not None:
                content["arrays"] = to_record(current)
            msg = Message(content, dst_node_id=target, message_type=self.message_type)
            replies = self.send_step(server_round, [msg], grid)
            reply = next((m for m in replies if m.metadata.src_node_id == target), None)
            if reply is None:
                log(WARNING, "PGD: target node %d did not return the ascent", target)
                detail["status"] = "no reply"
                continue
            reason = check_train_reply(reply.content, layout, self.weighted_by_key)
            if reason is not None:
                log(WARNING, "PGD: rejected the ascent of node %d: %s", target, reason)
                detail["status"] = f"rejected: {reason}"
                continue
            w = to_numpy(next(iter(reply.content.array_records.values())))
            dist = l2_distance(w, ref, keys)
            detail["projected_by_server"] = dist > radius * (1 + 1e-5) + 1e-6
            if detail["projected_by_server"]:
                log(WARNING, "PGD: node %d returned a model %.4g from w_ref (radius %.4g); "
                    "projected", target, dist, radius)
                w = project_to_ball(w, ref, radius, keys)
            current = w
            detail.update(status="ok", distance=l2_distance(w, ref, keys), **{
                k: v for k, v in reply_metrics(reply.content).items() if k.startswith("pgd-")})
        for target in targets:  # the target's local model is not kept after its removal
            self._latest.pop(target, None)
        result = current if current is not None else ref
        step.update(reference=source, radius=radius, distance=l2_distance(result, ref, keys),
                    num_keys=len(keys), targets_detail=details)
        log(INFO, "PGD: round %d: ascent by %s, radius %.4g, distance %.4g (reference: %s)",
            server_round, targets, radius, step["distance"], source)
        return to_record(result)


def random_state_fn(build: Callable[[], nn.Module]) -> Callable[[int], dict[str, np.ndarray]]:
    """``seed -> state dict`` of ``build()`` initialised under ``torch.manual_seed(seed)``."""

    def make(seed: int) -> dict[str, np.ndarray]:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build()
        return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}

    return make


__all__ = ["PGD", "PGD_MESSAGE_TYPE", "l2_distance", "pgd_radius", "project_to_ball",
           "projected_gradient_ascent", "random_state_fn"]
