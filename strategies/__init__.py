"""Flower strategies for federated unlearning: the Unlearning wrapper, NoT and its references.

``Unlearning(strategy, unlearner)`` adds unlearning to any Flower Message-API strategy;
``NoT(plan)`` is its short form (FedAvg with weight negation). The names in ``__all__``
are imported the ordinary way (``from strategies import Unlearning``); editors and type
checkers read them from the ``TYPE_CHECKING`` block below. At run time each is loaded from
its module on first use, so that ``from strategies.identity import identity_mod`` (the one
piece a ClientApp needs) loads no server code, and ``from strategies import Unlearning``
needs numpy and Flower but not torch (only :func:`plan_negation` and
:func:`forward_layers`, which trace a torch model, load torch).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .grid_view import ExcludingGrid
    from .identity import IDENTITY_QUERY, IDENTITY_RECORD_KEY, answer_identity, identity_mod
    from .negation import forward_layers, plan_negation  # needs torch
    from .negation_arrays import NegationError, NegationPlan, negate
    from .not_strategy import NoT
    from .recovery_settings import RecoverySettings
    from .stopping import RecoveryStop
    from .unlearner import Negation, NoStep, Unlearner, UnlearningStep
    from .unlearning import Unlearning
    from .unlearning_request import (
        ExternalRequest,
        UnlearningError,
        UnlearningEvent,
        UnlearningRequest,
    )

__all__ = [
    "IDENTITY_QUERY",
    "IDENTITY_RECORD_KEY",
    "ExcludingGrid",
    "ExternalRequest",
    "Negation",
    "NegationError",
    "NegationPlan",
    "NoStep",
    "NoT",
    "RecoveryStop",
    "RecoverySettings",
    "Unlearner",
    "Unlearning",
    "UnlearningError",
    "UnlearningEvent",
    "UnlearningRequest",
    "UnlearningStep",
    "answer_identity",
    "forward_layers",
    "identity_mod",
    "negate",
    "plan_negation",
]

#: Public name -> the module that defines it (the imports above, for run time; a test
#: checks that both and ``__all__`` name the same things).
_NAMES = {
    "ExcludingGrid": ".grid_view",
    "IDENTITY_QUERY": ".identity",
    "IDENTITY_RECORD_KEY": ".identity",
    "answer_identity": ".identity",
    "identity_mod": ".identity",
    "NegationError": ".negation_arrays",
    "NegationPlan": ".negation_arrays",
    "negate": ".negation_arrays",
    "forward_layers": ".negation",
    "plan_negation": ".negation",
    "NoT": ".not_strategy",
    "RecoverySettings": ".recovery_settings",
    "RecoveryStop": ".stopping",
    "Negation": ".unlearner",
    "NoStep": ".unlearner",
    "Unlearner": ".unlearner",
    "UnlearningStep": ".unlearner",
    "Unlearning": ".unlearning",
    "ExternalRequest": ".unlearning_request",
    "UnlearningError": ".unlearning_request",
    "UnlearningEvent": ".unlearning_request",
    "UnlearningRequest": ".unlearning_request",
}


if not TYPE_CHECKING:  # hidden from type checkers, which then flag a name not listed above

    def __getattr__(name: str):
        """Load a public name from its module on first use."""
        if name in _NAMES:
            value = getattr(import_module(_NAMES[name], __name__), name)
            globals()[name] = value
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_NAMES))
