"""The few run-config values the data pipeline reads: :class:`DataSpec`.

The task and evaluation layers take a :class:`DataSpec`, not the whole run config: it is
small, frozen and hashable, so the per-process caches of the data
(:func:`not_flower.task.training.client_data` and friends) are keyed on exactly what
decides the data, and two runs that differ only in, say, ``recovery.rounds`` share them.
The app layer builds it from the run config (:func:`not_flower.app.specs.data_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DataSpec"]


@dataclass(frozen=True)
class DataSpec:
    """What decides every client's (and the server's) data; run-config keys in brackets.

    Parameters
    ----------
    dataset : str
        The data set's name (``dataset``).
    data_dir : str
        Folder of a local copy of the data set; empty: the default place (``data-dir``).
    train_subset, test_subset : int
        Training / test images kept (a fixed stratified subset; 0 = all)
        (``train-subset``, ``test-subset``).
    partitioner : str
        ``"iid"`` or ``"dirichlet"`` (``partitioner``).
    dirichlet_alpha : float
        Concentration of the Dirichlet partitioner (``dirichlet-alpha``).
    seed : int
        The run's seed: partitioning, validation split, poisoning, mislabelling and the
        server's share are all drawn from it (``seed``).
    val_fraction : float
        Share of each client's partition kept for validation (``val-fraction``).
    server_data_fraction : float
        Stratified share of the training set the server keeps and no client holds
        (``fukd.server-data-fraction``; 0 = none).
    backdoor_clients : tuple[str, ...]
        Partition ids of the clients that poison part of their data (``backdoor.clients``).
    backdoor_fraction : float
        Share of a backdoor client's training samples that carry the trigger
        (``backdoor.fraction``).
    backdoor_target : int
        The label the poisoned samples get (``backdoor.target``).
    backdoor_trigger_size : int
        Side of the square trigger, in pixels (``backdoor.trigger-size``).
    mislabel_clients : tuple[str, ...]
        Partition ids of the clients that mislabel part of their data
        (``mislabel.clients``).
    mislabel_fraction : float
        Share of a mislabelling client's training samples given a wrong label
        (``mislabel.fraction``).
    style_clients : tuple[str, ...]
        Partition ids of the clients whose images are inverted (``style.clients``).
    canary_clients : tuple[str, ...]
        Partition ids of the clients that plant canaries (``canary.clients``).
    canary_count : int
        Canaries a planting client adds, as many kept out (``canary.count``).
    canary_seed : int
        Seed the simulated clients' canary seeds are derived from (``canary.seed``).
    """

    dataset: str = "digits"
    data_dir: str = ""
    train_subset: int = 0
    test_subset: int = 0
    partitioner: str = "iid"
    dirichlet_alpha: float = 0.5
    seed: int = 0
    val_fraction: float = 0.1
    server_data_fraction: float = 0.0
    backdoor_clients: tuple[str, ...] = ()
    backdoor_fraction: float = 0.4
    backdoor_target: int = 0
    backdoor_trigger_size: int = 2
    mislabel_clients: tuple[str, ...] = ()
    mislabel_fraction: float = 0.3
    style_clients: tuple[str, ...] = ()
    canary_clients: tuple[str, ...] = ()
    canary_count: int = 16
    canary_seed: int = 0
