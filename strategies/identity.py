"""Who is who: how the server learns a node's identity, and how targets are matched.

The server side of Flower knows each connected node by a random 64-bit node id and,
with SuperNode authentication, by its registered name (``grid.get_nodes()``). What a
federation usually calls "client 3" is a value of the node's *node config*
(``partition-id`` in simulation, whatever ``flower-supernode --node-config`` sets in a
deployment), and the server can only learn it from the ClientApp. not-flower offers two
ways, each an import and one line in a user's ClientApp:

* a query handler, ``from strategies import answer_identity`` and
  ``app.query("identity")(answer_identity)``: the server sends a ``query.identity``
  message and the ClientApp replies with its node config (works from before round 1);
* a client mod, ``from strategies import identity_mod`` and
  ``ClientApp(mods=[identity_mod])``: every train/evaluate reply carries a
  ``ConfigRecord`` named :data:`IDENTITY_RECORD_KEY` with the node config. (In Flower
  1.42 global mods only wrap registered handlers, so a mod alone cannot answer a
  ``query.identity`` message; with the mod the server learns identities from the
  replies of the rounds before the request, so not for a request at round 1.)

Targets named by node id or by SuperNode name need neither: a user's ClientApp works
unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

#: Message type of the identity query (``query.<name>`` is what Flower 1.42 allows).
IDENTITY_QUERY = f"{MessageType.QUERY}.identity"
#: Name of the ConfigRecord that carries a node's identity in a reply.
IDENTITY_RECORD_KEY = "not-flower.identity"
#: ``by`` values that are not node-config keys.
BY_NODE_ID = "node-id"
BY_NAME = "supernode-name"


def identity_record(context: Context) -> ConfigRecord:
    """Return the node's identity (its node config) as a ConfigRecord.

    Parameters
    ----------
    context : Context
        The ClientApp's context; ``context.node_config`` is copied.

    Returns
    -------
    ConfigRecord
        One entry per node-config key.
    """
    return ConfigRecord(dict(context.node_config))


def answer_identity(message: Message, context: Context) -> Message:
    """Answer a ``query.identity`` message with the node's node config.

    Register it in any ClientApp with ``app.query("identity")(answer_identity)``.

    Parameters
    ----------
    message : Message
        The query message.
    context : Context
        The ClientApp's context.

    Returns
    -------
    Message
        A reply whose content holds :data:`IDENTITY_RECORD_KEY`.
    """
    content = RecordDict({IDENTITY_RECORD_KEY: identity_record(context)})
    return Message(content, reply_to=message)


def identity_mod(message: Message, context: Context, call_next) -> Message:
    """Client mod that attaches the node's identity to its train/evaluate replies.

    Use it as ``ClientApp(mods=[identity_mod])``. Error replies are passed through.

    Parameters
    ----------
    message : Message
        The incoming message.
    context : Context
        The ClientApp's context.
    call_next : Callable
        The next mod or the handler.

    Returns
    -------
    Message
        The handler's reply, with the identity record added.
    """
    reply = call_next(message, context)
    kind = message.metadata.message_type.split(".", 1)[0]
    if kind in (MessageType.TRAIN, MessageType.EVALUATE) and not reply.has_error():
        reply.content[IDENTITY_RECORD_KEY] = identity_record(context)
    return reply


def read_identity(content: RecordDict) -> dict | None:
    """Return the identity carried by a reply's content, or ``None``.

    Parameters
    ----------
    content : RecordDict
        Content of a reply message.

    Returns
    -------
    dict or None
        The node config the ClientApp reported.
    """
    if IDENTITY_RECORD_KEY not in content:
        return None
    record = content[IDENTITY_RECORD_KEY]
    if not isinstance(record, ConfigRecord):
        return None
    return dict(record)


@dataclass(frozen=True)
class TargetRule:
    """Which nodes a request names.

    Parameters
    ----------
    by : str
        ``"node-id"``, ``"supernode-name"`` or a node-config key such as
        ``"partition-id"``.
    values : tuple[str, ...]
        The target values, compared as strings (``3`` matches ``"3"``).
    """

    by: str
    values: tuple[str, ...]

    @property
    def needs_identity(self) -> bool:
        """Whether matching needs the nodes' node configs."""
        return self.by not in (BY_NODE_ID, BY_NAME)

    def match(self, node_id: int, name: str | None, identity: Mapping | None) -> str | None:
        """Return the matched target value for a node, or ``None``.

        Parameters
        ----------
        node_id : int
            The node's id.
        name : str or None
            The node's SuperNode name (``""``/``None`` when not registered).
        identity : Mapping or None
            The node's node config, if known.

        Returns
        -------
        str or None
            The value of :attr:`values` that this node carries.
        """
        if self.by == BY_NODE_ID:
            value = str(node_id)
        elif self.by == BY_NAME:
            value = name or None
        else:
            value = None if identity is None or self.by not in identity else identity[self.by]
        if value is None:
            return None
        value = _canonical(value)
        return value if value in self.values else None


