"""An instance-wise request must forget something: the target's own count says whether it did.

A request to forget samples names them by their index in the target's training split.
Before round 1 the ServerApp checks the indices where it knows the split's size
(:mod:`not_flower.app.preflight`, targets named by partition id); a target named another way
(``node-id``, ``supernode-name``) is the only one that knows. Every train reply carries
``num-forgotten``, the samples the client left out; a target that left out none of the
samples it was asked to forget silently ignored ids beyond its data. This check turns that
into an error at the first round the target replies in.
"""

from __future__ import annotations


def target_keys(targets: list[dict]) -> set[str]:
    """The keys ``RoundStats.forgotten_examples`` uses for these targets.

    Parameters
    ----------
    targets : list[dict]
        An unlearning event's targets (``node_id``, optional ``identity``).

    Returns
    -------
    set[str]
        Partition id where the target reported one, else its node id, as strings.
    """
    keys = set()
    for target in targets:
        identity = target.get("identity") or {}
        pid = identity.get("partition-id")
        keys.add(str(pid if pid is not None else target["node_id"]))
    return keys


def nothing_forgotten(keys: set[str], forgotten: dict[str, int], samples: list[int]) -> str | None:
    """The error for an instance-wise request whose targets forgot no example, if so.

    Parameters
    ----------
    keys : set[str]
        The targets' keys (:func:`target_keys`).
    forgotten : dict[str, int]
        ``RoundStats.forgotten_examples`` of a round: key -> samples left out.
    samples : list[int]
        The sample ids asked for.

    Returns
    -------
    str or None
        ``None`` when a target that replied left samples out, or when none replied yet
        (judged at a later round).
    """
    replied = {k: forgotten[k] for k in keys if k in forgotten}
    if not replied or any(n > 0 for n in replied.values()):
        return None
    shown = ", ".join(map(str, samples[:10])) + (", ..." if len(samples) > 10 else "")
    return (
        f"unlearn.samples: client(s) {', '.join(sorted(replied))} forgot none of the "
        f"samples asked for ({shown}): every id is beyond the client's training split "
        "(ids are positions 0..N-1 in it); nothing was forgotten, so the run stops"
    )
