"""Launching runs: ``flwr run`` with checked settings, the local SuperLink, process trees.

Standard library only and runnable as files (``python not_flower/launch/cli.py run ...``,
``python not_flower/launch/local_superlink.py env|stop FLWR_HOME``), so they import neither
torch nor the rest of the app (:mod:`.cli` loads :mod:`not_flower.common.config` by name
to check values).
"""
