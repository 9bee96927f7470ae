"""What every layer of the app uses: settings, method registry, durable files, progress.

Public modules: :mod:`.config` (``RunConfig``, ``parse_run_config``, ``ConfigError``),
:mod:`.settings` (how a run-config key is declared, parsed, renamed and listed; the
declarations themselves are in :mod:`.run_settings`, :mod:`.unlearning_settings` and
:mod:`.scenario_settings`, with the checks of settings together in
:mod:`.config_checks`), :mod:`.methods` (the method registry), :mod:`.store` (atomic
writes, checkpoints), :mod:`.outdir` (the out-dir lock and moving results aside), :mod:`.faults`
(fault-injection points for tests) and :mod:`.progress` (progress lines).
Imports nothing else from ``not_flower``.
"""