def identity_hint(replied: int, silent: int) -> str:
    """What a ClientApp needs so that the server learns the identities it is missing.

    Parameters
    ----------
    replied : int
        Nodes of unknown identity that have sent train/evaluate replies (none carried the
        identity mod's record) and did not answer ``query.identity``.
    silent : int
        Nodes of unknown identity that have not replied to anything yet (for example a
        request at round 1) and did not answer ``query.identity``: the identity mod cannot
        have reported them, only the query handler can.

    Returns
    -------
    str
        The advice, naming both lines to add (import and registration).
    """
    handler = (
        "`from strategies import answer_identity` and `app.query('identity')(answer_identity)`"
    )
    parts = []
    if silent:
        parts.append(
            f"{silent} node(s) did not answer the identity query and have not replied yet: the "
            "identity mod (ClientApp(mods=[identity_mod])) only adds the identity to "
            "train/evaluate replies, so before a node's first reply (a request at round 1) "
            f"only the query handler can tell. Add to the ClientApp {handler}, or apply the "
            "request after round 1"
        )
    if replied:
        parts.append(
            f"{replied} node(s) replied without an identity and did not answer the identity "
            f"query: add the query handler to the ClientApp ({handler}) or the identity mod "
            "(`from strategies import identity_mod` and `ClientApp(mods=[identity_mod])`)"
        )
    return "; ".join(parts) + (
        "; or name targets by 'node-id' or 'supernode-name'" if parts else ""
    )


def _canonical(value) -> str:
    """Canonical string of a target value (``3``, ``3.0`` and ``"3"`` agree)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def make_rule(targets: Iterable | str | int, by: str) -> TargetRule:
    """Build a :class:`TargetRule` from user input.

    Parameters
    ----------
    targets : iterable, str or int
        One target or several; a string may be a comma-separated list.
    by : str
        See :class:`TargetRule`.

    Returns
    -------
    TargetRule

    Raises
    ------
    ValueError
        If no target is given, ``by`` is empty, or a node id is not an integer.
    """
    if not isinstance(by, str) or not by.strip():
        raise ValueError(
            f"unlearning request: 'by' must be '{BY_NODE_ID}', '{BY_NAME}' or a "
            f"node-config key such as 'partition-id', got {by!r}"
        )
    by = by.strip()
    if isinstance(targets, (str, int)):
        targets = [targets]
    values: list[str] = []
    for item in targets:
        parts = item.split(",") if isinstance(item, str) else [item]
        for part in parts:
            value = _canonical(part)
            if value == "":
                continue
            if by == BY_NODE_ID and not value.isdigit():
                raise ValueError(
                    f"unlearning request: node ids are non-negative integers, got {part!r}"
                )
            if value not in values:
                values.append(value)
    if not values:
        raise ValueError(
            f"unlearning request names no target (got {targets!r}); give at least one "
            f"value of {by!r}"
        )
    return TargetRule(by=by, values=tuple(values))
