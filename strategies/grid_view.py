"""A view of a Flower Grid that hides excluded nodes: how unlearning keeps targets out of sampling.

The wrapped strategy samples as it always does (``grid.get_node_ids()``, Flower's
``sample_nodes``); it is handed an :class:`ExcludingGrid`, whose node listings leave out
the excluded nodes, so no sampling code is copied. Messages pass through unchanged, except
that a message addressed to an excluded node is refused. Given the nodes' ``identities``
the view also lists nodes and returns replies in a fixed order
(:func:`strategies.replies.node_order`: by node config, not by Flower's listing or by
arrival), so that seeded sampling and aggregation give the same result in every run.
:func:`nodes_needed` says how
many nodes a strategy waits for, so that the wrapper can fail clearly instead of waiting
forever when too few non-target nodes are connected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
from flwr.app import Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from .replies import in_node_order, node_order


class ExcludingGrid(Grid):
    """``grid`` without the nodes for which ``is_excluded(node_id)`` is true.

    Parameters
    ----------
    grid : Grid
        The real grid.
    is_excluded : Callable[[int], bool]
        Asked for every node at every listing (so exclusions made later apply at once).
    identities : Mapping[int, Mapping or None] or None (default: None)
        Node id -> declared node config, read at every listing: node listings and replies
        come in :func:`strategies.replies.node_order`. ``None``: the grid's order.
    """

    def __init__(
        self,
        grid: Grid,
        is_excluded: Callable[[int], bool],
        *,
        identities: Mapping[int, Mapping | None] | None = None,
    ) -> None:
        self.grid = grid
        self.is_excluded = is_excluded
        self.identities = identities

    # --- the listings: excluded nodes left out, in node_order (else the grid's order)
    def get_node_ids(self) -> Iterable[int]:
        """Connected node ids that are not excluded."""
        ids = [n for n in self.grid.get_node_ids() if not self.is_excluded(n)]
        return ids if self.identities is None else node_order(ids, self.identities)

    def get_nodes(self) -> Iterable:
        """Connected nodes' infos, excluded nodes left out."""
        infos = {
            info.node_id: info
            for info in self.grid.get_nodes()
            if not self.is_excluded(info.node_id)
        }
        order = list(infos) if self.identities is None else node_order(infos, self.identities)
        return [infos[n] for n in order]

    def _ordered(self, replies: Iterable[Message]) -> Iterable[Message]:
        return replies if self.identities is None else in_node_order(replies, self.identities)

    # --- messages: passed through, never to an excluded node
    def _check(self, messages: Iterable[Message]) -> list[Message]:
        messages = list(messages)
        bad = sorted(
            {m.metadata.dst_node_id for m in messages if self.is_excluded(m.metadata.dst_node_id)}
        )
        if bad:
            raise ValueError(f"refusing to send to excluded node(s) {bad}: they were unlearnt")
        return messages

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push through the real grid (not to excluded nodes)."""
        return self.grid.push_messages(self._check(messages))

    def pull_messages(self, *args, **kwargs) -> Iterable[Message]:
        """Pull through the real grid (in node order), with whatever arguments it takes.

        Flower 1.42 takes ``pull_messages(message_ids)``, 1.43
        ``pull_messages(reply_to_message_ids=None, *, message_ids=None)``: the arguments
        are passed on unchanged.
        """
        return self._ordered(self.grid.pull_messages(*args, **kwargs))

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send and receive through the real grid (not to excluded nodes; replies in
        node order)."""
        return self._ordered(self.grid.send_and_receive(self._check(messages), timeout=timeout))

    def create_message(self, *args, **kwargs) -> Message:  # pragma: no cover - deprecated API
        """As the real grid's."""
        return self.grid.create_message(*args, **kwargs)

    def set_run(self, run) -> None:  # pragma: no cover - the real grid's run is used
        """Set the real grid's run."""
        self.grid.set_run(run)

    @property
    def run(self):
        """The real grid's run."""
        return self.grid.run


def is_float(dtype: str) -> bool:
    """Whether a dtype name is a floating-point dtype."""
    try:
        return np.dtype(dtype).kind == "f"
    except TypeError:
        return False


def innermost(strategy: Strategy) -> Strategy:
    """The strategy a wrapper chain ends in (``.strategy`` of DP wrappers, followed)."""
    while not hasattr(strategy, "weighted_by_key") and hasattr(strategy, "strategy"):
        strategy = strategy.strategy
    return strategy


def nodes_needed(strategy: Strategy, num_eligible: int, what: str) -> int:
    """How many nodes ``strategy`` waits for before sampling for ``what`` (FedAvg's rule).

    ``max(min_available_nodes, max(int(n * fraction), min_nodes), 1)``; 0 when the
    fraction is 0 (nothing is sampled). Strategies without these attributes need 1.
    """
    base = innermost(strategy)
    fraction = getattr(base, f"fraction_{what}", 1.0)
    if fraction == 0.0:
        return 0
    size = max(int(num_eligible * fraction), getattr(base, f"min_{what}_nodes", 1))
    return max(getattr(base, "min_available_nodes", 1), size, 1)


__all__ = ["ExcludingGrid", "innermost", "is_float", "nodes_needed"]
