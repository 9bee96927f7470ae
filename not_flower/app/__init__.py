"""The Flower app: ServerApp, ClientApp and what the server keeps during a run.

Components (``pyproject.toml``): ``not_flower.app.server_app:app`` and
``not_flower.app.client_app:app``. Other modules: :mod:`.strategy_builders` and
:mod:`.baseline_client` (the baselines), :mod:`.specs` (the small specs the lower
layers take, from the run config), :mod:`.recorder` (per-round results),
:mod:`.run_state` (the durable state of a run), :mod:`.requests` and
:mod:`.request_gate` (requests from outside), :mod:`.stopping` (the stopping rule),
:mod:`.preflight` (checks before round 1), :mod:`.forgetting_records` and
:mod:`.forgotten_check` (the record of forgetting).
Imports every package above it except :mod:`not_flower.experiments`.
"""
