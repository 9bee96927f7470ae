"""The server's evaluation harness: centralized measurements of the global model.

:class:`Evaluator` measures a global model on the server's copy of the data: test
accuracy and loss every round (:meth:`Evaluator.quick`: plus forget accuracy, the
backdoor's attack success rate and, for class-wise forgetting, the forgotten and other
classes' test accuracy) and, for the named models of a run (original, negated, recovered,
...), retain/forget/test accuracy and loss, MIA-efficacy, the loss attack's AUC, ASR and,
with ``mia.reference-models``, the LiRA hooks (:meth:`Evaluator.full`). The forget and
retain sets are rebuilt exactly as the clients hold their training data
(:func:`split_forget_retain`); :func:`evaluation_kind` and
:func:`evaluation_kind_from_config` say which samples an unlearning request forgets.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord

from not_flower.evaluation.metrics import attack_success_rate, evaluate_model, predict_logits
from not_flower.evaluation.reference_models import MembershipHarness, ReferenceSpec
from not_flower.task.backdoor import triggered_test_set
from not_flower.task.canary import CanarySet, check_model
from not_flower.task.spec import DataSpec
from not_flower.task.training import client_canaries, client_data, dataset_for, device, evaluate


def split_forget_retain(
    spec: DataSpec,
    num_partitions: int,
    forget_ids: set[int],
    *,
    classes: set[int] | None = None,
    samples: dict[int, set[int]] | None = None,
    all_clients: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Forget and retain sets, exactly as the clients hold their training data.

    * client-wise: forget = the targets' training data; retain = everyone else's;
    * class-wise (``classes``): forget = the targets' (every client's with
      ``all_clients``) training samples of those classes; retain = all the rest;
    * instance-wise (``samples``: partition id -> sample ids): forget = those samples
      (poisoned ones keep their poisoned labels); retain = all the rest.

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (data set, partitioning, seed).
    num_partitions : int
        Partitions of the federation.
    forget_ids : set[int]
        Partition ids of the targets.
    classes : set[int] or None
        Class-wise: the forgotten classes.
    samples : dict[int, set[int]] or None
        Instance-wise: partition id -> the forgotten sample ids.
    all_clients : bool
        Class-wise: every client forgets those classes.

    Returns
    -------
    dict
        ``{"forget": (x, y), "retain": (x, y)}``.
    """
    forget_x, forget_y, retain_x, retain_y = [], [], [], []
    for pid in range(num_partitions):
        part = client_data(spec, pid, num_partitions)
        targeted = all_clients or pid in forget_ids
        if not targeted:
            mask = np.zeros(len(part.y_train), dtype=bool)
        elif classes:
            mask = np.isin(part.y_train, list(classes))
        elif samples is not None:
            mask = np.zeros(len(part.y_train), dtype=bool)
            mask[[i for i in samples.get(pid, ()) if i < len(mask)]] = True
        else:
            mask = np.ones(len(part.y_train), dtype=bool)
        forget_x.append(part.x_train[mask])
        forget_y.append(part.y_train[mask])
        retain_x.append(part.x_train[~mask])
        retain_y.append(part.y_train[~mask])
    return {
        "forget": (np.concatenate(forget_x), np.concatenate(forget_y)),
        "retain": (np.concatenate(retain_x), np.concatenate(retain_y)),
    }


