"""How the Unlearning wrapper composes with the strategy it wraps (and with one around it).

* :func:`fresh_copy`: the wrapped strategy's server state (FedAdam's/FedYogi's/FedAdagrad's
  moments, FedAvgM's momentum and its own copy of the model, a DP wrapper's copy of the
  model) must not be carried across an unlearning step: at every request the wrapper goes
  on with a fresh copy of the strategy as it was built. A DP wrapper's privacy
  accountant is the exception: it is shared with the copy, so the privacy spent keeps
  adding up.
* :func:`refuse_outer_model_keepers`: a strategy around the wrapper that keeps its own
  copy of the model it sent (Flower's server-side DP wrappers clip every reply against it)
  would measure the replies against the model before the unlearning step and so undo the
  step. The wrapper refuses such a nesting before the first round and names the order
  to use: ``Unlearning(DifferentialPrivacyServerSideFixedClipping(FedAvg(...), ...), ...)``.
* :func:`dp_sample_warning`: after targets are excluded fewer clients are sampled than
  a DP wrapper's ``num_sampled_clients``, for which it calibrates its noise.
* :func:`check_by`: ``by`` is checked against the built-in kinds and the node-config keys
  the nodes report, naming the near miss (``node_id`` for ``node-id``).
"""

from __future__ import annotations

import copy
import difflib
import sys
from collections.abc import Mapping

from flwr.serverapp.strategy import Strategy

from .identity import BY_NAME, BY_NODE_ID

#: Attributes shared (not reset) between a strategy and its fresh copy.
SHARED_STATE = ("accountant",)


def chain(strategy) -> list:
    """``strategy`` and the strategies it wraps (``.strategy`` followed)."""
    out = [strategy]
    while isinstance(getattr(out[-1], "strategy", None), Strategy) and len(out) < 32:
        out.append(out[-1].strategy)
    return out


def describe(strategy) -> str:
    """Class names of a wrapper chain: ``DifferentialPrivacyServerSideFixedClipping(FedAvg)``."""
    names = [type(s).__name__ for s in chain(strategy)]
    return "(".join(names) + ")" * (len(names) - 1)


def pristine_copy(strategy: Strategy) -> Strategy:
    """A copy of ``strategy`` as built (``copy.deepcopy``), kept for :func:`fresh_copy`.

    Raises
    ------
    TypeError
        If the strategy cannot be copied (then pass ``keep_server_state=True``).
    """
    try:
        return copy.deepcopy(strategy)
    except Exception as err:  # noqa: BLE001 - any failure to copy means the same advice
        raise TypeError(
            f"Unlearning: cannot copy the wrapped strategy {describe(strategy)} to give it a "
            f"fresh server state at each request ({type(err).__name__}: {err}); pass "
            "keep_server_state=True to keep its state across requests instead"
        ) from err


def fresh_copy(template: Strategy, previous: Strategy | None) -> Strategy:
    """A fresh copy of ``template`` that shares :data:`SHARED_STATE` with ``previous``.

    Parameters
    ----------
    template : Strategy
        The strategy as built (no server state yet).
    previous : Strategy or None
        The strategy used so far; its privacy accountants (at the same place in the
        wrapper chain, same class) are carried over, so privacy accounting continues.

    Returns
    -------
    Strategy
        The copy.
    """
    fresh = copy.deepcopy(template)
    if previous is not None:
        for new, old in zip(chain(fresh), chain(previous)):
            if type(new) is not type(old):
                break
            for name in SHARED_STATE:
                if getattr(old, name, None) is not None and hasattr(new, name):
                    setattr(new, name, getattr(old, name))
    return fresh


def outer_strategies(wrapper: Strategy, depth: int = 40) -> list[Strategy]:
    """Strategies whose methods are on the call stack and that wrap ``wrapper``."""
    out: list[Strategy] = []
    frame = sys._getframe(1)  # pylint: disable=protected-access
    while frame is not None and depth > 0:
        obj = frame.f_locals.get("self")
        if (
            isinstance(obj, Strategy)
            and obj is not wrapper
            and obj not in out
            and any(inner is wrapper for inner in chain(obj)[1:])
        ):
            out.append(obj)
        frame, depth = frame.f_back, depth - 1
    return out


