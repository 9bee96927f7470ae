"""not-flower: federated unlearning by weight negation (NoT) as a Flower app.

The app is made of subpackages, each one concern, each importing only the ones listed
before it (``tests/test_import_layers.py`` fails on an upward import or a cycle):

``common``
    What every layer uses: the run settings (``config``), the method registry
    (``methods``), durable files (``store``, ``outdir``), fault-injection hooks
    (``faults``) and progress lines (``progress``).
``audit``
    The hash-chained audit log, the record of forgetting's layout and the verifier
    (``python -m not_flower.audit verify``).
``task``
    Data sets, partitioning, the backdoor and mislabel scenarios, canaries, models and
    local training: what a client does.
``evaluation``
    Metrics, the membership-inference attacks and their reference models, the gap to
    retraining, and the departing client's canary check
    (``python -m not_flower.evaluation.canary_cli check``).
``app``
    The Flower app: ServerApp, ClientApp, strategy builders, the round recorder, the run
    state, requests and the stopping rule.
``experiments``
    The comparison driver (``python -m not_flower.experiments.compare``), its reports and
    in-process simulations. It imports the app; the app never imports it, and the app
    bundle (``flwr build``) leaves it out.

``launch`` stands apart: the command-line wrapper around ``flwr run`` and the local
SuperLink's process handling, standard library only and runnable as files
(``python not_flower/launch/cli.py``), so they neither import torch nor the app.
"""

__version__ = "0.1.0"
