"""Client side of the baselines: the handlers not-flower's ClientApp registers for them.

The method registry (:mod:`not_flower.common.methods`) names them per method; the ClientApp
registers each as ``@app.train(action)``:

* ``train.pgd`` (:func:`pgd_fn`): PGD's target runs projected gradient ascent on its own
  training split inside the ball the server sent (:mod:`strategies.pgd`);
* ``train.calibrate`` (:func:`calibrate_fn`): FedEraser's calibration training, ordinary
  local SGD for the ``local-epochs`` the message asks for (:mod:`strategies.federaser`).

FUKD needs nothing from the clients (it works on the server). Both handlers reply like
``train``: the model (ArrayRecord ``"arrays"``) and a MetricRecord with ``num-examples``
and a ``*-seconds`` entry (counted as client compute).
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

from not_flower.app.specs import data_spec
from not_flower.common.config import parse_run_config
from not_flower.task.canary import node_canary_seed
from not_flower.task.models import build_model
from not_flower.task.training import client_data, dataset_for, device, train
from strategies.pgd_ascent import projected_gradient_ascent


@lru_cache(maxsize=4)
def _model(name: str, input_shape: tuple, num_classes: int) -> torch.nn.Module:
    return build_model(name, input_shape, num_classes)


def _setup(context: Context):
    cfg = parse_run_config(context.run_config)
    spec = data_spec(cfg)
    data = dataset_for(spec)
    part = client_data(
        spec,
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
        canary_seed=node_canary_seed(context.node_config),
    )
    return cfg, part, _model(cfg.model, data.input_shape, data.num_classes)


def pgd_fn(msg: Message, context: Context) -> Message:
    """Projected gradient ascent on the local training split (PGD's target).

    The message holds ``"reference"`` (the ball's centre, ``w_ref``), optionally
    ``"arrays"`` (a start point) and ``"config"`` with ``pgd-radius``, ``pgd-keys``,
    ``pgd.epochs``, ``pgd.lr``, ``pgd-momentum``, ``pgd-clip``, ``pgd.stop-accuracy`` and
    ``pgd-seed``.
    """
    cfg, data, model = _setup(context)
    content = msg.content
    config = content["config"]
    reference = content["reference"].to_torch_state_dict()
    start = content["arrays"].to_torch_state_dict() if "arrays" in content.array_records else None
    t0 = time.process_time()  # CPU seconds, as task.train reports
    stats = projected_gradient_ascent(
        model,
        reference,
        data.x_train,
        data.y_train,
        radius=float(config["pgd-radius"]),
        keys=list(config["pgd-keys"]),
        epochs=int(config["pgd-epochs"]),
        lr=float(config["pgd-lr"]),
        momentum=float(config.get("pgd-momentum", cfg.momentum)),
        batch_size=cfg.batch_size,
        clip=float(config.get("pgd-clip", 1.0)),
        stop_accuracy=float(config["pgd-stop-accuracy"]),
        seed=int(config.get("pgd-seed", cfg.seed)) + data.partition_id,
        start=start,
        device=device(),
    )
    metrics = MetricRecord(
        {**stats, "num-examples": int(len(data.y_train)), "pgd-seconds": time.process_time() - t0}
    )
    return Message(
        RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg
    )


def calibrate_fn(msg: Message, context: Context) -> Message:
    """FedEraser's calibration: local SGD for ``config["local-epochs"]`` epochs."""
    cfg, data, model = _setup(context)
    config = msg.content["config"]
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    epochs = int(config.get("local-epochs", cfg.local_epochs))
    seed = (
        cfg.seed * 100_003
        + int(config.get("server-round", 0)) * 1009
        + int(config.get("calibration-round", 0)) * 7
        + data.partition_id
        + 50_000
    )
    stats = train(
        model,
        data.x_train,
        data.y_train,
        epochs=epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        momentum=cfg.momentum,
        seed=seed,
    )
    metrics = MetricRecord(
        {**stats, "num-examples": int(len(data.y_train)), "calibration-epochs": epochs}
    )
    return Message(
        RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg
    )


__all__ = ["calibrate_fn", "pgd_fn"]
