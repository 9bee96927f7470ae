"""Flower strategies for federated unlearning: the Unlearning wrapper, NoT and its references.

``Unlearning(strategy, unlearner)`` adds unlearning to any Flower Message-API strategy;
``NoT(plan)`` is its short form (FedAvg with weight negation). Names are loaded on first
use, so that ``from strategies.identity import identity_mod`` (the one piece a ClientApp
needs) loads no server code, and ``from strategies import Unlearning`` needs numpy and
Flower but not torch (only :func:`plan_negation` and :func:`forward_layers`, which trace a
torch model, load torch).
"""

from importlib import import_module

#: Public name -> the module that defines it.
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
    "Negation": ".unlearner",
    "NoStep": ".unlearner",
    "Unlearner": ".unlearner",
    "UnlearningStep": ".unlearner",
    "Unlearning": ".unlearning",
    "UnlearningError": ".unlearning_request",
    "UnlearningEvent": ".unlearning_request",
    "UnlearningRequest": ".unlearning_request",
}


def __getattr__(name: str):
    """Load a public name from its module on first use."""
    if name in _NAMES:
        value = getattr(import_module(_NAMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_NAMES))


__all__ = sorted(_NAMES)
