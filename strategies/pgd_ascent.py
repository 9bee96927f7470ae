"""PGD's client half: projected gradient ascent inside an L2 ball (torch; no server code).

The target runs :func:`projected_gradient_ascent` when the server's ``train.pgd`` message
arrives (:mod:`not_flower.app.baseline_client`); the server side of PGD
(:mod:`strategies.pgd`) uses the same :func:`l2_distance` and :func:`project_to_ball` to
check the reply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn


def l2_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray], keys: Iterable[str]) -> float:
    """L2 norm of ``a - b`` over ``keys`` (float64 accumulation)."""
    return math.sqrt(
        sum(float(np.sum((a[k].astype(np.float64) - b[k].astype(np.float64)) ** 2)) for k in keys)
    )


def project_to_ball(
    w: dict[str, np.ndarray], center: dict[str, np.ndarray], radius: float, keys: Sequence[str]
) -> dict[str, np.ndarray]:
    """``w`` projected onto the L2 ball of ``radius`` around ``center`` (over ``keys``)."""
    dist = l2_distance(w, center, keys)
    if dist <= radius:
        return dict(w)
    scale = radius / dist
    out = dict(w)
    for k in keys:
        out[k] = (center[k] + (w[k] - center[k]) * scale).astype(w[k].dtype)
    return out


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    was = model.training
    model.eval()
    correct = 0
    for s in range(0, len(x), batch_size):
        correct += int((model(x[s : s + batch_size]).argmax(1) == y[s : s + batch_size]).sum())
    model.train(was)
    return correct / max(len(x), 1)


def _ball_parameters(model: nn.Module, keys: Sequence[str] | None) -> tuple:
    """``(parameter names, the ball's keys, name -> parameter)``; refuses unknown keys."""
    names = [n for n, _ in model.named_parameters()]
    keys = list(keys) if keys is not None else names
    params = dict(model.named_parameters())
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(
            f"projected_gradient_ascent: keys {missing[:3]} are not parameters of the model"
        )
    return names, keys, params


@torch.no_grad()
def _buffers_from(model: nn.Module, reference: dict[str, torch.Tensor]) -> None:
    """Copy the buffers (BatchNorm statistics) of ``reference`` into ``model``."""
    for name, buf in model.named_buffers():
        if name in reference:
            buf.copy_(reference[name].to(buf.device, buf.dtype))


def _projector(
    params: dict, centre: dict, keys: Sequence[str], radius: float
) -> Callable[[], float]:
    """A function that projects ``params`` onto the ball and returns the distance."""

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

    return project


# pylint: disable=too-many-arguments,too-many-locals
def _ascend(
    model: nn.Module,
    opt,
    project: Callable[[], float],
    xt: torch.Tensor,
    yt: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    clip: float,
    stop_accuracy: float,
    seed: int,
    checks_per_epoch: int,
    on_step: Callable[[float], None] | None,
    start: tuple[float, float],
) -> tuple:
    """The ascent's epochs; returns ``(steps, epochs run, stopped, accuracy, loss sum,
    count, distance)``."""
    dev = xt.device
    dist, acc = start
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    steps, run, stopped, loss_sum, count = 0, 0, False, 0.0, 0
    batches = max(1, math.ceil(len(xt) / batch_size))
    check = max(1, math.ceil(batches / max(1, checks_per_epoch)))
    for _ in range(epochs):
        loss_sum, count = 0.0, 0
        order = torch.randperm(len(xt), generator=gen).to(dev)
        for b, s in enumerate(range(0, len(xt), batch_size)):
            idx = order[s : s + batch_size]
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
    return steps, run, stopped, acc, loss_sum, count, dist


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
    names, keys, params = _ball_parameters(model, keys)
    centre = {k: reference[k].detach().to(dev, torch.float32) for k in keys}
    project = _projector(params, centre, keys, radius)
    xt = torch.from_numpy(np.array(x, dtype=np.float32)).to(dev)
    yt = torch.from_numpy(np.array(y, dtype=np.int64)).to(dev)
    dist = project()
    acc_start = _accuracy(model, xt, yt)
    opt = torch.optim.SGD([params[n] for n in names], lr=lr, momentum=momentum)
    steps, run, stopped, acc, loss_sum, count, dist = _ascend(
        model,
        opt,
        project,
        xt,
        yt,
        epochs=epochs,
        batch_size=batch_size,
        clip=clip,
        stop_accuracy=stop_accuracy,
        seed=seed,
        checks_per_epoch=checks_per_epoch,
        on_step=on_step,
        start=(dist, acc_start),
    )
    _buffers_from(model, reference)  # BatchNorm statistics from the reference
    return {
        "pgd-radius": float(radius),
        "pgd-distance": float(dist),
        "pgd-steps": steps,
        "pgd-epochs-run": run,
        "pgd-stopped-early": int(stopped),
        "pgd-train-acc-start": float(acc_start),
        "pgd-train-acc-end": float(acc),
        "pgd-loss-end": loss_sum / max(count, 1),
    }


__all__ = ["l2_distance", "project_to_ball", "projected_gradient_ascent"]
