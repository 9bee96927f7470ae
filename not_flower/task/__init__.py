"""The task: what a client trains on and how.

Public modules: :mod:`.spec` (:class:`~not_flower.task.spec.DataSpec`, the few run-config
values the data pipeline reads), :mod:`.data` (data sets), :mod:`.partition` (IID and
Dirichlet splits), :mod:`.backdoor` and :mod:`.mislabel` (the altered clients of the
scenarios), :mod:`.canary` (the canaries a client plants and the test it runs),
:mod:`.models` (the models), :mod:`.training` (client data, local training and
evaluation) and :mod:`.recovery_train` (recovery-only local training).
Imports only :mod:`not_flower.common`; takes a :class:`DataSpec`, never the run config.
"""

from not_flower.task.spec import DataSpec

__all__ = ["DataSpec"]
