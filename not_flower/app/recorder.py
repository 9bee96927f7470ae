"""The per-run recorder: typed round statistics and the run's results, as ``results.json``.

:class:`RoundStats` is what one round records (who took part, the centralized and
client-reported numbers, the counted costs); :class:`RunRecorder` owns a run's rounds,
requests, named models and checkpoints and, at the end, its costs and stopping decision,
and converts them to the ``results.json`` dict (:meth:`RunRecorder.to_dict`, also saved
in ``state.json`` after every round and read back on resume by
:meth:`RunRecorder.from_dict`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

from not_flower.app.stopping import RULE, StoppingRule
from not_flower.common.config import RunConfig, to_run_config
from not_flower.common.methods import method as method_spec
from strategies.round_log import RoundLog

#: Optional per-round numbers: left out of ``results.json`` when not measured.
OPTIONAL_ROUND_FIELDS = (
    "forget_acc",
    "asr",
    "forgotten_classes_test_acc",
    "other_classes_test_acc",
    "train_loss",
)
#: The per-round costs the strategy counts (its round log's keys).
ROUND_COST_FIELDS = ("bytes_down", "bytes_up", "client_seconds", "server_seconds")


@dataclass
class RoundStats:  # pylint: disable=too-many-instance-attributes
    """One round of a run, as a row of ``results["rounds"]`` (fields in that order).

    Parameters
    ----------
    round : int
        Server round (counted across a resume).
    phase : str
        ``init``, ``train``, ``recovery``, ``retrain``, ...
    participants, participant_node_ids, participants_detail : list
        Who trained: partition ids, node ids, and ``{"node_id", "partition_id"}`` each.
    unlearning_participants : list[int]
        Baselines: who worked in the unlearning step at this boundary.
    extra_rounds : int
        Communication rounds that step used.
    evaluated : list[int]
        Partition ids that answered the evaluate round.
    test_acc, test_loss : float
        The global model on the test set.
    forget_acc, asr, forgotten_classes_test_acc, other_classes_test_acc : float or None
        Forget accuracy, backdoor ASR, class-wise split; ``None``: not measured.
    trained_examples, forgotten_examples : dict[str, int]
        Per participant, samples trained on and left out (its reply).
    val_acc : float or None
        Clients' weighted validation accuracy.
    bytes_down, bytes_up, client_seconds, server_seconds : int or float
        The round's counted costs.
    train_loss : float or None
        Clients' training loss (filled in at the end of the run).
    """

    round: int  # noqa: A003 - the results.json field
    phase: str
    participants: list[int]
    participant_node_ids: list[int]
    participants_detail: list[dict]
    unlearning_participants: list[int]
    extra_rounds: int
    evaluated: list[int]
    test_acc: float
    test_loss: float
    forget_acc: float | None = None
    asr: float | None = None
    forgotten_classes_test_acc: float | None = None
    other_classes_test_acc: float | None = None
    trained_examples: dict[str, int] = field(default_factory=dict)
    forgotten_examples: dict[str, int] = field(default_factory=dict)
    val_acc: float | None = None
    bytes_down: int = 0
    bytes_up: int = 0
    client_seconds: float = 0
    server_seconds: float = 0
    train_loss: float | None = None

    def to_dict(self) -> dict:
        """The ``results.json`` row (optional numbers only when measured)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not (f.name in OPTIONAL_ROUND_FIELDS and getattr(self, f.name) is None)
        }

    @classmethod
    def from_dict(cls, row: dict) -> RoundStats:
        """Read back a row of :meth:`to_dict` (from ``state.json`` on resume)."""
        return cls(**row)


