"""Who the unlearning targets are: identities, target rules, exclusions, partial-forgetting specs.

:class:`TargetBook` is the bookkeeping :class:`strategies.unlearning.Unlearning` keeps
about nodes: what each node said it is (``query.identity`` answers or the identity mod's
record on its replies), the target rules of applied requests, the nodes excluded so far,
and the classes/samples each node must no longer train on. It resolves a request's
targets to connected nodes and explains, naming the values the nodes have, a target
that matches none.
"""

from __future__ import annotations

from logging import INFO, WARNING

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore import log

from .identity import BY_NAME, BY_NODE_ID, IDENTITY_QUERY, TargetRule, identity_hint, read_identity
from .unlearning_request import UnlearningError, UnlearningRequest


class TargetBook:
    """What the server knows about nodes as unlearning targets.

    Parameters
    ----------
    identity_timeout : float
        Seconds to wait for ``query.identity`` replies.
    tag : str
        Prefix of log lines (the method's name).
    """

    def __init__(self, identity_timeout: float = 60.0, tag: str = "unlearning") -> None:
        self.identity_timeout = identity_timeout
        self.tag = tag
        #: Target rules of the requests applied so far.
        self.rules: list[TargetRule] = []
        #: Node id -> node config (``None``: asked, no answer).
        self.identities: dict[int, dict | None] = {}
        #: Nodes already sent a ``query.identity``.
        self.asked: set[int] = set()
        #: Nodes that sent a train/evaluate reply.
        self.replied: set[int] = set()
        #: Nodes never sampled again.
        self.excluded: set[int] = set()
        #: Class-/instance-wise forgetting: node id (or ``"*"``) -> {"classes", "samples"}.
        self.forget: dict[int | str, dict[str, set[int]]] = {}

    def note_reply(self, node_id: int, content: RecordDict) -> None:
        """Learn from a reply: its sender replied, its identity (if it carries one), and
        whether that identity makes it a target of a rule already applied."""
        self.replied.add(node_id)
        identity = read_identity(content)
        if identity is not None:
            self.identities[node_id] = identity
        if (
            self.rules
            and node_id not in self.excluded
            and self.is_target(node_id, None, self.identities.get(node_id))
        ):
            self.excluded.add(node_id)

    def forget_spec_for(self, node_id: int) -> dict[str, list[int]]:
        """Classes and sample ids node ``node_id`` must not train on (may be empty)."""
        classes, samples = set(), set()
        for key in ("*", node_id):
            if key in self.forget:
                classes |= self.forget[key]["classes"]
                samples |= self.forget[key]["samples"]
        return {"classes": sorted(classes), "samples": sorted(samples)}

    def is_target(self, node_id: int, name: str | None, identity: dict | None) -> bool:
        return any(rule.match(node_id, name, identity) for rule in self.rules)

    def query_identities(self, grid: Grid, node_ids: list[int]) -> None:
        """Ask nodes whose identity is unknown for their node config."""
        unknown = [n for n in node_ids if self.identities.get(n) is None]
        if not unknown:
            return
        self.asked.update(unknown)
        messages = [
            Message(RecordDict(), dst_node_id=n, message_type=IDENTITY_QUERY) for n in unknown
        ]
        for msg in grid.send_and_receive(messages, timeout=self.identity_timeout):
            if msg.has_error():
                log(
                    WARNING,
                    "%s: node %d did not answer query.identity (%s)",
                    self.tag,
                    msg.metadata.src_node_id,
                    msg.error.reason,
                )
                self.identities.setdefault(msg.metadata.src_node_id, None)
                continue
            self.identities[msg.metadata.src_node_id] = read_identity(msg.content)

    @staticmethod
    def names(grid: Grid) -> dict[int, str]:
        return {info.node_id: getattr(info, "name", "") for info in grid.get_nodes()}

    def update_exclusions(self, grid: Grid, node_ids: list[int]) -> None:
        """Exclude connected nodes that match any applied request (new nodes too)."""
        if any(rule.needs_identity for rule in self.rules):
            self.query_identities(
                grid, [n for n in node_ids if n not in self.excluded and n not in self.asked]
            )
        names = self.names(grid) if any(r.by == BY_NAME for r in self.rules) else {}
        for n in node_ids:
            if n not in self.excluded and self.is_target(n, names.get(n), self.identities.get(n)):
                log(INFO, "%s: node %d matches an unlearning request; excluded", self.tag, n)
                self.excluded.add(n)

    def resolve(
        self, rule: TargetRule, node_ids: list[int], names: dict[int, str]
    ) -> dict[int, dict]:
        """Connected nodes a rule names; :class:`UnlearningError` if a value matches none."""
        if rule.values == ("*",):
            return {
                n: {
                    "node_id": n,
                    "name": names.get(n, ""),
                    "by": "*",
                    "value": "*",
                    "identity": self.identities.get(n),
                }
                for n in node_ids
                if n not in self.excluded
            }
        hits = {}
        for n in node_ids:
            value = rule.match(n, names.get(n), self.identities.get(n))
            if value is not None:
                hits[n] = {
                    "node_id": n,
                    "name": names.get(n, ""),
                    "by": rule.by,
                    "value": value,
                    "identity": self.identities.get(n),
                }
        missing = [v for v in rule.values if v not in {h["value"] for h in hits.values()}]
        if missing:
            raise UnlearningError(self.no_match_message(rule, missing, node_ids, names))
        return hits

    def accept(
        self, requests: list[UnlearningRequest], grid: Grid
    ) -> tuple[dict[int, dict], list[tuple[UnlearningRequest, dict[int, dict]]]]:
        """Resolve the due requests; returns the nodes to exclude and the accepted requests
        with their targets (a non-strict request that cannot be applied is rejected)."""
        node_ids = list(grid.get_node_ids())
        names = self.names(grid)
        if any(r.rule.needs_identity for r in requests):
            self.query_identities(grid, node_ids)
        matched: dict[int, dict] = {}
        accepted = []
        for request in requests:
            try:
                hits = self.resolve(request.rule, node_ids, names)
                if request.kind == "client":
                    hits = self.new_targets(request, hits, matched, names)
                    if not hits:
                        continue
                remaining = [
                    n
                    for n in node_ids
                    if n not in matched and n not in hits and n not in self.excluded
                ]
                if request.kind == "client" and not remaining:
                    raise UnlearningError(
                        f"unlearning request would exclude every connected node "
                        f"({len(node_ids)} connected, targets {sorted({**matched, **hits})}): "
                        "at least one non-target node is needed to recover"
                    )
            except UnlearningError as err:
                if request.strict:
                    raise
                log(
                    WARNING,
                    "%s: rejected unlearning request from %s (%s=%s): %s",
                    self.tag,
                    request.requested_by,
                    request.rule.by,
                    ",".join(request.rule.values),
                    err,
                )
                request.outcome.settle("failed", reason=str(err))
                if request.on_settled is not None:
                    request.on_settled(request, False, str(err))
                continue
            if request.kind == "client":
                matched.update(hits)
            else:
                for key in ["*"] if request.rule.values == ("*",) else hits:
                    entry = self.forget.setdefault(key, {"classes": set(), "samples": set()})
                    entry["classes"].update(request.classes)
                    entry["samples"].update(request.samples)
            accepted.append((request, hits))
        return matched, accepted

    def new_targets(
        self,
        request: UnlearningRequest,
        hits: dict[int, dict],
        matched: dict[int, dict],
        names: dict[int, str],
    ) -> dict[int, dict]:
        """The targets of a client request not forgotten yet, nor by an earlier request at
        this boundary; none: the request is ignored (with a warning), or refused
        (:class:`UnlearningError`) if it is strict and its clients are already forgotten."""
        forgotten = sorted(
            n
            for n in hits
            if n in self.excluded or self.is_target(n, names.get(n), self.identities.get(n))
        )
        twice = sorted(n for n in hits if n in matched and n not in forgotten)
        new = {n: h for n, h in hits.items() if n not in forgotten and n not in twice}
        what = f"{request.rule.by}={','.join(request.rule.values)}"
        if new and (forgotten or twice):
            log(
                WARNING,
                "%s: unlearning request %s: node(s) %s already forgotten or named by "
                "another request at this boundary; only %s are new",
                self.tag,
                what,
                forgotten + twice,
                sorted(new),
            )
        if new:
            return new
        if forgotten:
            reason = (
                f"{what} is already forgotten (node(s) {forgotten} were unlearnt by an "
                "earlier request): nothing to do, the model is not changed again"
            )
            if request.strict:
                raise UnlearningError(reason)
        else:
            reason = (
                f"another request at this boundary names the same client(s) {what} "
                f"(node(s) {twice}): applied once"
            )
        log(
            WARNING,
            "%s: ignored unlearning request from %s: %s",
            self.tag,
            request.requested_by,
            reason,
        )
        request.outcome.settle("ignored", reason=reason)
        if request.on_settled is not None:
            request.on_settled(request, False, reason)
        return {}

    def no_match_message(
        self, rule: TargetRule, missing: list[str], node_ids: list[int], names: dict[int, str]
    ) -> str:
        if rule.by == BY_NODE_ID:
            known = [str(n) for n in node_ids]
        elif rule.by == BY_NAME:
            known = [names[n] for n in node_ids if names.get(n)]
        else:
            known = [
                str(ident[rule.by])
                for ident in (self.identities.get(n) for n in node_ids)
                if ident and rule.by in ident
            ]
        msg = (
            f"unlearning target {rule.by}={','.join(missing)} matches no connected node; "
            f"connected nodes have {rule.by} in {sorted(set(known)) or '(none)'}"
        )
        unknown = [n for n in node_ids if self.identities.get(n) is None]
        if rule.needs_identity and unknown:
            replied = sum(n in self.replied for n in unknown)
            msg += ". " + identity_hint(replied=replied, silent=len(unknown) - replied)
        return msg

    def with_forget_specs(
        self,
        messages: list[Message],
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
    ) -> list[Message]:
        """Give each affected node its own config with ``forget-classes``/``forget-samples``
        (the other records, ArrayRecords included, are shared, not copied; other nodes get
        the message as it was)."""
        if not self.forget:
            return messages
        out = []
        for msg in messages:
            spec = self.forget_spec_for(msg.metadata.dst_node_id)
            if not spec["classes"] and not spec["samples"]:
                out.append(msg)
                continue
            config = ConfigRecord(dict(msg.content[configrecord_key]))
            if spec["classes"]:
                config["forget-classes"] = spec["classes"]
            if spec["samples"]:
                config["forget-samples"] = spec["samples"]
            content = RecordDict({**dict(msg.content.items()), configrecord_key: config})
            out.append(
                Message(
                    content,
                    dst_node_id=msg.metadata.dst_node_id,
                    message_type=msg.metadata.message_type,
                )
            )
        return out


__all__ = ["TargetBook"]
