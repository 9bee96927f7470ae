"""What every layer of the app uses: settings, method registry, durable files, progress.

Public modules: :mod:`.config` (``RunConfig``, ``parse_run_config``, ``ConfigError``),
:mod:`.methods` (the method registry), :mod:`.store` (atomic writes, checkpoints),
:mod:`.outdir` (the out-dir lock and moving results aside), :mod:`.faults`
(fault-injection points for tests) and :mod:`.progress` (progress lines).
Imports nothing else from ``not_flower``.
"""
