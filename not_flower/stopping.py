"""The stopping rule of recovery, judged per unlearning request.

Each request opens a window of rounds that lasts until the next request. Its reference is
the retained clients' validation accuracy in the last round before it; its recovery
"stops" at the first recovery round of its own window whose retained validation accuracy
is within ``stop-tolerance`` of that reference. A request that is not back within the
tolerance before the next one starts (or the run ends) has no stop round, and a later
round is never credited to it.

The level before a request is only a fair target if the federation had recovered by
then: when the previous request did not stop (its recovery was cut short by this one),
this request inherits the previous request's reference, the last level the federation
had before an unrecovered negation, instead of the lower accuracy of a model that was
still recovering.

The entries are plain dicts (JSON-ready), kept in the run's ``state.json`` for resume.
"""

from __future__ import annotations

#: What the rule is, as written into ``results.json``.
RULE = (
    "first recovery round of each request whose retained clients' validation accuracy "
    "is within stop-tolerance of its value in the last round before that request"
)


class StoppingRule:
    """Per-request stopping rule over the rounds of a run.

    Parameters
    ----------
    tolerance : float
        ``stop-tolerance`` (0.02 = 2 points).
    entries : list[dict] or None
        Entries of an interrupted run to continue (updated in place); ``None``: a new list.
    """

    def __init__(self, tolerance: float, entries: list[dict] | None = None) -> None:
        self.tolerance = tolerance
        self.entries: list[dict] = [] if entries is None else entries

    def start(self, request_round: int, reference: float | None) -> dict:
        """Open the window of a request applied at ``request_round`` and return its entry.

        Parameters
        ----------
        request_round : int
            The round the request was applied at (its first recovery round).
        reference : float or None
            Retained clients' validation accuracy in the round before it (``None``: no
            reference; the rule cannot fire for this request). Replaced by the previous
            request's reference when that request did not stop.
        """
        inherited = None
        if self.entries:
            previous = self.entries[-1]
            if previous["chosen_round"] is None and previous["reference_val_acc"] is not None:
                inherited = len(self.entries) - 1  # cut short: its target still stands
                reference = previous["reference_val_acc"]
        entry = {
            "request_round": int(request_round),
            "reference_val_acc": reference,
            "reference_of_request": inherited,
            "chosen_round": None,
            "last_round": None,
        }
        self.entries.append(entry)
        return entry

    def observe(self, server_round: int, phase: str, val_acc: float | None) -> list[int]:
        """Record one round; return the indices of the requests whose recovery stops here.

        Only the requests of the latest window (applied at the latest request round, at or
        before ``server_round``) are judged, each against its own reference.
        """
        open_round = max(
            (e["request_round"] for e in self.entries if e["request_round"] <= server_round),
            default=None,
        )
        stopped = []
        for index, entry in enumerate(self.entries):
            if entry["request_round"] != open_round:
                continue
            entry["last_round"] = server_round
            ref = entry["reference_val_acc"]
            if (
                phase == "recovery"
                and entry["chosen_round"] is None
                and ref is not None
                and val_acc is not None
                and val_acc >= ref - self.tolerance
            ):
                entry["chosen_round"] = int(server_round)
                stopped.append(index)
        return stopped

    def summary(self, cap: int | None) -> list[dict]:
        """Per request: reference, chosen round, recovery rounds it took, rounds it had.

        Parameters
        ----------
        cap : int or None
            ``recovery-rounds`` (the most recovery rounds a scheduled request gets).

        Returns
        -------
        list[dict]
            ``request_round``, ``reference_val_acc``, ``reference_of_request``,
            ``chosen_round``,
            ``chosen_recovery_rounds`` (``chosen_round - request_round + 1``),
            ``observed_rounds`` (rounds of its window that were run) and ``cap``.
        """
        out = []
        for entry in self.entries:
            start, chosen, last = entry["request_round"], entry["chosen_round"], entry["last_round"]
            out.append(
                {
                    "request_round": start,
                    "reference_val_acc": entry["reference_val_acc"],
                    # index of the earlier request whose reference this one inherited, or None
                    "reference_of_request": entry.get("reference_of_request"),
                    "chosen_round": chosen,
                    "chosen_recovery_rounds": None if chosen is None else chosen - start + 1,
                    "observed_rounds": 0 if last is None else last - start + 1,
                    "cap": cap,
                }
            )
        return out

    def counts(self, server_round: int) -> bool:
        """Whether a request needed this round: it lies in a request's window, up to its
        stop round (anywhere in it when it did not stop); rounds before the first request
        are not counted.

        Parameters
        ----------
        server_round : int
            The round.

        Returns
        -------
        bool
        """
        window = max(
            (e["request_round"] for e in self.entries if e["request_round"] <= server_round),
            default=None,
        )
        if window is None:
            return False
        chosen = [e["chosen_round"] for e in self.entries if e["request_round"] == window]
        ends = [c for c in chosen if c is not None]
        return len(ends) < len(chosen) or server_round <= max(ends)

    def rows_until_stop(self, rows: list[dict]) -> list[dict]:
        """The rounds each request needed (:meth:`counts`), as rows with a ``round``."""
        return [row for row in rows if self.counts(row["round"])]


def summary_lines(per_request: list[dict], requests: list[dict]) -> list[str]:
    """Lines of the run's summary: where the stopping rule stopped each request.

    Parameters
    ----------
    per_request : list[dict]
        :meth:`StoppingRule.summary`.
    requests : list[dict]
        ``results["requests"]`` in the same order (their ``request.rule`` names the targets
        and ``models.stopped``, when measured, the stopped model's numbers).

    Returns
    -------
    list[str]
    """
    lines = []
    many = len(per_request) > 1
    for k, (stop, request) in enumerate(zip(per_request, requests)):
        rule = request.get("request", {}).get("rule", {})
        name = (
            f"request {k + 1} ({rule.get('by', '?')}={','.join(rule.get('values', []))}, "
            f"round {stop['request_round']}): "
            if many
            else ""
        )
        cap = stop["cap"] if stop["cap"] is not None else stop["observed_rounds"]
        j = stop.get("reference_of_request")
        target = (
            f" (target: {100 * stop['reference_val_acc']:.2f} %, the level before request "
            f"{j + 1}, which had not recovered)"
            if j is not None
            else ""
        )
        if stop["reference_val_acc"] is None:
            lines.append(
                f"{name}stopping rule: no reference (no retained clients' validation "
                "accuracy in the round before the request)"
            )
            continue
        if stop["chosen_round"] is None:
            lines.append(
                f"{name}stopping rule: retained val acc not back within tolerance in "
                f"its {stop['observed_rounds']} recovery rounds{target}"
            )
            continue
        stopped = (request.get("models") or {}).get("stopped") or {}
        acc = (
            f", test acc {100 * stopped['test_acc']:.2f} %"
            if many and stopped.get("test_acc") is not None
            else ""
        )
        lines.append(
            f"{name}stopping rule chose round {stop['chosen_round']} "
            f"({stop['chosen_recovery_rounds']} recovery rounds of {cap}){acc}{target}"
        )
    return lines
