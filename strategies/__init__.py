"""Flower strategies for federated unlearning: NoT (weight negation) and its references."""

from .identity import IDENTITY_QUERY, IDENTITY_RECORD_KEY, answer_identity, identity_mod
from .negation import NegationError, NegationPlan, forward_layers, negate, plan_negation
from .not_strategy import NoT, UnlearningError, UnlearningEvent, UnlearningRequest

__all__ = [
    "IDENTITY_QUERY",
    "IDENTITY_RECORD_KEY",
    "NegationError",
    "NegationPlan",
    "NoT",
    "UnlearningError",
    "UnlearningEvent",
    "UnlearningRequest",
    "answer_identity",
    "forward_layers",
    "identity_mod",
    "negate",
    "plan_negation",
]
