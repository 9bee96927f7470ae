"""The method registry: every unlearning method not-flower's app can run, in one place.

Each entry (:class:`Method`) names the method's run-config value, its strategy builder,
what it needs, the ClientApp handlers its clients answer with, and how reports show it.
:mod:`not_flower.common.config` (the allowed ``method`` values), :mod:`not_flower.app.server_app`
(strategy and ``requirements``), :mod:`not_flower.experiments.report` (labels, order, plot
styles), :mod:`not_flower.experiments.compare` (``--methods``) and
:mod:`not_flower.app.client_app` (handlers) all read :data:`REGISTRY`.

This module imports neither torch nor Flower: builders and handlers are named as
``"module:function"`` strings and imported only when used (:func:`resolve`), so the
config stays light and the ClientApp loads no server strategy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from strategies.requirements import Requirements

#: What a method needs, for NoT, FT and Retrain: nothing kept, no target involvement.
NOTHING_NEEDED = Requirements()


@dataclass(frozen=True)
class Method:
    """One unlearning method of the app.

    Parameters
    ----------
    name : str
        The run-config value (``method = "<name>"``) and the key of ``results.json`` runs.
    label : str
        Display name in reports and logs ("NoT", "FedEraser").
    builder : str
        ``"module:function"`` building the method's strategy, called as
        ``function(cfg, plan, out_dir=..., **strategy_kwargs)`` (see
        :mod:`not_flower.app.strategy_builders`).
    requirements : strategies.requirements.Requirements
        What the method needs: ``storage``, ``target_data``, ``target_participation``,
        ``server_data``; written to ``results.json`` and the report (``to_dict()``). For a
        strategy class that declares ``REQUIREMENTS`` the two must agree (a test checks it).
    report_rank : int
        Position in reports and ``--methods`` (lower first).
    color, linestyle : str
        Matplotlib colour and line style of the method's curves.
    recovers : bool
        Train, unlearn, then recover (report rows "X@K"); ``False`` for Retrain, which
        trains from scratch without the targets: its rounds after the request are
        ``"retrain"`` rounds (:attr:`phase_after_request`), not recovery, so the stopping
        rule and the recovery schedule do not apply, it ignores an ``init-checkpoint`` and
        its final model is ``"retrained"``.
    step_model : str
        The name under which the model right after the method's unlearning step is
        measured and recorded: ``"negated"`` for NoT (which also records its negation
        plan, :attr:`negates`), ``"unlearned"`` for the baselines, ``""`` where the step
        leaves the model as it was (FT, Retrain).
    history_dir : str
        A folder of the out-dir the method keeps its history in (FedEraser's
        ``federaser-history``); ``""``: none.
    recovery_schedule : bool
        Whether the recovery schedule (layer-wise rounds, lr warm-up, distillation) applies
        to its recovery (NoT and FT).
    needs_run_history : bool
        Its step needs what this run's own training kept (FedEraser's stored updates,
        FUKD's accumulated ones): it cannot start from an ``init-checkpoint``.
    baseline : bool
        A baseline with its own unlearning step: forgets whole clients only, gets a report
        row "X@0" (the model right after the step).
    client_handlers : tuple of (str, str)
        ``(action, "module:function")``: registered by the ClientApp as
        ``@app.train(action)`` (message type ``train.<action>``).
    runs_as : str
        For a *variant*: the app method it runs as (``""``: none, the method is the app's
        own). A variant is a comparison's name for an app method with some run-config keys
        fixed (``run_config``); ``python -m not_flower.experiments.compare --methods`` and the
        reports know it, the app's ``method`` key does not (:data:`METHOD_NAMES`).
    run_config : Mapping
        The run-config keys (dashed) a variant fixes; empty for the app's own methods.
    """

    name: str
    label: str
    builder: str
    report_rank: int
    color: str
    linestyle: str
    requirements: Requirements = NOTHING_NEEDED
    recovers: bool = True
    baseline: bool = False
    step_model: str = ""
    history_dir: str = ""
    recovery_schedule: bool = False
    needs_run_history: bool = False
    client_handlers: tuple[tuple[str, str], ...] = ()
    runs_as: str = ""
    run_config: Any = field(default_factory=lambda: MappingProxyType({}))

    @property
    def negates(self) -> bool:
        """Whether the step negates layers (the run records the negation plan)."""
        return self.step_model == "negated"

    @property
    def phase_after_request(self) -> str:
        """The phase of the rounds after a request: ``"recovery"``, or Retrain's ``"retrain"``."""
        return "recovery" if self.recovers else "retrain"

    @property
    def app_method(self) -> str:
        """The ``method`` the app runs: the variant's base method, or the method itself."""
        return self.runs_as or self.name

    def build_strategy(self, cfg, plan, *, out_dir=None, **kwargs):
        """Build this method's strategy (imports its builder now)."""
        return resolve(self.builder)(cfg, plan, out_dir=out_dir, **kwargs)


