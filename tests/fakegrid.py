"""A fake Flower Grid for unit tests of strategies: real ClientApps, called in process.

Each node is a real ``flwr.clientapp.ClientApp`` with its own Context (node config) and
optional SuperNode name; ``send_and_receive`` calls the app for every message, turning an
exception into an error reply as Flower does. Every message sent is logged, so tests can
assert who was asked to do what in which round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

TaskIdentity.run_id = 1
TaskIdentity.task_id = 1
TaskIdentity.node_id = 0


@dataclass
class FakeNodeInfo:
    node_id: int
    name: str = ""


@dataclass
class FakeNode:
    app: ClientApp
    node_config: dict
    name: str = ""
    context: Context = field(init=False)

    def __post_init__(self):
        self.context = Context(
            run_id=1,
            node_id=0,
            node_config=dict(self.node_config),
            state=RecordDict(),
            run_config={},
        )


class FakeGrid(Grid):
    """In-process grid over real ClientApps."""

    def __init__(self, nodes: dict[int, FakeNode]):
        self.nodes = dict(nodes)
        self.sent: list[tuple[str, int]] = []  # (message_type, dst_node_id)
        self.rogue: dict[int, object] = {}  # node id -> callable(message_type) adding replies
        #: Reply in node-id order (as the Unlearning wrapper aggregates) instead of the
        #: order the messages were sent in.
        self.replies_in_node_order = False

    # --- unused Grid API
    def set_run(self, run):  # pragma: no cover
        pass

    @property
    def run(self):  # pragma: no cover
        return None

    def create_message(self, *a, **k):  # pragma: no cover
        raise NotImplementedError

    def push_messages(self, messages):  # pragma: no cover
        raise NotImplementedError

    def pull_messages(self, message_ids):  # pragma: no cover
        raise NotImplementedError

    # --- used
    def get_node_ids(self):
        return list(self.nodes)

    def get_nodes(self):
        return [FakeNodeInfo(n, node.name) for n, node in self.nodes.items()]

    def _call(self, node_id: int, msg: Message) -> Message:
        node = self.nodes[node_id]
        node.context.node_id = node_id
        try:
            reply = node.app(msg, node.context)
        except Exception as err:  # noqa: BLE001 - Flower turns these into error replies
            reply = Message(Error(code=2, reason=f"{type(err).__name__}: {err}"), reply_to=msg)
        reply.metadata.__dict__["_src_node_id"] = node_id
        return reply

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            dst = msg.metadata.dst_node_id
            self.sent.append((msg.metadata.message_type, dst))
            if dst in self.nodes:
                replies.append(self._call(dst, msg))
        # a node that keeps answering although nobody asked it (after its exclusion)
        for node_id in self.rogue:
            for msg in messages:
                if msg.metadata.dst_node_id != node_id and node_id in self.nodes:
                    replies.append(self._call(node_id, _readdress(msg, node_id)))
                    break
        if self.replies_in_node_order:
            replies.sort(key=lambda m: m.metadata.src_node_id)
        return replies

    def sent_to(self, node_id: int, kind: str | None = None) -> list[str]:
        return [t for t, d in self.sent if d == node_id and (kind is None or t.startswith(kind))]


def _readdress(msg: Message, node_id: int) -> Message:
    return Message(msg.content, dst_node_id=node_id, message_type=msg.metadata.message_type)
