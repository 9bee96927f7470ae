"""The stopping rule of recovery in the app: :mod:`strategies.stopping`, fed by the rounds.

The rule itself (back within ``stop.tolerance`` of the level before the request, or a
plateau of ``stop.plateau-window`` rounds with less than ``stop.plateau-min-delta`` of
improvement after at least ``stop.min-rounds``) is :mod:`strategies.stopping`'s, judged
per request on the retained clients' validation accuracy (``val_acc`` of each round).
Each request opens a window of rounds that lasts until the next request; a request that
does not stop before the next one starts (or the run ends) has no stop round, and the
next one inherits its reference. When the last request has stopped and none is pending,
the ServerApp ends the run (:meth:`StoppingRule.ends_run`) unless ``recovery.run-to-cap``.

The entries are plain dicts (JSON-ready), kept in the run's ``state.json`` for resume.
"""

from __future__ import annotations

from logging import INFO

from flwr.supercore import log

from not_flower.common.methods import method as method_spec
from strategies.stopping import RequestStops, StopSettings

#: What the rule is, as written into ``results.json``.
RULE = (
    "first recovery round of each request whose retained clients' validation accuracy "
    "is within stop.tolerance of its value in the last round before that request, or "
    "(stop.plateau-window > 0) from stop.min-rounds recovery rounds on, whose best value "
    "of the last stop.plateau-window rounds is at most stop.plateau-min-delta above the "
    "best value before them"
)


class StoppingRule(RequestStops):
    """Per-request stopping rule over the rounds of a run (the app's run-config form).

    Parameters
    ----------
    tolerance : float
        ``stop.tolerance`` (0.02 = 2 points).
    entries : list[dict] or None
        Entries of an interrupted run to continue (updated in place); ``None``: a new list.
    window, min_delta, min_rounds : int, float, int
        ``stop.plateau-window`` (0: no plateau test), ``stop.plateau-min-delta`` and
        ``stop.min-rounds``.
    """

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        tolerance: float,
        entries: list[dict] | None = None,
        *,
        window: int = 0,
        min_delta: float = 0.0,
        min_rounds: int = 0,
    ) -> None:
        for entry in entries or []:  # state.json of an older run: its reference's old name
            if "reference" not in entry:
                entry["reference"] = entry.pop("reference_val_acc", None)
        super().__init__(StopSettings(tolerance, window, min_delta, min_rounds), entries)

    @classmethod
    def from_config(cls, cfg, entries: list[dict] | None = None) -> StoppingRule:
        """The rule of a :class:`not_flower.common.config.RunConfig`."""
        return cls(
            cfg.stop_tolerance,
            entries,
            window=cfg.stop_plateau_window,
            min_delta=cfg.stop_plateau_min_delta,
            min_rounds=cfg.stop_min_rounds,
        )

    def observe(self, server_round: int, phase: str, val_acc: float | None) -> list[int]:  # type: ignore[override]
        """Record one round; return the indices of the requests whose recovery stops here.

        Only the requests of the latest window (applied at the latest request round, at or
        before ``server_round``) are judged, each against its own reference, in recovery
        rounds only.
        """
        return super().observe(server_round, val_acc, recovery=phase == "recovery")

    def summary(self, cap: int | None) -> list[dict]:
        """Per request: reference, chosen round and branch, rounds it took, rounds it had.

        Parameters
        ----------
        cap : int or None
            ``recovery.rounds`` (the most recovery rounds a scheduled request gets).

        Returns
        -------
        list[dict]
            ``request_round``, ``reference_val_acc``, ``reference_of_request``,
            ``chosen_round``, ``branch`` (``"tolerance"``, ``"plateau"`` or ``None``),
            ``chosen_recovery_rounds`` (``chosen_round - request_round + 1``),
            ``observed_rounds`` (rounds of its window that were run), ``cap`` and
            ``rounds_saved`` (``cap - chosen_recovery_rounds``: the recovery rounds the
            stop spares against the cap; ``None`` without a stop or a cap).
        """
        out = []
        for entry in self.entries:
            start, chosen, last = entry["request_round"], entry["chosen_round"], entry["last_round"]
            taken = None if chosen is None else chosen - start + 1
            out.append(
                {
                    "request_round": start,
                    "reference_val_acc": entry["reference"],
                    # index of the earlier request whose reference this one inherited, or None
                    "reference_of_request": entry.get("reference_of_request"),
                    "chosen_round": chosen,
                    "branch": entry.get("branch"),
                    "chosen_recovery_rounds": taken,
                    "observed_rounds": 0 if last is None else last - start + 1,
                    "cap": cap,
                    "rounds_saved": None if taken is None or cap is None else max(0, cap - taken),
                }
            )
        return out

    # pylint: disable=too-many-arguments
    def ends_run(self, cfg, server_round: int, pending: bool, snapshots: dict) -> bool:
        """Whether the run ends after ``server_round`` (and log it when it does).

        Parameters
        ----------
        cfg : RunConfig
            The run configuration (``recovery.run-to-cap``, the method, the rounds).
        server_round : int
            The round just done.
        pending : bool
            Whether a request is queued and not applied yet.
        snapshots : dict
            Round -> the name of a model measured after it (``eval-recovery-rounds``).

        Returns
        -------
        bool
            ``True`` when every request of the latest window stopped, none is pending,
            ``recovery.run-to-cap`` is false, the method recovers (Retrain never stops
            early) and rounds remain.
        """
        recovers = method_spec(cfg.method).recovers
        if cfg.recovery_run_to_cap or not recovers or not self.settled or pending:
            return False
        if server_round >= cfg.total_rounds:
            return False  # the last round: nothing to save
        skipped = sorted(name for r, name in snapshots.items() if r > server_round)
        log(
            INFO,
            "stopping rule: recovery done; the run ends after round %d of %d "
            "(recovery.run-to-cap = true runs them all)%s",
            server_round,
            cfg.total_rounds,
            f"; not measured: {', '.join(skipped)}" if skipped else "",
        )
        return True

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
        if stop["chosen_round"] is None:
            why = (
                "no reference (no retained clients' validation accuracy in the round "
                "before the request) and no plateau"
                if stop["reference_val_acc"] is None
                else "retained val acc neither back within tolerance nor on a plateau"
            )
            lines.append(
                f"{name}stopping rule: {why} in its {stop['observed_rounds']} recovery "
                f"rounds{target}"
            )
            continue
        stopped = (request.get("models") or {}).get("stopped") or {}
        acc = (
            f", test acc {100 * stopped['test_acc']:.2f} %"
            if many and stopped.get("test_acc") is not None
            else ""
        )
        branch = {"tolerance": "back within tolerance", "plateau": "plateau"}.get(
            stop.get("branch"), "back within tolerance"
        )
        lines.append(
            f"{name}stopping rule chose round {stop['chosen_round']} "
            f"({stop['chosen_recovery_rounds']} recovery rounds of {cap}, {branch}){acc}{target}"
        )
    return lines