def round_stats(
    server_round: int,
    phase: str,
    info: RoundLog,
    partition_of: Callable[[int], int | None],
    measured: dict[str, float],
) -> RoundStats:
    """The statistics of one round from the strategy's round log and the measurements.

    Parameters
    ----------
    server_round : int
        The server round.
    phase : str
        Its phase.
    info : RoundLog
        The strategy's log of that round (who replied, their metrics, the costs).
    partition_of : callable
        Node id -> partition id (``None`` when unknown).
    measured : dict[str, float]
        The global model's numbers (:meth:`not_flower.evaluation.evaluator.Evaluator.quick`).

    Returns
    -------
    RoundStats
    """

    def partitions(node_ids: list[int]) -> list[int]:
        return sorted(int(p) for p in map(partition_of, node_ids) if p is not None)

    replied = info.train_replied
    return RoundStats(
        round=server_round,
        phase=phase,
        participants=partitions(info.train_replied),
        participant_node_ids=replied,
        participants_detail=[{"node_id": n, "partition_id": partition_of(n)} for n in replied],
        # baselines: who worked in the unlearning step at this boundary (PGD's target,
        # FedEraser's calibrating clients) and how many communication rounds it used
        unlearning_participants=partitions(info.unlearning_replied),
        extra_rounds=info.extra_rounds,
        evaluated=partitions(info.evaluate_replied),
        **measured,
        **trained_counts(info.train_metrics, partition_of),
        val_acc=retained_val_acc(info.evaluate_metrics),
        **{k: getattr(info, k) for k in ROUND_COST_FIELDS},
    )


def retained_val_acc(
    metrics_by_node: dict[int, dict], keep: set[int] | None = None
) -> float | None:
    """Weighted validation accuracy over the given nodes' evaluate replies.

    Parameters
    ----------
    metrics_by_node : dict[int, dict]
        Node id -> the metrics of its evaluate reply (``val-acc``, ``num-examples``).
    keep : set[int] or None
        Only these nodes (``None``: all).

    Returns
    -------
    float or None
        ``None`` when no node qualifies.
    """
    pairs = [
        (float(m["val-acc"]), float(m["num-examples"]))
        for n, m in metrics_by_node.items()
        if (keep is None or n in keep) and "val-acc" in m and m.get("num-examples", 0) > 0
    ]
    total = sum(w for _, w in pairs)
    return None if total == 0 else sum(a * w for a, w in pairs) / total


def trained_counts(train_metrics: dict[int, dict], partition_of) -> dict:
    """Samples each participant trained on and left out this round (from its reply).

    Parameters
    ----------
    train_metrics : dict[int, dict]
        Node id -> the metrics of its train reply (``num-examples``, ``num-forgotten``).
    partition_of : callable
        Node id -> partition id (``None``: the node id names it).

    Returns
    -------
    dict
        ``trained_examples`` and ``forgotten_examples``, each by partition id (a string).
    """
    trained, forgotten = {}, {}
    for node_id, metrics in train_metrics.items():
        pid = partition_of(node_id)
        key = str(pid if pid is not None else node_id)
        trained[key] = int(metrics.get("num-examples", 0))
        forgotten[key] = int(metrics.get("num-forgotten", 0))
    return {"trained_examples": trained, "forgotten_examples": forgotten}


def sum_costs(rounds: list[RoundStats], phases: tuple[str, ...], up_to: int | None = None) -> dict:
    """Add up the counted costs of the rounds in ``phases`` (up to round ``up_to``).

    ``rounds`` counts FedAvg rounds; ``extra_rounds`` the communication rounds a
    baseline's unlearning step used inside them (PGD's ascent, FedEraser's calibration).

    Parameters
    ----------
    rounds : list[RoundStats]
        The run's rounds.
    phases : tuple[str, ...]
        The phases to count.
    up_to : int or None
        The last round to count (``None``: all).

    Returns
    -------
    dict
        ``rounds``, ``extra_rounds``, ``bytes_down``, ``bytes_up``, ``client_seconds``,
        ``server_seconds``.
    """
    rows = [r for r in rounds if r.phase in phases and (up_to is None or r.round <= up_to)]
    return {
        "rounds": len(rows),
        "extra_rounds": int(sum(r.extra_rounds for r in rows)),
        "bytes_down": int(sum(r.bytes_down for r in rows)),
        "bytes_up": int(sum(r.bytes_up for r in rows)),
        "client_seconds": float(sum(r.client_seconds for r in rows)),
        "server_seconds": float(sum(r.server_seconds for r in rows)),
    }