def refuse_outer_model_keepers(wrapper: Strategy) -> None:
    """Raise if a strategy around ``wrapper`` keeps its own copy of the model it sends.

    Raises
    ------
    TypeError
        Naming the outer strategy and the nesting to use instead.
    """
    for outer in outer_strategies(wrapper):
        if hasattr(outer, "current_arrays"):
            name = type(outer).__name__
            raise TypeError(
                f"{name} wraps the Unlearning wrapper: it measures every reply against the "
                "model it sent itself, the one from before the unlearning step, and so undoes "
                f"the step. Put it inside instead: Unlearning({name}(FedAvg(...), ...), "
                "unlearner)"
            )


def dp_sample_warning(strategy: Strategy, sampled: int, excluded: int) -> str | None:
    """The warning for a DP wrapper calibrated for more clients than are now sampled.

    Parameters
    ----------
    strategy : Strategy
        The strategy in use (its chain is searched for ``num_sampled_clients``).
    sampled : int
        Nodes sampled for training this round.
    excluded : int
        Nodes excluded by unlearning requests.

    Returns
    -------
    str or None
        The warning, or ``None`` if no DP wrapper expects another number.
    """
    for part in chain(strategy):
        expected = getattr(part, "num_sampled_clients", None)
        if isinstance(expected, int) and sampled and expected != sampled:
            return (
                f"{type(part).__name__} calibrates its noise for num_sampled_clients="
                f"{expected}, but with {excluded} node(s) excluded by unlearning this round "
                f"samples {sampled}: its noise per client is off by {expected}/{sampled}. "
                f"Give Unlearning a recovery_strategy with num_sampled_clients={sampled}"
            )
    return None


def expected_nodes(identities: Mapping[int, Mapping | None], min_available: int) -> int:
    """How many nodes the federation has, as far as the server can tell.

    Parameters
    ----------
    identities : Mapping
        Connected node id -> node config (``None``: not known).
    min_available : int
        The strategy's ``min_available_nodes``.

    Returns
    -------
    int
        The ``num-partitions`` every connected node reports (simulation, not-flower's
        deployments), else the connected count once it reaches ``min_available``, else
        ``min_available``.
    """
    try:
        reported = {int(ident["num-partitions"]) for ident in identities.values()}
    except (KeyError, TypeError, ValueError):
        reported = set()
    if len(reported) == 1:
        return max(reported.pop(), len(identities))
    return (
        max(len(identities), min_available) if len(identities) >= min_available else min_available
    )


def check_by(by: str, identities: Mapping[int, Mapping | None]) -> None:
    """Refuse a ``by`` that is a near miss of a built-in kind or of a reported key.

    Parameters
    ----------
    by : str
        ``"node-id"``, ``"supernode-name"`` or a node-config key.
    identities : Mapping
        Node id -> node config as known now (``None``: not known). Keys are checked only
        when every node's config is known.

    Raises
    ------
    ValueError
        Naming the near miss and what is allowed.
    """
    builtin = (BY_NODE_ID, BY_NAME)
    if not isinstance(by, str) or by in builtin:
        return
    norm = by.strip().lower().replace("_", "-").replace(" ", "-")
    if norm in builtin:
        raise ValueError(
            f"unlearning request: by={by!r} is not a kind of target; did you mean "
            f"{norm!r}? Allowed: {builtin[0]!r}, {builtin[1]!r} or a node-config "
            "key the nodes report (such as 'partition-id')"
        )
    known = list(identities.values())
    if not known or any(ident is None for ident in known):
        return
    keys = sorted({str(k) for ident in known for k in ident})
    if by not in keys:
        close = difflib.get_close_matches(by, keys + list(builtin), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(
            f"unlearning request: by={by!r} is no node-config key of the "
            f"connected nodes (they report {keys}){hint} Allowed: "
            f"{builtin[0]!r}, {builtin[1]!r} or one of those keys"
        )


__all__ = [
    "check_by",
    "chain",
    "describe",
    "dp_sample_warning",
    "expected_nodes",
    "fresh_copy",
    "outer_strategies",
    "pristine_copy",
    "refuse_outer_model_keepers",
]
