"""not-flower's ClientApp: local torch training and evaluation on the node's partition.

It answers ``train`` (SGD on its partition's training split), ``evaluate`` (its validation
split) and ``query.identity`` (its node config, so that the server can name targets by
``partition-id``), plus the handlers the method registry names (:mod:`not_flower.common.methods`;
the baselines' ``train.pgd`` and ``train.calibrate`` of :mod:`not_flower.app.baseline_client`).
Its replies also carry the identity (``identity_mod``).
Before every handler ``threads_mod`` sets torch's thread count to the run config's
``torch-threads`` (default 1: one CPU per simulated client).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from not_flower.app.specs import data_spec
from not_flower.common.config import RunConfig, parse_run_config
from not_flower.common.methods import client_handlers
from not_flower.task.canary import node_canary_seed
from not_flower.task.models import build_model
from not_flower.task.recovery_train import recovery_training
from not_flower.task.training import client_data, dataset_for, device, evaluate, train, use_threads
from strategies.identity import answer_identity, identity_mod


def threads_mod(message: Message, context: Context, call_next) -> Message:
    """Client mod: torch uses the run config's ``torch-threads`` CPU threads in every handler.

    Parameters
    ----------
    message : Message
        The message to handle.
    context : Context
        The ClientApp's context (its run config).
    call_next : Callable
        The next mod or the handler.

    Returns
    -------
    Message
        The handler's reply.
    """
    use_threads(parse_run_config(context.run_config).torch_threads)
    return call_next(message, context)


app = ClientApp(mods=[identity_mod, threads_mod])
app.query("identity")(answer_identity)
for _action, _handler in client_handlers():  # the registry's: train.pgd, train.calibrate
    app.train(_action)(_handler)


@lru_cache(maxsize=4)
def _model(name: str, input_shape: tuple, num_classes: int) -> torch.nn.Module:
    """One model object per process, reloaded with the global weights per message."""
    return build_model(name, input_shape, num_classes)


@lru_cache(maxsize=4)
def _teacher(name: str, input_shape: tuple, num_classes: int) -> torch.nn.Module:
    """A second model object per process: the distillation teacher of recovery rounds
    (built without drawing from torch's global random state)."""
    with torch.random.fork_rng():
        return build_model(name, input_shape, num_classes)


def _setup(msg: Message, context: Context):
    cfg = parse_run_config(context.run_config)
    pid = int(context.node_config["partition-id"])
    num = int(context.node_config["num-partitions"])
    spec = data_spec(cfg)
    data = dataset_for(spec)
    model = _model(cfg.model, data.input_shape, data.num_classes)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    seed = node_canary_seed(context.node_config)  # a deployed client's own secret, if set
    return cfg, client_data(spec, pid, num, canary_seed=seed), model


def kept_mask(labels: np.ndarray, config) -> np.ndarray:
    """Samples the client may still use: not of ``forget-classes``, not in ``forget-samples``.

    Parameters
    ----------
    labels : np.ndarray
        Labels of the local data (sample id = position in this array).
    config : Mapping
        The message's config (``forget-classes`` / ``forget-samples`` lists, if any).

    Returns
    -------
    np.ndarray
        Boolean mask.
    """
    mask = np.ones(len(labels), dtype=bool)
    classes = list(config.get("forget-classes", []) or [])
    if classes:
        mask &= ~np.isin(labels, np.asarray(classes, dtype=labels.dtype))
    samples = [
        int(i) for i in (config.get("forget-samples", []) or []) if 0 <= int(i) < len(labels)
    ]
    if samples:
        mask[samples] = False
    return mask


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    """Train the received model on the local training split (minus forgotten data).

    In a layer-wise recovery round (``train-keys`` in the config) only those tensors train
    and come back; with ``distill-weight`` the message's ``teacher`` joins the loss
    (:mod:`not_flower.task.recovery_train`).
    """
    cfg, data, model = _setup(msg, context)
    config = msg.content["config"]
    info = dataset_for(data_spec(cfg))
    recovery = recovery_training(
        msg.content,
        config,
        state_keys=model.state_dict().keys(),
        teacher_fn=lambda: _teacher(cfg.model, info.input_shape, info.num_classes),
    )
    server_round = int(config.get("server-round", 0))
    keep = kept_mask(data.y_train, config)
    # the server may change lr / local epochs for recovery rounds (recovery.lr, ...)
    lr = float(config.get("lr", cfg.lr))
    epochs = int(config.get("local-epochs", cfg.local_epochs))
    stats = train(
        model,
        data.x_train[keep],
        data.y_train[keep],
        epochs=epochs,
        batch_size=cfg.batch_size,
        lr=lr,
        momentum=cfg.momentum,
        seed=cfg.seed * 100_003 + server_round * 1009 + data.partition_id,
        recovery=recovery,
    )
    metrics = MetricRecord(
        {**stats, "num-examples": int(keep.sum()), "num-forgotten": int((~keep).sum())}
    )
    state = model.state_dict() if recovery is None else recovery.reply_state(model)
    content = RecordDict({"arrays": ArrayRecord(state), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local validation split (minus forgotten classes)."""
    _, data, model = _setup(msg, context)
    config = msg.content["config"]
    keep = kept_mask(data.y_val, {"forget-classes": config.get("forget-classes", [])})
    acc, loss = evaluate(model, data.x_val[keep], data.y_val[keep], dev=device())
    if not keep.any():
        acc, loss = 0.0, 0.0
    metrics = MetricRecord({"val-acc": acc, "val-loss": loss, "num-examples": int(keep.sum())})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)


__all__ = ["app", "RunConfig"]
