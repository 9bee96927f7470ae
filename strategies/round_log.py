"""What the wrapper records about one round: :class:`RoundLog`.

:attr:`strategies.unlearning.Unlearning.rounds` maps each server round to one
:class:`RoundLog`: the phase, who was sampled, who replied and with which metrics, which
replies were rejected and why, the bytes of the messages and the seconds the clients and
the server spent. Read it by attribute (``strategy.rounds[3].train_replied``);
:meth:`RoundLog.to_dict` gives the JSON-ready form.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: What a round's messages are for: a strategy's train or evaluate, or an unlearning step.
KINDS = ("train", "evaluate", "unlearning")


@dataclass
class RoundLog:
    """One server round as the wrapper saw it.

    Parameters
    ----------
    phase : str
        ``"train"`` before the first request, ``"recovery"`` from it on.
    train_sampled, evaluate_sampled : list[int]
        Node ids the strategy sent train / evaluate messages to.
    train_replied, evaluate_replied, unlearning_replied : list[int]
        Node ids whose replies were kept (in node order); ``unlearning_replied``: the nodes
        that worked in an unlearning step at this round (PGD's target, FedEraser's
        calibrating clients).
    train_metrics, evaluate_metrics : dict[int, dict]
        Node id -> the metrics of its kept reply.
    rejected_train, rejected_evaluate : dict[int, str]
        Node id -> why its reply was not aggregated.
    bytes_down, bytes_up : int
        Bytes of the messages sent and of the replies kept (an unlearning step's included).
    client_seconds, server_seconds : float
        Seconds the clients report (``*-seconds`` metrics) and the server's own seconds
        (aggregation, the unlearning step less its waiting for clients).
    extra_rounds : int
        Communication rounds an unlearning step used at this round's boundary.
    unlearning_step : dict or None
        The step's record (JSON-ready; :attr:`strategies.unlearning.Unlearning.steps`).
    """

    phase: str = "train"
    train_sampled: list[int] = field(default_factory=list)
    evaluate_sampled: list[int] = field(default_factory=list)
    train_replied: list[int] = field(default_factory=list)
    evaluate_replied: list[int] = field(default_factory=list)
    unlearning_replied: list[int] = field(default_factory=list)
    train_metrics: dict[int, dict] = field(default_factory=dict)
    evaluate_metrics: dict[int, dict] = field(default_factory=dict)
    rejected_train: dict[int, str] = field(default_factory=dict)
    rejected_evaluate: dict[int, str] = field(default_factory=dict)
    bytes_down: int = 0
    bytes_up: int = 0
    client_seconds: float = 0.0
    server_seconds: float = 0.0
    extra_rounds: int = 0
    unlearning_step: dict | None = None

    def sampled(self, what: str) -> list[int]:
        """``train_sampled`` or ``evaluate_sampled``."""
        return {"train": self.train_sampled, "evaluate": self.evaluate_sampled}[what]

    def set_sampled(self, what: str, node_ids: list[int]) -> None:
        """Record the nodes a ``configure_<what>`` call sent messages to."""
        if what == "train":
            self.train_sampled = list(node_ids)
        else:
            self.evaluate_sampled = list(node_ids)

    def set_replies(self, what: str, node_ids: list[int], metrics: dict[int, dict]) -> None:
        """Record the kept replies of an ``aggregate_<what>`` call and their metrics."""
        if what == "train":
            self.train_replied, self.train_metrics = list(node_ids), dict(metrics)
        else:
            self.evaluate_replied, self.evaluate_metrics = list(node_ids), dict(metrics)

    def rejected(self, what: str) -> dict[int, str]:
        """``rejected_train`` or ``rejected_evaluate`` (the dict itself, to add to)."""
        return {"train": self.rejected_train, "evaluate": self.rejected_evaluate}[what]

    def to_dict(self) -> dict:
        """JSON-ready copy (node ids stay ints; a JSON writer makes dict keys text)."""
        return asdict(self)


__all__ = ["KINDS", "RoundLog"]
