"""A recovery stuck at chance: the test behind the ServerApp's warning.

On a Dirichlet(0.1) partition of Fashion-MNIST the paper's NoT (first layer's weights and
bias negated) never recovered in two seeds of three: the first recovery round at the full
client learning rate left almost no unit of the next layer firing, and the model gave the
same output for every image for all 30 rounds (docs/benchmarks.md, "Dirichlet(0.1), three
seeds"). The server sees
that in the retained clients' validation accuracy: it stays at chance. The ServerApp logs a
warning, once per request, that names the settings that avoided it.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Rounds of recovery at chance before the warning.
CHANCE_ROUNDS = 3
#: How far above chance (1 / classes) still counts as chance: a model that gives one
#: class for every image scores that class's share of a client's validation set.
CHANCE_MARGIN = 0.05


def stuck_at_chance(
    val_accs: Sequence[float | None],
    num_classes: int,
    *,
    rounds: int = CHANCE_ROUNDS,
    margin: float = CHANCE_MARGIN,
) -> bool:
    """Whether the last ``rounds`` known values of a recovery's validation accuracy are all
    at chance.

    Parameters
    ----------
    val_accs : sequence of float or None
        The retained clients' validation accuracy of each recovery round since the request,
        in order (``None`` for a round without federated evaluation).
    num_classes : int
        Classes of the task; chance is ``1 / num_classes``.
    rounds : int (default: 3)
        How many known rounds must all be at chance.
    margin : float (default: 0.05)
        Accuracy up to ``1 / num_classes + margin`` counts as chance.

    Returns
    -------
    bool
        ``True`` once ``rounds`` known values exist and the last ``rounds`` of them are at
        most ``1 / num_classes + margin``.
    """
    if num_classes < 2 or rounds < 1:
        raise ValueError(f"need num_classes >= 2 and rounds >= 1, got {num_classes}, {rounds}")
    known = [v for v in val_accs if v is not None]
    recent = known[-rounds:]
    return len(recent) == rounds and all(v <= 1 / num_classes + margin for v in recent)


def first_at_chance(val_accs: Sequence[float | None], num_classes: int) -> bool:
    """Whether the recovery is stuck at chance at its latest round and was not before.

    The warning's test, from the recovery's rounds alone (the ServerApp reads them from its
    record of rounds, which a resumed run restores): :func:`stuck_at_chance` holds for
    ``val_accs`` and for none of its shorter prefixes, so it is true at one round per
    request at most.

    Parameters
    ----------
    val_accs : sequence of float or None
        The retained clients' validation accuracy of each recovery round since the
        request, in order, the latest last.
    num_classes : int
        Classes of the task.

    Returns
    -------
    bool
    """
    if not stuck_at_chance(val_accs, num_classes):
        return False
    return not any(stuck_at_chance(val_accs[:n], num_classes) for n in range(len(val_accs)))


def collapse_warning(request: int, server_round: int, val_acc: float, num_classes: int) -> str:
    """The warning's text: what was seen and the settings that avoided it."""
    return (
        f"recovery of request {request}: the retained clients' validation accuracy has stayed "
        f"at chance for {CHANCE_ROUNDS} rounds (round {server_round}: {100 * val_acc:.2f} %, "
        f"chance {100 / num_classes:.2f} %): the model may have collapsed (ReLU units that no "
        "longer fire after a full-rate first recovery round). A client learning-rate warm-up "
        "(recovery.lr-warmup-rounds = 3) or a lower recovery.lr avoided this on a "
        "Dirichlet(0.1) partition; see docs/benchmarks.md, 'Dirichlet(0.1), three seeds'"
    )
