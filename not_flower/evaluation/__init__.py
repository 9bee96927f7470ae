"""Evaluation: metrics, membership inference, the gap to retraining, the canary check.

Public modules: :mod:`.evaluator` (the server-side evaluator of a run),
:mod:`.metrics`, :mod:`.classification`, :mod:`.gap`, :mod:`.membership` (LiRA),
:mod:`.population_mia`, :mod:`.reference_models` and :mod:`.canary_cli`
(``python -m not_flower.evaluation.canary_cli check``).
Imports :mod:`not_flower.common`, :mod:`not_flower.audit` and :mod:`not_flower.task`.
"""
