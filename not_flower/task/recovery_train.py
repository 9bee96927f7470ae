"""Client side of the recovery schedule: train only some tensors, distil from a teacher.

The server's :class:`strategies.recovery_schedule.RecoverySchedule` names, in the train
config of a recovery round, the tensors to train (``train-keys``, layer-wise recovery)
and the distillation weight and temperature (``distill-weight``,
``distill-temperature``), and sends the teacher model as the message's ``teacher``
ArrayRecord. :func:`recovery_training` reads them into a :class:`RecoveryTraining`, which
:func:`not_flower.task.training.train` uses: the optimizer gets only the trained parameters (the
others are frozen, ``requires_grad=False``, for the round), and the loss gains
``distill-weight x T^2 x KL(teacher || student)`` on softened outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from flwr.app import ArrayRecord, RecordDict
from torch import nn

#: Config and record names the server uses (strategies.recovery_schedule's).
TRAIN_KEYS = "train-keys"
TEACHER_KEY = "teacher"


@dataclass
class RecoveryTraining:
    """How a recovery round trains, beyond plain SGD on the labels.

    Parameters
    ----------
    train_keys : tuple of str or None
        state_dict keys to train and send back; ``None``: all of them.
    teacher : nn.Module or None
        The distillation teacher (evaluated in eval mode, without gradients).
    distill_weight : float
        w of the distillation term (0: none).
    temperature : float
        T of the softened outputs.
    """

    train_keys: tuple[str, ...] | None = None
    teacher: nn.Module | None = None
    distill_weight: float = 0.0
    temperature: float = 2.0

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the optimizer gets (all, or those of ``train_keys``)."""
        if self.train_keys is None:
            return list(model.parameters())
        params = [p for name, p in model.named_parameters() if name in self.train_keys]
        if not params:
            raise ValueError(f"train-keys {list(self.train_keys)} name no trainable parameter")
        return params

    @contextmanager
    def frozen(self, model: nn.Module) -> Iterator[None]:
        """Within: parameters outside ``train_keys`` have ``requires_grad=False``."""
        if self.train_keys is None:
            yield
            return
        frozen = [
            p
            for name, p in model.named_parameters()
            if name not in self.train_keys and p.requires_grad
        ]
        for p in frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def extra_loss(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        """``w T^2 KL(softmax(teacher/T) || softmax(student/T))``, batch mean; ``None``
        without distillation."""
        if self.teacher is None or self.distill_weight <= 0:
            return None
        with torch.no_grad():
            target = torch.log_softmax(self.teacher(x) / self.temperature, dim=1)
        student = torch.log_softmax(logits / self.temperature, dim=1)
        kl = nn.functional.kl_div(student, target, reduction="batchmean", log_target=True)
        return self.distill_weight * self.temperature**2 * kl

    def reply_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors to send back: the whole state_dict, or the ``train_keys``."""
        state = model.state_dict()
        if self.train_keys is None:
            return state
        return {k: state[k] for k in self.train_keys}


def recovery_training(
    content: RecordDict, config, teacher_fn: Callable[[], nn.Module], state_keys
) -> RecoveryTraining | None:
    """The message's recovery settings, or ``None`` for a plain training round.

    Parameters
    ----------
    content : RecordDict
        The train message's content (``teacher`` ArrayRecord, if any).
    config : Mapping
        Its train config.
    teacher_fn : Callable[[], nn.Module]
        Returns a model of the run's architecture to load the teacher into (called only
        when the message carries one).
    state_keys : Iterable[str]
        The model's state_dict keys (``train-keys`` must be among them).

    Returns
    -------
    RecoveryTraining or None

    Raises
    ------
    ValueError
        For ``train-keys`` the model does not have, or distillation without a teacher.
    """
    keys = tuple(str(k) for k in (config.get(TRAIN_KEYS, []) or []))
    weight = float(config.get("distill-weight", 0.0))
    if not keys and weight <= 0:
        return None
    unknown = sorted(set(keys) - set(state_keys))
    if unknown:
        raise ValueError(f"train-keys {unknown} are not tensors of the model")
    record = content.get(TEACHER_KEY) if weight > 0 else None
    if weight > 0 and not isinstance(record, ArrayRecord):
        raise ValueError("distill-weight > 0 but the message carries no 'teacher' ArrayRecord")
    teacher = None
    if record is not None:
        teacher = teacher_fn()
        teacher.load_state_dict(record.to_torch_state_dict())
        teacher.eval()
    return RecoveryTraining(
        train_keys=keys or None,
        teacher=teacher,
        distill_weight=weight,
        temperature=float(config.get("distill-temperature", 2.0)),
    )


__all__ = ["RecoveryTraining", "TEACHER_KEY", "TRAIN_KEYS", "recovery_training"]
