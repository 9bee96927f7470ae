"""Check queued unlearning targets against the connected nodes before the first round.

A target that names no connected node would otherwise be found only at its request's
round, after all training. :func:`check_targets` compares every queued request's target
values with the connected nodes' node ids, SuperNode names or node configs and raises
:class:`strategies.unlearning_request.UnlearningError` naming the bad target and the values the
connected nodes have, as soon as the federation is complete (``expected_nodes`` connected);
while nodes may still connect it only returns a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .identity import BY_NAME, BY_NODE_ID, TargetRule, _canonical
from .unlearning_request import UnlearningError, UnlearningRequest


def _sorted_values(values: Iterable[str]) -> list[str]:
    """Natural order: numbers by value, then the rest alphabetically."""
    return sorted(set(values), key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


def known_values(
    rule: TargetRule,
    node_ids: Iterable[int],
    names: Mapping[int, str],
    identities: Mapping[int, dict | None],
) -> list[str] | None:
    """The values of ``rule.by`` the connected nodes have (``None``: not known for all).

    Parameters
    ----------
    rule : TargetRule
        The request's target rule.
    node_ids : Iterable[int]
        Connected nodes.
    names : Mapping[int, str]
        Node id -> SuperNode name (``grid.get_nodes()``).
    identities : Mapping[int, dict or None]
        Node id -> node config, ``None`` (or absent) when the node did not report it.

    Returns
    -------
    list[str] or None
        ``None`` when the rule names node-config values and some node's config is unknown.
    """
    node_ids = list(node_ids)
    if rule.by == BY_NODE_ID:
        return _sorted_values(str(n) for n in node_ids)
    if rule.by == BY_NAME:
        return _sorted_values(names[n] for n in node_ids if names.get(n))
    if any(identities.get(n) is None for n in node_ids):
        return None
    return _sorted_values(
        _canonical(identities[n][rule.by]) for n in node_ids if rule.by in identities[n]
    )


def check_targets(
    requests: Iterable[UnlearningRequest],
    node_ids: Iterable[int],
    names: Mapping[int, str],
    identities: Mapping[int, dict | None],
    *,
    expected_nodes: int,
) -> list[str]:
    """Fail now if a queued request names a target no connected node has.

    Parameters
    ----------
    requests : Iterable[UnlearningRequest]
        Queued requests (``strategy.pending_requests``); non-strict ones (from files or
        clients) and ``"*"`` are skipped: they are checked, and rejected, when applied.
    node_ids : Iterable[int]
        Connected nodes.
    names, identities : Mapping
        As in :func:`known_values`.
    expected_nodes : int
        Nodes the federation has (``num-partitions``). With fewer connected a missing
        target may still connect: a warning is returned instead of an error.

    Returns
    -------
    list[str]
        Warnings (targets that could not be checked yet), for the caller to log.

    Raises
    ------
    UnlearningError
        Naming the request, the target values no connected node has, and the values the
        connected nodes have.
    """
    node_ids = list(node_ids)
    warnings = []
    for request in requests:
        rule = request.rule
        if not request.strict or rule.values == ("*",):
            continue
        known = known_values(rule, node_ids, names, identities)
        where = f"requested by {request.requested_by}" + (
            f", for round {request.at_round}" if request.at_round else ""
        )
        if known is None:
            warnings.append(
                f"unlearning target {rule.by}={','.join(rule.values)} ({where}) cannot be "
                f"checked before round 1: not every node reported its {rule.by!r} (the "
                "identity query handler is missing); it is checked when the request applies"
            )
            continue
        missing = [v for v in rule.values if v not in known]
        if not missing:
            continue
        text = (
            f"unlearning target {rule.by}={','.join(missing)} ({where}) matches none of "
            f"the {len(node_ids)} connected nodes; they have {rule.by} in "
            f"{known or '(none)'}"
        )
        # partition ids run from 0 to num-partitions - 1: others can never connect
        impossible = rule.by == "partition-id" and any(
            not v.isdigit() or int(v) >= expected_nodes for v in missing
        )
        if impossible or len(node_ids) >= expected_nodes:
            raise UnlearningError(text + "; the run stops before round 1")
        warnings.append(
            text + f" ({len(node_ids)} of {expected_nodes} nodes connected so "
            "far; it is checked again when the request applies)"
        )
    return warnings


def node_names(grid) -> dict[int, str]:
    """Node id -> SuperNode name of the connected nodes (empty where not registered)."""
    return {info.node_id: getattr(info, "name", "") or "" for info in grid.get_nodes()}