class Evaluator:
    """Centralized measurements of a global model (server-side harness).

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (data set, backdoor settings, seed).
    model : torch.nn.Module
        A model of the run's architecture, reloaded for every measurement.
    membership : ReferenceSpec or None
        The reference models of the per-example membership attack (LiRA); None or
        ``num_models`` 0: no attack (``mia.reference-models`` = 0).
    """

    def __init__(
        self,
        spec: DataSpec,
        model: torch.nn.Module,
        *,
        membership: ReferenceSpec | None = None,
    ) -> None:
        self.spec = spec
        self.model = model.to(device())
        data = dataset_for(spec)
        self.test = (data.x_test, data.y_test)
        self.sets: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self.triggered = None
        if spec.backdoor_clients:
            self.triggered = triggered_test_set(
                data.x_test, data.y_test, spec.backdoor_target, size=spec.backdoor_trigger_size
            )

        self.classes: list[int] = []
        self.canaries: CanarySet | None = None  # the targets' canaries (canary.clients)
        # per-example membership inference (LiRA) when mia.reference-models > 0
        self.membership = (
            MembershipHarness(spec, membership)
            if membership is not None and membership.num_models
            else None
        )

    def set_forget(self, num_partitions: int, forget_ids: set[int], **kind) -> None:
        """Fix the forget and retain sets (see :func:`split_forget_retain`)."""
        self.sets = split_forget_retain(self.spec, num_partitions, forget_ids, **kind)
        self.classes = sorted(kind.get("classes") or [])
        self.canaries = targets_canaries(self.spec, forget_ids)
        if self.membership is not None:
            self.membership.set_forget(num_partitions, forget_ids, **kind)

    def _class_split(self, out: dict) -> None:
        """Class-wise forgetting: test accuracy on the forgotten classes and on the others."""
        if not self.classes:
            return
        x, y = self.test
        forgotten = np.isin(y, self.classes)
        out["forgotten_classes_test_acc"] = evaluate(self.model, x[forgotten], y[forgotten])[0]
        out["other_classes_test_acc"] = evaluate(self.model, x[~forgotten], y[~forgotten])[0]

    def _load(self, arrays: ArrayRecord) -> None:
        self.model.load_state_dict(arrays.to_torch_state_dict())

    def quick(self, arrays: ArrayRecord) -> dict[str, float]:
        """Per-round numbers: test acc/loss, forget acc and ASR when known.

        Parameters
        ----------
        arrays : ArrayRecord
            The global model.

        Returns
        -------
        dict[str, float]
            ``test_acc``, ``test_loss`` and, when known, ``forget_acc``, ``asr``,
            ``forgotten_classes_test_acc`` and ``other_classes_test_acc``.
        """
        self._load(arrays)
        out = dict(zip(("test_acc", "test_loss"), evaluate(self.model, *self.test)))
        if self.sets is not None and len(self.sets["forget"][0]):
            out["forget_acc"] = evaluate(self.model, *self.sets["forget"])[0]
        if self.triggered is not None:
            logits = predict_logits(self.model, self.triggered[0], device=device())
            out["asr"] = attack_success_rate(logits, self.triggered[1], self.spec.backdoor_target)
        self._class_split(out)
        return out

    def full(self, arrays: ArrayRecord) -> dict[str, float]:
        """Retain/forget/test accuracy and loss, MIA-efficacy, loss-attack AUC, ASR.

        Parameters
        ----------
        arrays : ArrayRecord
            The global model.

        Returns
        -------
        dict[str, float]
            :func:`not_flower.evaluation.metrics.evaluate_model`'s numbers (no retain numbers before
            a request), LiRA's with ``mia.reference-models``, the class-wise split and,
            when a target planted canaries (``canary.clients``), the canary test
            (:mod:`not_flower.task.canary`): ``canary_auc``, ``canary_p``, ``canary_n``.
        """
        self._load(arrays)
        sets = self.sets or {}
        forget = sets.get("forget")
        out = evaluate_model(
            self.model,
            forget=forget if forget is not None and len(forget[0]) else None,
            retain=sets.get("retain", self.test),
            test=self.test,
            backdoor_target=self.spec.backdoor_target if self.triggered is not None else None,
            triggered_test_x=self.triggered[0] if self.triggered is not None else None,
            triggered_test_y=self.triggered[1] if self.triggered is not None else None,
            seed=self.spec.seed,
            device=device(),
        )
        if self.sets is None:  # no request: "retain" above was the test set
            out.pop("retain_acc", None)
            out.pop("retain_loss", None)
        if self.membership is not None:
            out.update(self.membership.metrics(self.model))
        self._class_split(out)
        if self.canaries is not None:
            test = check_model(self.model, self.canaries)
            out.update(
                canary_auc=test["auc"], canary_p=test["p_value"], canary_n=float(test["n_in"])
            )
        return out


def targets_canaries(spec: DataSpec, forget_ids: set[int]) -> CanarySet | None:
    """The canaries of the targets that planted some (``canary.clients``), pooled.

    In- with in-canaries, out- with out-canaries: still exchangeable for a model that saw
    none of them, so the test stays valid.

    Parameters
    ----------
    spec : DataSpec
        The run's data spec (``canary_clients``, ``canary_count``, ``canary_seed``).
    forget_ids : set[int]
        Partition ids of the targets.

    Returns
    -------
    CanarySet or None
        None when no target planted canaries.
    """
    sets = [c for c in (client_canaries(spec, pid) for pid in sorted(forget_ids)) if c is not None]
    if not sets:
        return None
    return CanarySet(
        seed=sets[0].seed,
        x_in=np.concatenate([c.x_in for c in sets]),
        y_in=np.concatenate([c.y_in for c in sets]),
        x_out=np.concatenate([c.x_out for c in sets]),
        y_out=np.concatenate([c.y_out for c in sets]),
    )


def evaluation_kind(request, partition_ids: set[int]) -> dict:
    """Keyword arguments of :func:`split_forget_retain` for an applied request.

    Parameters
    ----------
    request : UnlearningRequest
        The applied request (its ``kind``, ``classes``, ``samples`` and target rule).
    partition_ids : set[int]
        The partitions it targets.

    Returns
    -------
    dict
        ``classes`` and ``all_clients``, or ``samples``, or nothing (client-wise).
    """
    if request.kind == "class":
        return {"classes": set(request.classes), "all_clients": request.rule.values == ("*",)}
    if request.kind == "instance":
        return {"samples": {pid: set(request.samples) for pid in partition_ids}}
    return {}


def evaluation_kind_from_config(
    unlearn_clients: tuple[str, ...], kind: dict, ids: set[int]
) -> dict:
    """Keyword arguments of :func:`split_forget_retain` for the run config's requests.

    Parameters
    ----------
    unlearn_clients : tuple[str, ...]
        The run config's ``unlearn.clients`` (``"*"``: every client).
    kind : dict
        The scheduled requests' ``classes=`` / ``samples=`` arguments.
    ids : set[int]
        The partitions they target.

    Returns
    -------
    dict
        As :func:`evaluation_kind`.
    """
    if "classes" in kind:
        return {"classes": set(kind["classes"]), "all_clients": "*" in unlearn_clients}
    if "samples" in kind:
        return {"samples": {pid: set(kind["samples"]) for pid in ids}}
    return {}
