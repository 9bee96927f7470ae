"""FedEraser: rebuild the global model from stored client updates, calibrated (Liu et al. 2021).

G. Liu, X. Ma, Y. Yang, C. Wang, J. Liu, "FedEraser: Enabling Efficient Client-Level Data
Removal from Federated Learning Models", IWQoS 2021.

What the paper does
-------------------
* **During training** the server keeps the clients' updates ``U_k^t`` (local model minus
  the global model the client started from) every ``Delta t`` rounds (the retaining
  interval).
* **On a request** it rebuilds the global model along the stored rounds ``t_1 < t_2 <
  ...`` without the target: starting from the rebuilt model ``M~^{t_j}``, the remaining
  clients run *calibration training*, a short local training (``r x E`` local epochs,
  ``r`` the calibration ratio) that gives updates ``U^_k``; each stored update is then
  kept in length and turned to the calibrated direction,
  ``U~_k = |U_k| * U^_k / |U^_k|``, and aggregated,
  ``M~^{t_{j+1}} = M~^{t_j} + sum_k w_k U~_k``. The target does nothing.

Choices where the paper leaves one open (ours)
----------------------------------------------
* **Storage.** Every client's update of every retained round is written to disk in the
  run's folder (``store_dir``, not-flower: ``<out-dir>/federaser-history``): one ``.npz``
  per (round, node) with the floating-point tensors (float32, uncompressed), plus the
  global model at the start of round 1 (``initial.npz``) and an ``index.json``.
  :attr:`FedEraserUnlearner.storage_bytes` is the size of those files on disk, measured; the peak
  (before the target's files are deleted) is what the comparison reports. Rounds kept:
  ``1, 1 + Delta t, 1 + 2 Delta t, ...`` with ``Delta t = retain_interval``
  (``federaser.retain-interval``, default 1 as in the authors' code; ``N_itv`` there). Every
  client's updates are kept, not only the target's: any client may ask.
* **Per client, per tensor.** The norm and direction are taken per state-dict tensor
  ("layer") of each client's update, then aggregated with FedAvg's weights
  ``w_k = n_k / sum n`` over the clients that have both a stored and a calibrated update
  for that round (``n_k`` = the stored ``num-examples``), as the paper's formula reads.
  (The authors' code instead averages the stored client models and the calibrated client
  models first, without weights, and calibrates the averaged update; it also measures the
  stored update against the global model *after* that round. We follow the paper.)
* **First retained round.** Its clients started from the initial model, which holds
  nothing of the target; as in the authors' code, the rebuilt model after it is the
  initial model plus the weighted stored updates of the remaining clients, with no
  calibration (and no communication).
* **Calibration.** ``ceil(calibration_ratio x local_epochs)`` local epochs
  (``federaser.calibration-ratio``, default 0.5, the authors' ``forget_local_epoch_ratio``), sent as
  ``train.calibrate`` messages with ``local-epochs`` in the config, one communication
  round per retained round after the first. Remaining clients that are no longer
  connected, or fail, are left out of that round's aggregate; a round with none is
  skipped.
* **Non-float tensors** (BatchNorm's ``num_batches_tracked``) are taken from the global
  model at the request. BatchNorm running statistics are floats and rebuilt like weights.
* **After unlearning** the target's stored updates are deleted (files removed); the
  history of the others stays, so that a later request can be served (a later request
  replays the whole history, recovery rounds included, without every client forgotten so
  far).
* **Recovery.** FedEraser's output is the rebuilt model (reported as ``unlearned``, the
  method at 0 recovery rounds); the app then runs its ``recovery.rounds`` of FedAvg
  without the target like every method, so FedEraser@K rows exist too.

Requirements: storage (all clients' updates of all retained rounds), no target data, no
target participation (the *remaining* clients calibrate), no server-side data.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.supercore import log

from .not_strategy import NoT
from .replies import array_layout, check_train_reply, reply_metrics
from .unlearner import CLIENT_ONLY, Requirements, UnlearningStep
from .unlearning_step import float_keys, to_numpy, to_record

#: Message type of the calibration training (``@app.train("calibrate")``).
CALIBRATE_MESSAGE_TYPE = "train.calibrate"
INDEX_FILE = "index.json"


def calibrated_step(
    model: dict[str, np.ndarray],
    updates: list[tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]],
    keys: list[str],
) -> dict[str, np.ndarray]:
    """One FedEraser step: ``model + sum_k w_k |U_old_k| U_cal_k / |U_cal_k|`` per tensor.

    Parameters
    ----------
    model : dict[str, np.ndarray]
        The rebuilt model ``M~^{t_j}``.
    updates : list of (weight, stored update, calibrated update)
        One entry per client; weights are normalised to sum to 1.
    keys : list of str
        Tensors to update (floating point); the others are copied.

    Returns
    -------
    dict[str, np.ndarray]
        ``M~^{t_{j+1}}``.
    """
    total = float(sum(w for w, _, _ in updates))
    out = dict(model)
    if total <= 0:
        return out
    for k in keys:
        step = np.zeros(model[k].shape, dtype=np.float64)
        for w, old, cal in updates:
            cal_norm = float(np.linalg.norm(cal[k].astype(np.float64)))
            if cal_norm == 0.0:
                continue
            old_norm = float(np.linalg.norm(old[k].astype(np.float64)))
            step += (w / total) * old_norm * cal[k].astype(np.float64) / cal_norm
        out[k] = (model[k].astype(np.float64) + step).astype(model[k].dtype)
    return out


def overlay(
    model: dict[str, np.ndarray],
    updates: list[tuple[float, dict[str, np.ndarray]]],
    keys: list[str],
) -> dict[str, np.ndarray]:
    """``model + sum_k w_k U_k`` (weights normalised): FedAvg of stored updates."""
    total = float(sum(w for w, _ in updates))
    out = dict(model)
    if total <= 0:
        return out
    for k in keys:
        step = np.zeros(model[k].shape, dtype=np.float64)
        for w, u in updates:
            step += (w / total) * u[k].astype(np.float64)
        out[k] = (model[k].astype(np.float64) + step).astype(model[k].dtype)
    return out


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


class FedEraserUnlearner:
    """FedEraser as an unlearner: keeps every client's update every ``retain_interval``
    rounds (on disk); rebuilds the model on a request.

    Parameters
    ----------
    store_dir : str or Path
        Folder for the stored updates (created; a folder left by an earlier FedEraser run,
        recognised by its ``index.json``, is emptied first).
    local_epochs : int
        The clients' local epochs in training (calibration runs
        ``ceil(calibration_ratio * local_epochs)``).
    retain_interval : int (default: 1)
        Keep the updates of rounds ``1, 1 + k, 1 + 2k, ...``.
    calibration_ratio : float (default: 0.5)
        Share of the local epochs the calibration training runs, in (0, 1].
    message_type : str (default: "train.calibrate")
        Message type of the calibration training (its config carries ``local-epochs``).
    """

    name = "FedEraser"
    kinds = CLIENT_ONLY
    records_step = True
    layers: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    requirements = Requirements(
        storage="every client's update of every retained round, on disk",
        target_data=False,
        target_participation=False,
        server_data=False,
    )

    def __init__(
        self,
        *,
        store_dir: str | Path,
        local_epochs: int,
        retain_interval: int = 1,
        calibration_ratio: float = 0.5,
        message_type: str = CALIBRATE_MESSAGE_TYPE,
    ) -> None:
        if retain_interval < 1:
            raise ValueError(f"FedEraser retain_interval must be >= 1, got {retain_interval}")
        if not 0 < calibration_ratio <= 1:
            raise ValueError(
                f"FedEraser calibration_ratio must be in (0, 1], got {calibration_ratio}"
            )
        if local_epochs < 1:
            raise ValueError(f"FedEraser local_epochs must be >= 1, got {local_epochs}")
        self.store_dir = Path(store_dir)
        if self.store_dir.exists() and any(self.store_dir.iterdir()):
            if not (self.store_dir / INDEX_FILE).is_file():
                raise ValueError(
                    f"FedEraser store_dir {self.store_dir} is not empty and holds no "
                    f"{INDEX_FILE}: choose an empty or new folder"
                )
            shutil.rmtree(self.store_dir)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.local_epochs = local_epochs
        self.retain_interval = retain_interval
        self.calibration_ratio = calibration_ratio
        self.calibration_epochs = max(1, math.ceil(calibration_ratio * local_epochs))
        self.message_type = message_type
        self._index: dict[int, dict[int, dict]] = {}  # round -> node id -> {file, num_examples}
        self._initial: Path | None = None
        self._write_index()

    # ------------------------------------------------------------ storage
    @property
    def storage_bytes(self) -> int:
        """Bytes of the files kept in ``store_dir`` (measured on disk)."""
        total = 0
        for root, _, files in os.walk(self.store_dir):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except FileNotFoundError:
                    continue
        return total

    @property
    def retained_rounds(self) -> list[int]:
        """Rounds whose updates are stored."""
        return sorted(self._index)

    def stored(self, server_round: int) -> dict[int, dict]:
        """Node id -> ``{"file", "num_examples"}`` of a stored round."""
        return dict(self._index.get(server_round, {}))

    def is_retained(self, server_round: int) -> bool:
        """Whether the updates of ``server_round`` are kept."""
        return (server_round - 1) % self.retain_interval == 0

    def _write_index(self) -> None:
        data = {
            "retain_interval": self.retain_interval,
            "initial": self._initial.name if self._initial else None,
            "rounds": {
                str(r): {str(n): e for n, e in nodes.items()}
                for r, nodes in sorted(self._index.items())
            },
        }
        tmp = self.store_dir / (INDEX_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.store_dir / INDEX_FILE)

    def observe_train(
        self, server_round: int, sent: ArrayRecord, replies: list[Message], weighted_by_key: str
    ) -> None:
        """Store round 1's model sent (once) and, in a retained round, every reply's update
        against the model sent."""
        if self._initial is None:
            self._initial = self.store_dir / "initial.npz"
            _save(self._initial, to_numpy(sent))
            self._write_index()
        if not self.is_retained(server_round):
            return
        glob = to_numpy(sent)
        keys = float_keys(glob)
        folder = self.store_dir / f"round-{server_round:04d}"
        folder.mkdir(exist_ok=True)
        entries = self._index.setdefault(server_round, {})
        for msg in replies:
            node = msg.metadata.src_node_id
            local = to_numpy(next(iter(msg.content.array_records.values())))
            update = {k: (local[k] - glob[k]).astype(glob[k].dtype) for k in keys}
            path = folder / f"node-{node}.npz"
            _save(path, update)
            entries[node] = {
                "file": str(path.relative_to(self.store_dir)),
                "num_examples": float(reply_metrics(msg.content)[weighted_by_key]),
            }
        self._write_index()

    # ------------------------------------------------------------ unlearning
    def unlearn(self, step: UnlearningStep) -> ArrayRecord:
        """Rebuild the model over the retained rounds without the excluded clients."""
        rounds = [r for r in sorted(self._index) if r < step.server_round]
        step.record.update(
            retained_rounds=rounds,
            calibration_epochs=self.calibration_epochs,
            storage_bytes_before=self.storage_bytes,
        )
        if not rounds or self._initial is None:
            log(
                WARNING,
                "FedEraser: no stored history before round %d; the global model is kept",
                step.server_round,
            )
            step.record["status"] = "no history"
            return step.arrays
        model = _load(self._initial)
        keys = float_keys(model)
        first = {n: e for n, e in self._index[rounds[0]].items() if n not in step.excluded}
        model = overlay(
            model,
            [(e["num_examples"], _load(self.store_dir / e["file"])) for e in first.values()],
            keys,
        )
        per_round = [{"round": rounds[0], "clients": sorted(first), "calibrated": False}]
        for r in rounds[1:]:
            model, done = self._calibrate_round(step, r, model, keys)
            per_round.append(done)
        glob = to_numpy(step.arrays)
        for k in glob:  # non-float tensors from the model at the request
            if k not in keys:
                model[k] = glob[k]
        model = {k: model[k] for k in glob}
        self._forget_history(step.targets)
        step.record.update(rounds_rebuilt=per_round, storage_bytes_after=self.storage_bytes)
        log(
            INFO,
            "FedEraser: round %d: rebuilt over %d retained rounds (%d calibrated) without nodes %s",
            step.server_round,
            len(rounds),
            sum(1 for p in per_round if p.get("calibrated")),
            sorted(step.excluded),
        )
        return to_record(model)

    def _calibrate_round(
        self, step: UnlearningStep, r: int, model: dict[str, np.ndarray], keys: list[str]
    ) -> tuple[dict[str, np.ndarray], dict]:
        """One retained round ``r``: calibration training by the remaining clients, then the
        calibrated step; returns the model and the round's record."""
        connected = set(step.grid.get_node_ids())
        entries = {
            n: e for n, e in self._index[r].items() if n not in step.excluded and n in connected
        }
        if not entries:
            return model, {"round": r, "clients": [], "skipped": "no remaining client"}
        config = ConfigRecord(
            {
                "local-epochs": self.calibration_epochs,
                "server-round": step.server_round,
                "calibration-round": r,
            }
        )
        content = RecordDict(
            {step.arrayrecord_key: to_record(model), step.configrecord_key: config}
        )
        messages = [
            Message(content, dst_node_id=n, message_type=self.message_type) for n in entries
        ]
        layout = array_layout(step.arrays)
        updates = []
        for msg in step.send(messages, who="FedEraser"):
            node = msg.metadata.src_node_id
            reason = check_train_reply(msg.content, layout, step.weighted_by_key)
            if node not in entries or reason is not None:
                log(
                    WARNING,
                    "FedEraser: calibration reply of node %d dropped: %s",
                    node,
                    reason or "not asked",
                )
                continue
            local = to_numpy(next(iter(msg.content.array_records.values())))
            cal = {k: local[k] - model[k] for k in keys}
            old = _load(self.store_dir / entries[node]["file"])
            updates.append((entries[node]["num_examples"], old, cal))
        if not updates:
            return model, {"round": r, "clients": [], "skipped": "no calibration reply"}
        return (
            calibrated_step(model, updates, keys),
            {"round": r, "clients": sorted(n for n in entries), "calibrated": True},
        )

    def _forget_history(self, targets: list[int]) -> None:
        """Delete the targets' stored updates."""
        for nodes in self._index.values():
            for t in targets:
                entry = nodes.pop(t, None)
                if entry is not None:
                    (self.store_dir / entry["file"]).unlink(missing_ok=True)
        self._write_index()


class FedEraser(NoT):
    """FedEraser's short form: FedAvg wrapped with :class:`FedEraserUnlearner`.

    Parameters
    ----------
    store_dir, local_epochs, retain_interval, calibration_ratio, message_type
        As :class:`FedEraserUnlearner`.
    **kwargs
        As :class:`strategies.NoT`, except ``negation``.
    """

    REQUIREMENTS = FedEraserUnlearner.requirements

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        *,
        store_dir: str | Path,
        local_epochs: int,
        retain_interval: int = 1,
        calibration_ratio: float = 0.5,
        message_type: str = CALIBRATE_MESSAGE_TYPE,
        **kwargs,
    ) -> None:
        super().__init__(
            FedEraserUnlearner(
                store_dir=store_dir,
                local_epochs=local_epochs,
                retain_interval=retain_interval,
                calibration_ratio=calibration_ratio,
                message_type=message_type,
            ),
            **kwargs,
        )


__all__ = [
    "CALIBRATE_MESSAGE_TYPE",
    "FedEraser",
    "FedEraserUnlearner",
    "calibrated_step",
    "overlay",
]
