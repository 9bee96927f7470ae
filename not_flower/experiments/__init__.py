"""Experiments: the comparison driver, its reports and in-process simulations.

``python -m not_flower.experiments.compare`` runs methods over seeds and scenarios
(:mod:`.plan`, :mod:`.runs`, :mod:`.simulation`) and writes reports (:mod:`.report` and
its ``report_*`` parts). Imports the app; nothing in the app imports it, and the app
bundle leaves it out.
"""
