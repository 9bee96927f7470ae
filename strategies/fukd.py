"""FUKD: subtract the target's accumulated updates, then distil on server data (Wu et al. 2022).

C. Wu, S. Zhu, P. Mitra, "Federated Unlearning with Knowledge Distillation",
arXiv 2201.09441 (2022).

What the paper does
-------------------
* **During training** the server keeps the clients' historical updates.
* **On a request** it removes the target's contribution by subtracting all of the
  target's historical updates from the final global model; the result is a "skewed"
  model (the other clients' later updates were computed on top of the target's, so
  the subtraction is not exact and accuracy drops).
* **Recovery without clients**: knowledge distillation on the server. The original
  global model is the teacher, the skewed model the student, on *unlabelled* data the
  server holds; the target's knowledge is not restored much because the server data is
  not the target's. No client takes part.

Choices where the paper leaves one open (ours)
----------------------------------------------
* **What is subtracted.** Exactly the target's share of every FedAvg aggregate it took
  part in: ``sum_t p_i^t (w_i^t - w^t)`` with ``p_i^t = n_i / sum_k n_k`` the FedAvg weight
  of that round (``num-examples``), for floating-point tensors.
* **Storage.** Only that sum is needed, so the server keeps one running sum per client
  (any client may ask), in memory, not the per-round history: ``N`` models instead of
  ``T x N``. :attr:`FUKDUnlearner.storage_bytes` measures those arrays; the peak is reported.
  After unlearning the target's sum is deleted.
* **Server data.** not-flower sets aside ``fukd.server-data-fraction`` of the training set
  (stratified, seeded; :func:`not_flower.task.training.server_indices`) that no client ever
  holds; the server uses the images only, never the labels. The clients partition the
  rest, for *every* method of a comparison (the comparison command applies the same
  fraction to all methods so that the clients hold the same data).
* **Distillation.** ``KL(softmax(teacher / T) || softmax(student / T)) x T^2`` with
  ``T = 2`` (``fukd.temperature``), SGD with the run's ``lr``, momentum and batch size,
  ``5`` epochs (``fukd.epochs``) over the server data, student in train mode, teacher
  (the global model at the request) in eval mode. The distilled model is the unlearned
  model (FUKD at 0 recovery rounds); the app's ``recovery.rounds`` of FedAvg then follow
  as for every method.
* Non-float tensors (BatchNorm's ``num_batches_tracked``) are not subtracted.

Requirements: storage (one accumulated update per client), no target data, no target
participation, server-side unlabelled data.
"""

from __future__ import annotations

from logging import INFO

import numpy as np
import torch
from flwr.app import ArrayRecord, Message
from flwr.supercore import log
from torch import nn

from .not_strategy import NoT
from .replies import reply_metrics
from .unlearner import CLIENT_ONLY, Requirements, UnlearningStep
from .unlearning_step import float_keys, nbytes, to_numpy, to_record


