"""The audit record: a hash-chained log of every request and the verifier.

Public modules: :mod:`.record` (the canonical layout and hashes), :mod:`.log` (appending
and checking the chain), :mod:`.verify` (checking a run folder: log, records,
checkpoints) and :mod:`.cli` (``python -m not_flower.audit verify ...``).
Imports only :mod:`not_flower.common`.
"""
