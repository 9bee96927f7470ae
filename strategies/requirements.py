"""What an unlearning method needs: :class:`Requirements` (no Flower, no torch).

Unlearners declare it (``requirements``); the app's method registry, ``results.json`` and
the comparison reports state it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Requirements:
    """What an unlearning method needs, as reports and records state it.

    Parameters
    ----------
    storage : str (default: "none")
        What the server keeps from training to be able to unlearn ("none" for NoT).
    target_data : bool (default: False)
        Whether the step uses the departing client's data.
    target_participation : bool (default: False)
        Whether the departing client must take part in the step.
    server_data : bool (default: False)
        Whether the server needs data of its own.
    """

    storage: str = "none"
    target_data: bool = False
    target_participation: bool = False
    server_data: bool = False

    def to_dict(self) -> dict:
        """JSON-ready dict of :data:`REQUIREMENT_KEYS`, in that order."""
        return {key: getattr(self, key) for key in REQUIREMENT_KEYS}


#: Requirements of a method (the fields of :class:`Requirements`, in order).
REQUIREMENT_KEYS = tuple(f.name for f in fields(Requirements))


__all__ = ["REQUIREMENT_KEYS", "Requirements"]
