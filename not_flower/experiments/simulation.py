"""Run the not-flower app in Flower's simulation engine from Python.

``flwr run .`` is the way to run the app; this module is for programs that run many
simulations (tests, the comparison command): :func:`simulate` runs the very same
ServerApp and ClientApp handlers through ``flwr.simulation.run_simulation`` (Ray backend)
with a run config given as a dict, and returns the results dict the ServerApp wrote.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from not_flower.app import client_app as ca
from not_flower.app.server_app import run_experiment
from not_flower.common.config import parse_run_config
from not_flower.common.methods import client_handlers
from not_flower.common.outdir import check_out_dir

RUN_SIMULATION_DEPRECATED = "`run_simulation` function is deprecated"


class _DropDeprecation(logging.Filter):
    """Drops Flower's deprecation warning for ``run_simulation`` (and nothing else)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return RUN_SIMULATION_DEPRECATED not in record.getMessage()


@contextmanager
def quiet_run_simulation_deprecation() -> Iterator[None]:
    """Keep Flower's ``run_simulation`` deprecation warning out of the log while inside.

    Flower 1.42 deprecates ``run_simulation`` in favour of ``flwr run``, which takes an app
    folder; the comparison and the tests run ServerApp/ClientApp objects built in this
    process with a run config as a dict, which only ``run_simulation`` can do. The warning
    said so on every one of a comparison's runs; every other message passes.
    """
    flwr_logger = logging.getLogger("flwr")
    drop = _DropDeprecation()
    flwr_logger.addFilter(drop)
    try:
        yield
    finally:
        flwr_logger.removeFilter(drop)


def _with_run_config(run_config: dict):
    """Client mod that hands the handlers a Context carrying ``run_config``."""

    def mod(message: Message, context: Context, call_next) -> Message:
        ctx = Context(
            run_id=context.run_id,
            node_id=context.node_id,
            node_config=context.node_config,
            state=context.state,
            run_config=dict(run_config),
        )
        return call_next(message, ctx)

    return mod


def build_apps(run_config: dict) -> tuple[ServerApp, ClientApp]:
    """ServerApp and ClientApp of not-flower with ``run_config`` baked in.

    Parameters
    ----------
    run_config : dict
        Run-config overrides (dashed keys, as in ``--run-config``).

    Returns
    -------
    tuple[ServerApp, ClientApp]
    """
    cfg = parse_run_config(run_config)  # fail fast, before Ray starts
    if not cfg.out_dir:
        raise ValueError("simulate() needs an absolute 'out-dir' in run_config")
    check_out_dir(
        Path(cfg.out_dir),
        resume=cfg.resume,
        overwrite=cfg.overwrite,
        init_checkpoint=cfg.init_checkpoint,
    )  # refused before Ray starts
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        run_experiment(grid, cfg, Path(cfg.out_dir))

    client = ClientApp(mods=[_with_run_config(run_config), *ca.app._mods])  # pylint: disable=protected-access
    client.train()(ca.train_fn)
    client.evaluate()(ca.evaluate_fn)
    client.query("identity")(ca.answer_identity)
    for action, handler in client_handlers():  # the registry's: train.pgd, train.calibrate
        client.train(action)(handler)
    return server, client


def simulate(
    run_config: dict,
    num_supernodes: int = 10,
    *,
    num_cpus: int = 2,
    cpus_per_client: float = 1.0,
    gpus_per_client: float = 0.0,
    verbose: bool = False,
) -> dict:
    """Run one simulation and return its ``results.json`` as a dict.

    Parameters
    ----------
    run_config : dict
        Run-config overrides; must hold an absolute ``out-dir``.
    num_supernodes : int (default: 10)
        Number of virtual SuperNodes (partitions).
    num_cpus : int (default: 2)
        CPUs Ray may use.
    cpus_per_client, gpus_per_client : float
        Resources of one ClientApp actor.
    verbose : bool (default: False)
        Let Ray log at INFO level.

    Returns
    -------
    dict
        The results the ServerApp wrote.

    Raises
    ------
    RuntimeError
        If the ServerApp did not write ``results.json`` (it failed: see the logs).
    """
    from flwr.simulation import run_simulation  # pylint: disable=import-outside-toplevel

    server, client = build_apps(run_config)
    out = Path(run_config["out-dir"]) / "results.json"
    before = out.stat().st_mtime_ns if out.exists() else None
    with quiet_run_simulation_deprecation():
        run_simulation(
            server_app=server,
            client_app=client,
            num_supernodes=num_supernodes,
            backend_config={
                "client_resources": {"num_cpus": cpus_per_client, "num_gpus": gpus_per_client},
                "init_args": {
                    "num_cpus": num_cpus,
                    "logging_level": "INFO" if verbose else "ERROR",
                },
            },
        )
    if not out.exists() or out.stat().st_mtime_ns == before:
        raise RuntimeError(f"the simulation did not write {out}; see the log above")
    return json.loads(out.read_text())