class RunRecorder:  # pylint: disable=too-many-instance-attributes
    """What one run records, converted to ``results.json`` by :meth:`to_dict`.

    The attributes that are ``None`` are not (yet) recorded and are left out of the
    dict; those after ``checkpoints`` are set as the run ends.

    Parameters
    ----------
    cfg : RunConfig
        The run configuration (kept as run-config keys).
    out_dir : str
        The run's output folder.
    negation : dict or None
        NoT's negation plan (``None`` for the other methods).
    """

    def __init__(self, cfg: RunConfig, out_dir: str, negation: dict | None) -> None:
        self.method: str = cfg.method
        self.config: dict = to_run_config(cfg)
        self.out_dir = out_dir
        self.negation = negation
        self.rounds: list[RoundStats] = []
        self.requests: list[dict] = []  # each request's record, as the strategy reports it
        self.models: dict[str, dict] = {}  # named model -> its metrics
        self.checkpoints: dict[str, str] = {}
        self.resumed_from_round: list[int] | None = None
        self.final: str | None = None
        self.costs: dict | None = None
        self.unlearning_steps: list[dict] | None = None
        self.requirements: dict | None = None
        self.server_data: dict | None = None
        self.stopping: dict | None = None
        self.num_partitions: int | None = None
        self.membership: dict | None = None
        self.excluded_node_ids: list[int] | None = None
        self.wall_seconds: float | None = None
        self.audit: list[dict] | None = None

    #: ``results.json``'s keys, in order.
    KEYS = (
        "method",
        "config",
        "out_dir",
        "negation",
        "rounds",
        "requests",
        "models",
        "checkpoints",
        "resumed_from_round",
        "final",
        "costs",
        "unlearning_steps",
        "requirements",
        "server_data",
        "stopping",
        "num_partitions",
        "membership",
        "excluded_node_ids",
        "wall_seconds",
        "audit",
    )
    #: Keys written even when ``None``.
    ALWAYS = ("negation",)

    def to_dict(self) -> dict:
        """The ``results.json`` dict of what is recorded so far."""
        out = {}
        for key in self.KEYS:
            value = getattr(self, key)
            if key == "rounds":
                value = [row.to_dict() for row in value]
            if value is not None or key in self.ALWAYS:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, results: dict) -> RunRecorder:
        """Continue the results an interrupted run saved in ``state.json``.

        Parameters
        ----------
        results : dict
            :meth:`to_dict` of the interrupted run.

        Returns
        -------
        RunRecorder
        """
        recorder = cls.__new__(cls)  # the attributes of __init__, from the saved dict
        for key in cls.KEYS:
            setattr(recorder, key, results.get(key))
        recorder.rounds = [RoundStats.from_dict(row) for row in results["rounds"]]
        return recorder

    def add_round(self, row: RoundStats) -> None:
        """Record a round (after its centralized evaluation)."""
        self.rounds.append(row)

    def add_request(self, request: dict) -> None:
        """Record an applied request (its record, completed by the caller)."""
        self.requests.append(request)

    def add_model(self, name: str, metrics: dict) -> None:
        """Record the metrics of a named model (``original``, ``recovered@2``, ...)."""
        self.models[name] = metrics

    def add_checkpoint(self, name: str, path) -> None:
        """Record where a named checkpoint was saved."""
        self.checkpoints[name] = str(path)

    def add_stopped(self, k: int, metrics: dict) -> None:
        """Record the model where the ``k``-th request's recovery stopped."""
        self.requests[k].setdefault("models", {})["stopped"] = metrics

    def mark_resumed(self, offset: int) -> None:
        """Note that this run resumed an interrupted one after round ``offset``."""
        self.resumed_from_round = [*(self.resumed_from_round or []), offset]

    def fill_train_loss(self, train_metrics: dict, offset: int) -> None:
        """Add the clients' training loss to the rounds this run trained.

        Parameters
        ----------
        train_metrics : dict
            The strategy's result: round (this run's count) -> aggregated train metrics.
        offset : int
            Rounds done by the interrupted run this one resumed.
        """
        for row in self.rounds:
            rec = train_metrics.get(row.round - offset) if row.round > offset else None
            if rec is not None and "train-loss" in rec:
                row.train_loss = float(rec["train-loss"])

    def record_stopping(
        self, cfg: RunConfig, stopping: StoppingRule, *, ended_at: int | None = None
    ) -> list[dict]:
        """Record the stopping rule's decisions and the last request's stopped model.

        Parameters
        ----------
        cfg : RunConfig
            The run configuration (the rule's settings, recovery rounds).
        stopping : StoppingRule
            The run's stopping rule.
        ended_at : int or None
            The round the rule ended the run at (``None``: it ran all its rounds).

        Returns
        -------
        list[dict]
            Per request, :meth:`StoppingRule.summary`.
        """
        cap = cfg.recovery_rounds if method_spec(cfg.method).recovers else None
        per_request = stopping.summary(cap)
        last = per_request[-1] if per_request else {}
        last_stopped = (
            (self.requests[-1].get("models") or {}).get("stopped") if per_request else None
        )
        if last_stopped is not None:  # "stopped": where the LAST request's recovery stopped
            self.models["stopped"] = last_stopped
        self.stopping = {  # the last request's, and every request's in per_request
            "rule": RULE,
            "tolerance": cfg.stop_tolerance,
            "plateau_window": cfg.stop_plateau_window,
            "plateau_min_delta": cfg.stop_plateau_min_delta,
            "min_rounds": cfg.stop_min_rounds,
            "run_to_cap": cfg.recovery_run_to_cap,
            "reference_val_acc": last.get("reference_val_acc"),
            "chosen_round": last.get("chosen_round"),
            "branch": last.get("branch"),
            "chosen_recovery_rounds": last.get("chosen_recovery_rounds"),
            "cap": cap,
            # recovery rounds of the cap the stop spares (run anyway with run_to_cap)
            "rounds_saved": last.get("rounds_saved"),
            "ended_run": ended_at is not None,  # the run ended at chosen_round
            "per_request": per_request,
        }
        return per_request

    def record_costs(
        self,
        method: str,
        stopping: StoppingRule,
        *,
        storage_peak: int,
        storage_final: int,
        steps: list[dict] | None,
    ) -> None:
        """Record the costs of training and of unlearning.

        Parameters
        ----------
        method : str
            The run's method.
        stopping : StoppingRule
            The run's stopping rule (unlearning costs count up to each request's stop).
        storage_peak, storage_final : int
            Bytes of history the method kept (peak, measured, and at the end).
        steps : list[dict] or None
            The baselines' unlearning step, per request (``None``: no such step).
        """
        spec = method_spec(method)
        phases = (spec.phase_after_request,)
        needed = (
            [row for row in self.rounds if stopping.counts(row.round)]
            if spec.recovers
            else self.rounds  # Retrain: every round is its cost
        )
        self.costs = {
            "train": sum_costs(self.rounds, ("train",)),
            # each request's rounds up to its own stop round (all of them where it did not stop)
            "unlearning": sum_costs(needed, phases),
            "unlearning_fixed_length": sum_costs(self.rounds, phases),
            # bytes of history the method kept (peak, measured; NoT, FT and Retrain keep
            # nothing beyond the global model)
            "storage_bytes": int(storage_peak),
            "storage_bytes_final": int(storage_final),
        }
        if steps is not None:  # the baselines' unlearning step, per request
            self.unlearning_steps = steps
            self.costs["unlearning_step"] = {
                "rounds": int(sum(s["rounds"] for s in steps)),
                "bytes_down": int(sum(s["bytes_down"] for s in steps)),
                "bytes_up": int(sum(s["bytes_up"] for s in steps)),
                "client_seconds": float(sum(s["client_seconds"] for s in steps)),
                "server_seconds": float(sum(s["server_seconds"] for s in steps)),
            }


def format_summary(models: dict[str, dict[str, float]]) -> list[str]:
    """Lines of the summary table: one row per model, accuracies in %.

    Parameters
    ----------
    models : dict[str, dict[str, float]]
        Named model -> its metrics (``results["models"]``).

    Returns
    -------
    list[str]
    """
    cols = (
        ("forget_acc", "forget"),
        ("retain_acc", "retain"),
        ("test_acc", "test"),
        ("mia_efficacy", "MIA"),
        ("asr", "ASR"),
    )
    shown = [(k, h) for k, h in cols if any(k in m for m in models.values())]
    lines = [f"{'model':<14}" + "".join(f"{h:>9}" for _, h in shown) + f"{'test loss':>11}"]
    for name, m in models.items():
        cells = "".join(
            f"{100 * m[k]:9.2f}" if m.get(k) is not None and m[k] == m[k] else f"{'-':>9}"
            for k, _ in shown
        )
        lines.append(f"{name:<14}{cells}{m.get('test_loss', float('nan')):11.4f}")
    return lines