_B = "not_flower.app.strategy_builders:"
_C = "not_flower.app.baseline_client:"

#: Every method, keyed by its run-config name (in the order of the config's choices).
REGISTRY: MappingProxyType[str, Method] = MappingProxyType(
    {
        m.name: m
        for m in (
            Method(
                "not",
                "NoT",
                _B + "build_not",
                report_rank=3,
                color="tab:blue",
                linestyle="-",
                step_model="negated",
                recovery_schedule=True,
            ),
            Method(
                "ft",
                "FT",
                _B + "build_ft",
                report_rank=2,
                color="tab:orange",
                linestyle="--",
                recovery_schedule=True,
            ),
            Method(
                "retrain",
                "Retrain",
                _B + "build_ft",
                report_rank=0,
                color="tab:green",
                linestyle="-",
                recovers=False,
            ),
            Method(
                "pgd",
                "PGD",
                _B + "build_pgd",
                report_rank=5,
                color="tab:red",
                linestyle="-.",
                baseline=True,
                step_model="unlearned",
                client_handlers=(("pgd", _C + "pgd_fn"),),
                requirements=Requirements(
                    storage="every client's latest local model, in server memory",
                    target_data=True,
                    target_participation=True,
                    server_data=False,
                ),
            ),
            Method(
                "federaser",
                "FedEraser",
                _B + "build_federaser",
                report_rank=6,
                color="tab:purple",
                linestyle=":",
                baseline=True,
                step_model="unlearned",
                history_dir="federaser-history",
                needs_run_history=True,
                client_handlers=(("calibrate", _C + "calibrate_fn"),),
                requirements=Requirements(
                    storage="every client's update of every retained round, on disk",
                    target_data=False,
                    target_participation=False,
                    server_data=False,
                ),
            ),
            Method(
                "fukd",
                "FUKD",
                _B + "build_fukd",
                report_rank=7,
                color="tab:brown",
                linestyle="-.",
                baseline=True,
                step_model="unlearned",
                needs_run_history=True,
                requirements=Requirements(
                    storage="every client's accumulated weighted update, in server memory",
                    target_data=False,
                    target_participation=False,
                    server_data=True,
                ),
            ),
            # a variant: NoT with the weights negated and the biases kept (``negate.bias = false``),
            # the setting BENCHMARKS.md "Faster recovery" recommends; comparisons only
            Method(
                "not-weights-only",
                "NoT weights-only",
                _B + "build_not",
                report_rank=4,
                color="tab:cyan",
                linestyle="-",
                step_model="negated",
                recovery_schedule=True,
                runs_as="not",
                run_config=MappingProxyType({"negate.bias": False}),
            ),
            # a variant: Retrain with the recipe a recovery uses (clients per round, local
            # epochs), given with ``--set-for retrain-recipe fraction-train=0.5`` etc.; the
            # reference that shows which part of a saving is NoT's own; comparisons only
            Method(
                "retrain-recipe",
                "Retrain same recipe",
                _B + "build_ft",
                report_rank=1,
                color="tab:olive",
                linestyle="--",
                recovers=False,
                runs_as="retrain",
            ),
        )
    }
)

#: Run-config names of the app's methods (the allowed ``method`` values; no variants).
METHOD_NAMES: tuple[str, ...] = tuple(m for m, s in REGISTRY.items() if not s.runs_as)
#: Comparison-only variants of an app method (:attr:`Method.runs_as`).
VARIANT_NAMES: tuple[str, ...] = tuple(m for m, s in REGISTRY.items() if s.runs_as)
#: The baselines with an unlearning step of their own (client-wise forgetting only).
BASELINE_METHODS: tuple[str, ...] = tuple(m for m, s in REGISTRY.items() if s.baseline)
#: Methods and variants in report order.
REPORT_ORDER: tuple[str, ...] = tuple(sorted(REGISTRY, key=lambda m: REGISTRY[m].report_rank))


def method(name: str) -> Method:
    """The registry's entry for a run-config ``method`` value (or a variant's name).

    Raises
    ------
    KeyError
        Naming the value and the registered methods.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(REGISTRY)}") from None


def resolve(target: str) -> Callable:
    """Import ``"package.module:function"`` and return the function.

    Raises
    ------
    ValueError
        If ``target`` is not of the form ``module:function``.
    """
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"expected 'module:function', got {target!r}")
    return getattr(importlib.import_module(module), name)


def client_handlers() -> list[tuple[str, Callable]]:
    """Every registered ``(action, handler)`` pair for the ClientApp, imported now."""
    return [
        (action, resolve(target))
        for spec in REGISTRY.values()
        for action, target in spec.client_handlers
    ]


__all__ = [
    "BASELINE_METHODS",
    "METHOD_NAMES",
    "Method",
    "NOTHING_NEEDED",
    "REGISTRY",
    "REPORT_ORDER",
    "VARIANT_NAMES",
    "client_handlers",
    "method",
    "resolve",
]