def distill(
    student: nn.Module,
    teacher: nn.Module,
    x: np.ndarray,
    *,
    epochs: int = 5,
    temperature: float = 2.0,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Train ``student`` in place to match ``teacher``'s softened outputs on ``x``.

    Returns
    -------
    dict[str, float]
        ``distill-loss`` (mean KL x T^2 over the last epoch) and ``distill-steps``.
    """
    dev = device or torch.device("cpu")
    student.to(dev).train()
    teacher.to(dev).eval()
    xt = torch.from_numpy(np.array(x, dtype=np.float32)).to(dev)
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    t = float(temperature)
    steps, total, count = 0, 0.0, 0
    for _ in range(epochs):
        total, count = 0.0, 0
        order = torch.randperm(len(xt), generator=gen).to(dev)
        for s in range(0, len(xt), batch_size):
            xb = xt[order[s : s + batch_size]]
            with torch.no_grad():
                soft = torch.softmax(teacher(xb) / t, dim=1)
            log_p = torch.log_softmax(student(xb) / t, dim=1)
            loss = nn.functional.kl_div(log_p, soft, reduction="batchmean") * t * t
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            total += float(loss.detach()) * len(xb)
            count += len(xb)
    return {"distill-loss": total / max(count, 1), "distill-steps": steps}


class FUKDUnlearner:
    """FUKD as an unlearner: keeps every client's accumulated weighted update; at a request
    subtracts the target's, then distils on server data (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        A model of the federation's architecture (the student; a copy is the teacher).
    server_x : np.ndarray
        The server's unlabelled inputs.
    epochs : int (default: 5)
        Distillation epochs.
    temperature : float (default: 2.0)
        Distillation temperature.
    lr, momentum : float
        SGD settings of the distillation.
    batch_size : int (default: 16)
        Distillation mini-batch size.
    seed : int (default: 0)
        Seeds the shuffling.
    device : torch.device or None
        Where to distil (default CPU).
    """

    name = "FUKD"
    requirements = Requirements(
        storage="every client's accumulated weighted update, in server memory",
        target_data=False,
        target_participation=False,
        server_data=True,
    )
    kinds = CLIENT_ONLY
    records_step = True
    layers: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        *,
        model: nn.Module,
        server_x: np.ndarray,
        epochs: int = 5,
        temperature: float = 2.0,
        lr: float = 0.01,
        momentum: float = 0.9,
        batch_size: int = 16,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        if len(server_x) == 0:
            raise ValueError("FUKD needs server-side data (server_x is empty)")
        if epochs < 1 or temperature <= 0 or lr <= 0:
            raise ValueError("FUKD needs epochs >= 1, temperature > 0 and lr > 0")
        self.model = model
        self.server_x = server_x
        self.epochs, self.temperature, self.lr, self.momentum = epochs, temperature, lr, momentum
        self.batch_size, self.seed, self.device = batch_size, seed, device
        #: node id -> sum over rounds of p_k^t (w_k^t - w^t)
        self.accumulated: dict[int, dict[str, np.ndarray]] = {}

    @property
    def storage_bytes(self) -> int:
        """Bytes of the accumulated updates kept (one per client)."""
        return sum(nbytes(a) for a in self.accumulated.values())

    def observe_train(
        self, server_round: int, sent: ArrayRecord, replies: list[Message], weighted_by_key: str
    ) -> None:
        """Add each reply's FedAvg-weighted update (against the model sent) to its sum."""
        del server_round
        glob = to_numpy(sent)
        weights = {
            m.metadata.src_node_id: float(reply_metrics(m.content)[weighted_by_key])
            for m in replies
        }
        total = sum(weights.values())
        keys = float_keys(glob)
        for msg in replies:
            node = msg.metadata.src_node_id
            local = to_numpy(next(iter(msg.content.array_records.values())))
            acc = self.accumulated.setdefault(node, {k: np.zeros_like(glob[k]) for k in keys})
            p = weights[node] / total
            for k in keys:
                acc[k] += (p * (local[k].astype(np.float64) - glob[k])).astype(acc[k].dtype)

    def unlearn(self, step: UnlearningStep) -> ArrayRecord:
        """Skewed model = global - targets' sums; then distil from the global model."""
        glob = to_numpy(step.arrays)
        skewed = dict(glob)
        subtracted = []
        for t in step.targets:
            acc = self.accumulated.pop(t, None)
            if acc is None:
                continue
            subtracted.append(t)
            for k, v in acc.items():
                skewed[k] = (skewed[k] - v).astype(glob[k].dtype)
        teacher = _copy_model(self.model)
        teacher.load_state_dict(step.arrays.to_torch_state_dict())
        student = self.model
        student.load_state_dict(to_record(skewed).to_torch_state_dict())
        stats = distill(
            student,
            teacher,
            self.server_x,
            epochs=self.epochs,
            temperature=self.temperature,
            lr=self.lr,
            momentum=self.momentum,
            batch_size=self.batch_size,
            seed=self.seed * 100_003 + step.server_round,
            device=self.device,
        )
        state = {k: v.detach().cpu().numpy() for k, v in student.state_dict().items()}
        out = {k: state[k].astype(glob[k].dtype) for k in glob}
        step.record.update(subtracted=subtracted, server_samples=int(len(self.server_x)), **stats)
        log(
            INFO,
            "FUKD: round %d: subtracted the accumulated updates of %s, distilled %d "
            "epochs on %d server samples (KL %.4f)",
            step.server_round,
            subtracted,
            self.epochs,
            len(self.server_x),
            stats["distill-loss"],
        )
        return to_record(out)


class FUKD(NoT):
    """FUKD's short form: FedAvg wrapped with :class:`FUKDUnlearner`.

    Parameters
    ----------
    model, server_x, epochs, temperature, lr, momentum, batch_size, seed, device
        As :class:`FUKDUnlearner`.
    **kwargs
        As :class:`strategies.NoT`, except ``negation``.
    """

    REQUIREMENTS = FUKDUnlearner.requirements

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        *,
        model: nn.Module,
        server_x: np.ndarray,
        epochs: int = 5,
        temperature: float = 2.0,
        lr: float = 0.01,
        momentum: float = 0.9,
        batch_size: int = 16,
        seed: int = 0,
        device: torch.device | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            FUKDUnlearner(
                model=model,
                server_x=server_x,
                epochs=epochs,
                temperature=temperature,
                lr=lr,
                momentum=momentum,
                batch_size=batch_size,
                seed=seed,
                device=device,
            ),
            **kwargs,
        )

    @property
    def accumulated(self) -> dict[int, dict[str, np.ndarray]]:
        """The unlearner's accumulated updates (node id -> sum)."""
        return self.unlearner.accumulated


def _copy_model(model: nn.Module) -> nn.Module:
    import copy  # pylint: disable=import-outside-toplevel

    return copy.deepcopy(model)


__all__ = ["FUKD", "FUKDUnlearner", "distill"]
