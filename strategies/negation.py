"""Which layers NoT negates: tracing a torch model into a NegationPlan (Khalil et al., CVPR 2025).

NoT unlearns by multiplying the parameters of a few selected layers of the global model
by -1 and then letting the remaining clients recover it with plain FedAvg.  This module
decides *which* tensors to negate and negates them; it has no Flower plumbing beyond
accepting and returning :class:`flwr.app.ArrayRecord`.

Policies
--------
Layers and forward order
    A *layer* is a module that owns parameters directly
    (``module.named_parameters(recurse=False)`` is non-empty), so a ``Sequential`` or a
    ResNet block is not a layer, while a ``Conv2d``, a ``BatchNorm2d``, a
    ``MultiheadAttention`` (it owns ``in_proj_weight``) and a ViT's root module (it owns
    ``class_token``) are.  Layers are ordered by the first time one of their own
    parameters is *used* during one forward pass of an example input, recorded with a
    :class:`torch.overrides.TorchFunctionMode`; a parameter is used by the torch
    function that receives it as an argument (``F.conv2d``, ``F.linear``,
    ``Tensor.expand``, ``F.multi_head_attention_forward``, ...), and calls that only read
    metadata (``.shape``, ``.dtype``, ``.dim()``) do not count.  Neither definition order
    nor ``state_dict()`` order is used: a ViT's first state_dict entries are its class
    token and position embedding, but its first layer is the patch embedding
    ``conv_proj``.  Parameters never used in the forward pass are left out.  Inside one
    fused call, layers are ordered by argument position (``MultiheadAttention`` before
    its ``out_proj``).  The tracing pass runs in eval mode with autograd on; the model's
    parameters, buffers and training flags are left exactly as they were.
Default selection
    ``"first"``: the first layer in forward order, the paper's default and the best
    setting of its ablation.  Selectors also accept module names, shell-style globs,
    integer indices in forward order (negative counts from the end), comma-separated
    combinations and lists of these; see :func:`select_layers`.  A string of digits is an
    index; use an ``int`` or a one-character glob class (``"[2]"``) when a module's name
    is itself a number.
Refusals
    Two constraints from the paper's theory are enforced, every refusal raising
    :class:`NegationError`: (1) the *output layer*, the layer owning the parameter used
    last in the forward pass (the classifier head), is never negated; (2) the selected
    layers must form an *antichain* of the computation graph: no selected layer may feed
    another, directly or through any path.  The antichain test is done with autograd on
    the traced pass: layer B depends on layer A iff the gradient of B's non-parameter
    inputs with respect to A's outputs exists.  Parallel branches (a residual block's
    conv path and its downsample conv) are an antichain.  Two selected layers used
    inside one fused call (``MultiheadAttention`` and its ``out_proj``) are refused
    because the earlier one feeds the later one inside that call.
Biases
    ``include_bias=True`` (default) negates every direct parameter of a selected layer,
    weight and bias together, which exactly negates the pre-activation output of a
    ``Linear``/``Conv`` layer.  ``include_bias=False`` negates only parameters whose
    name ends in ``"weight"`` (``weight``, and ``in_proj_weight`` etc. for
    ``MultiheadAttention``); a selected layer without such a parameter is refused.
BatchNorm after a negated layer
    ``batchnorm="keep"`` (default): normalisation parameters and running statistics are
    left as they are; the paper negates only the selected layer.  In train mode
    ``BN(-z)`` equals negating BN's ``gamma``; in eval mode the ``running_mean`` keeps
    its old sign until recovery refreshes it.  ``batchnorm="negate-running-mean"``: for
    each selected layer whose output goes straight into a batch-norm call (the next torch
    call that takes that output tensor is ``batch_norm``), that BN's ``running_mean``
    buffer is negated too, so that the eval-mode model computes
    ``gamma * (-(z - mu)) / sigma + beta``, the negated normalised activation, exactly as
    in train mode (exact when the layer's whole output is negated, i.e. with
    ``include_bias=True`` or a bias-free layer).  A selected normalisation layer is
    negated like any other layer.
Negating arrays
    :func:`negate` works out of place on an ``ArrayRecord``, a torch ``state_dict`` or a
    ``dict`` of numpy arrays and returns the same type: the listed keys are multiplied by
    -1 (a sign-bit flip, so negating twice gives back the exact bits, NaN payloads
    included), every other entry is the *same object* as in the input, key order is
    kept, and the input is never modified.  Keys are a set: a key listed twice is
    negated once.  Unknown and non-floating keys are refused.  Parameters shared between
    modules (tied weights) appear under every ``state_dict`` key that aliases them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .negation_arrays import (
    NegationError,
    NegationPlan,
    _key_tuple,
    _not_float,
    _unknown_key,
    negate,
    npy_payload,
)

__all__ = [
    "BATCHNORM_POLICIES",
    "Layer",
    "NegationError",
    "NegationPlan",
    "forward_layers",
    "negate",
    "negate_model_",
    "npy_payload",
    "plan_negation",
    "select_layers",
]

#: Allowed values of ``plan_negation(..., batchnorm=...)``.
BATCHNORM_POLICIES: tuple[str, ...] = ("keep", "negate-running-mean")

_MAX_LISTED = 20
_GLOB_CHARS = "*?["
_INDEX_RE = re.compile(r"[+-]?\d+")
_BATCH_NORM_FUNCS = frozenset(
    {
        "batch_norm",
        "native_batch_norm",
        "_batch_norm_impl_index",
        "cudnn_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
    }
)


@dataclass(frozen=True)
class Layer:
    """A module that owns parameters directly, placed in forward order.

    Parameters
    ----------
    name : str
        Module name as in ``model.named_modules()`` (``""`` for the root module).
    index : int
        Position in forward order, 0-based.
    param_keys : tuple of str
        ``state_dict`` keys of the module's direct parameters.
    kind : str
        Class name of the module, e.g. ``"Conv2d"``.
    """

    name: str
    index: int
    param_keys: tuple[str, ...]
    kind: str


# ----------------------------------------------------------------------------- tracing


@dataclass
class _Call:
    """One torch call that used layer parameters during the traced pass."""

    func_name: str
    layers: tuple[str, ...]  # owning layers, in argument order, without repeats
    out_edges: list[Any]  # autograd GradientEdges of the outputs, taken at call time
    in_roots: list[torch.Tensor]  # scalar sums of grad-requiring non-parameter inputs
    outputs: list[torch.Tensor]


@dataclass
class _Trace:
    """Everything recorded during one traced forward pass."""

    layers: list[Layer]
    output_layer: str | None
    calls: list[_Call]
    bn_running_means: dict[str, list[str]]  # layer -> running_mean keys of BNs fed directly
    module_names: dict[str, str] = field(default_factory=dict)  # name -> class name


def _iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Yield the tensors inside nested tuples, lists and dicts, in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _iter_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _iter_tensors(item)


def _func_name(func: Any) -> str:
    return str(getattr(func, "__name__", None) or func)


class _UseRecorder(TorchFunctionMode):
    """Record which parameters each torch call receives, and who consumes their outputs.

    Parameters
    ----------
    owner : dict
        ``id(param) -> owning layer name``.
    running_mean_keys : dict
        ``id(buffer) -> state_dict key`` for every ``running_mean`` buffer.
    """

    def __init__(self, owner: dict[int, str], running_mean_keys: dict[int, str]) -> None:
        super().__init__()
        self.owner = owner
        self.running_mean_keys = running_mean_keys
        self.first_use: dict[str, int] = {}  # layer -> order of first use
        self.last_layer: str | None = None
        self.calls: list[_Call] = []
        self.bn_running_means: dict[str, list[str]] = {}
        self._pending: dict[int, tuple[torch.Tensor, str]] = {}  # output id -> (tensor, layer)
        self._counter = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        tensors = list(_iter_tensors((args, kwargs)))
        used = [self.owner[id(t)] for t in tensors if id(t) in self.owner]
        roots = []
        if used:  # before the call: an in-place op must not change what we recorded
            roots = [
                t.sum()
                for t in tensors
                if id(t) not in self.owner and t.requires_grad and t.is_floating_point()
            ]
        out = func(*args, **kwargs)
        outputs = list(_iter_tensors(out))
        if outputs:  # metadata reads (.shape, .dim(), ...) neither use nor consume tensors
            self._note_consumers(func, tensors)
        if used and outputs:
            layers = tuple(dict.fromkeys(used))
            for layer in layers:
                if layer not in self.first_use:
                    self.first_use[layer] = self._counter
                    self._counter += 1
            self.last_layer = used[-1]
            edges = [torch.autograd.graph.get_gradient_edge(o) for o in outputs if o.requires_grad]
            self.calls.append(_Call(_func_name(func), layers, edges, roots, outputs))
            for o in outputs:
                self._pending[id(o)] = (o, layers[-1])
        return out

    def _note_consumers(self, func: Any, tensors: list[torch.Tensor]) -> None:
        """Resolve pending layer outputs consumed by this call.

        A batch-norm call records its ``running_mean``.
        """
        consumed = [
            self._pending.pop(id(t))[1]
            for t in tensors
            if id(t) in self._pending and self._pending[id(t)][0] is t
        ]
        if not consumed or _func_name(func) not in _BATCH_NORM_FUNCS:
            return
        keys = [self.running_mean_keys[id(t)] for t in tensors if id(t) in self.running_mean_keys]
        for layer in consumed:
            known = self.bn_running_means.setdefault(layer, [])
            known.extend(k for k in keys if k not in known)


def _alias_keys(named: Iterable[tuple[str, torch.Tensor]]) -> dict[int, list[str]]:
    """Group full names by tensor identity (a tied tensor has several state_dict keys)."""
    aliases: dict[int, list[str]] = {}
    for name, tensor in named:
        aliases.setdefault(id(tensor), []).append(name)
    return aliases


def _call_model(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, tuple):
        return model(*example_input)
    if isinstance(example_input, dict):
        return model(**example_input)
    return model(example_input)


def _trace(model: nn.Module, example_input: Any) -> _Trace:
    """Run one forward pass of ``example_input`` and record parameter use.

    The pass runs in eval mode with autograd enabled (parameters temporarily require
    grad); training flags and ``requires_grad`` flags are restored afterwards and no
    parameter or buffer is written.
    """
    owner: dict[int, str] = {}
    direct: dict[str, list[str]] = {}
    modules = dict(model.named_modules())
    for mod_name, module in modules.items():
        for p_name, param in module.named_parameters(recurse=False):
            if id(param) not in owner:
                owner[id(param)] = mod_name
                direct.setdefault(mod_name, []).append(
                    f"{mod_name}.{p_name}" if mod_name else p_name
                )
    running_mean_keys = {
        tid: keys[0]
        for tid, keys in _alias_keys(model.named_buffers(remove_duplicate=False)).items()
        if keys[0].rsplit(".", 1)[-1] == "running_mean"
    }

    training = {m: m.training for m in model.modules()}
    grad_flags = {p: p.requires_grad for p in model.parameters()}
    recorder = _UseRecorder(owner, running_mean_keys)
    try:
        model.eval()
        for p in grad_flags:
            if p.is_floating_point() or p.is_complex():
                p.requires_grad_(True)
        with torch.enable_grad(), recorder:
            _call_model(model, example_input)
    finally:
        for p, flag in grad_flags.items():
            p.requires_grad_(flag)
        for m, flag in training.items():
            m.training = flag

    order = sorted(recorder.first_use, key=recorder.first_use.__getitem__)
    layers = [
        Layer(name=name, index=i, param_keys=tuple(direct[name]), kind=type(modules[name]).__name__)
        for i, name in enumerate(order)
    ]
    return _Trace(
        layers,
        recorder.last_layer,
        recorder.calls,
        recorder.bn_running_means,
        {n: type(m).__name__ for n, m in modules.items()},
    )


def forward_layers(model: nn.Module, example_input: torch.Tensor) -> list[Layer]:
    """List the model's layers in forward order, found by running ``example_input``.

    Parameters
    ----------
    model : nn.Module
        The model; its parameters, buffers and training flags are left unchanged.
    example_input : Tensor
        One input batch (a tuple is unpacked as positional arguments).

    Returns
    -------
    list of Layer
        Modules owning parameters directly, ordered by first use of those parameters;
        modules whose parameters are never used are omitted.
    """
    return _trace(model, example_input).layers


# --------------------------------------------------------------------------- selection


def _listing(layers: Sequence[Layer]) -> str:
    names = [repr(layer.name) for layer in layers[:_MAX_LISTED]]
    more = f", ... ({len(layers)} layers)" if len(layers) > _MAX_LISTED else ""
    return ", ".join(names) + more


def _split_selector(selector: Any) -> list[str | int]:
    """Flatten a selector into stripped, non-empty items (strings or ints)."""
    if isinstance(selector, bool):
        raise NegationError(
            f"layer selector must be a string, an int or a list of them, got {selector!r}"
        )
    if isinstance(selector, (int, np.integer)):
        return [int(selector)]
    if isinstance(selector, str):
        return [item.strip() for item in selector.split(",") if item.strip()]
    if isinstance(selector, Sequence):
        items: list[str | int] = []
        for item in selector:
            if isinstance(item, (str, int, np.integer)) and not isinstance(item, bool):
                items.extend(_split_selector(item))
            else:
                raise NegationError(
                    f"layer selector items must be strings or ints, got {item!r} in {selector!r}"
                )
        return items
    raise NegationError(
        f"layer selector must be a string, an int or a list of them, got {selector!r}"
    )


def _by_index(layers: Sequence[Layer], index: int, item: Any) -> Layer:
    n = len(layers)
    if not -n <= index < n:
        raise NegationError(
            f"layer index {item!r} is out of range: valid indices are {-n}..{n - 1} "
            f"for the {n} layers in forward order"
        )
    return layers[index]


def _no_match(
    item: str, layers: Sequence[Layer], module_names: Mapping[str, str] | Iterable[str] | None
) -> NegationError:
    names = set(module_names or ())
    is_glob = any(c in item for c in _GLOB_CHARS)
    hits = sorted(n for n in names if (fnmatch.fnmatchcase(n, item) if is_glob else n == item))
    if hits:
        shown = ", ".join(repr(h) for h in hits[:5]) + (", ..." if len(hits) > 5 else "")
        return NegationError(
            f"layer selector {item!r} names module(s) {shown} that own no parameters used in "
            "forward; a layer is a module with its own parameters, e.g. a Conv2d or Linear "
            f"(try a glob such as {item + '.*'!r}); available layers in forward order: "
            f"{_listing(layers)}"
        )
    return NegationError(
        f"layer selector {item!r} matches no layer; available layers in forward order: "
        f"{_listing(layers)}"
    )


def _resolve(
    item: str | int, layers: Sequence[Layer], module_names: Mapping[str, str] | Iterable[str] | None
) -> list[Layer]:
    if isinstance(item, int):
        return [_by_index(layers, item, item)]
    if item == "first":
        return [layers[0]]
    if _INDEX_RE.fullmatch(item):
        layer = _by_index(layers, int(item), item)
        named = [lay for lay in layers if lay.name == item]
        if named and named[0] is not layer:
            raise NegationError(
                f"layer selector {item!r} is ambiguous: index {item} is {layer.name!r} but a "
                f"layer is also named {item!r}; use the int {int(item)} for the index or the "
                f"glob {'[' + item[0] + ']' + item[1:]!r} for the name"
            )
        return [layer]
    if any(c in item for c in _GLOB_CHARS):
        matched = [lay for lay in layers if fnmatch.fnmatchcase(lay.name, item)]
    else:
        matched = [lay for lay in layers if lay.name == item]
    if not matched:
        raise _no_match(item, layers, module_names)
    return matched


def select_layers(
    layers: list[Layer],
    selector: str | int | Sequence[str | int],
    *,
    module_names: Mapping[str, str] | Iterable[str] | None = None,
) -> list[Layer]:
    """Pick layers by name, glob, index or a combination of these.

    Parameters
    ----------
    layers : list of Layer
        Layers in forward order, as returned by :func:`forward_layers`.
    selector : str or int or sequence of str or int
        ``"first"`` (layer 0); an exact module name (``"features.0"``); a shell-style
        glob matched with :func:`fnmatch.fnmatchcase` (``"layer1.*.conv1"``); an index in
        forward order, as an ``int`` or a string of digits, negative from the end
        (``-2``, ``"-2"``); a comma-separated string of these (``"conv1, 2"``) or a list
        of them.  Whitespace around items is stripped.
    module_names : iterable of str, optional
        Every module name of the model, only used to explain a name that exists but owns
        no parameters used in forward.

    Returns
    -------
    list of Layer
        Selected layers without duplicates, in forward order.

    Raises
    ------
    NegationError
        Empty selector, an item matching no layer (the message lists available layers),
        an index out of range, an ambiguous digit string, or a module that owns no
        parameters used in forward.
    """
    items = _split_selector(selector)
    if not items:
        raise NegationError(
            f"empty layer selector {selector!r}: give 'first', a module name, "
            "a glob, an index or a comma-separated list of these"
        )
    if not layers:
        raise NegationError(
            f"cannot select {selector!r}: the model has no layers with parameters used in forward"
        )
    chosen: dict[int, Layer] = {}
    for item in items:
        for layer in _resolve(item, layers, module_names):
            chosen[layer.index] = layer
    return [chosen[i] for i in sorted(chosen)]


# ------------------------------------------------------------------------------ checks


def _feeds(trace: _Trace, upstream: str, downstream: str) -> bool:
    """True iff some input of a ``downstream`` call depends on an output of ``upstream``."""
    edges = [e for call in trace.calls if upstream in call.layers for e in call.out_edges]
    roots = [r for call in trace.calls if downstream in call.layers for r in call.in_roots]
    if not edges or not roots:
        return False
    grads = torch.autograd.grad(roots, edges, allow_unused=True, retain_graph=True)
    return any(g is not None for g in grads)


def _check_antichain(trace: _Trace, selected: Sequence[Layer]) -> None:
    names = {layer.name for layer in selected}
    for call in trace.calls:
        fused = [name for name in call.layers if name in names]
        if len(fused) > 1:
            index = {layer.name: layer.index for layer in selected}
            first, second = sorted(fused, key=index.__getitem__)[:2]
            raise NegationError(
                f"{first!r} feeds {second!r} (both are used inside one fused call to "
                f"{call.func_name}): negated layers must form an antichain (no selected "
                "layer upstream of another)"
            )
    for a in selected:
        for b in selected:
            if a is not b and _feeds(trace, a.name, b.name):
                raise NegationError(
                    f"{a.name!r} feeds {b.name!r}: negated layers must form an antichain "
                    "(no selected layer upstream of another)"
                )


def _selector_text(selector: Any) -> str:
    if isinstance(selector, (str, int)):
        return str(selector)
    try:
        return ", ".join(str(item) for item in selector)
    except TypeError:
        return repr(selector)


def plan_negation(
    model: nn.Module,
    example_input: torch.Tensor,
    selector: str | int | Sequence[str | int] = "first",
    *,
    include_bias: bool = True,
    batchnorm: str = "keep",
) -> NegationPlan:
    """Select layers to negate, check NoT's constraints and list the keys to negate.

    Parameters
    ----------
    model : nn.Module
        The model (left unchanged).
    example_input : Tensor
        One input batch used to trace the forward pass.
    selector : str or int or sequence of str or int, default "first"
        Which layers; see :func:`select_layers`.
    include_bias : bool, default True
        Negate all direct parameters of each selected layer (True) or only those whose
        name ends in ``"weight"`` (False).
    batchnorm : {"keep", "negate-running-mean"}, default "keep"
        With ``"negate-running-mean"``, the ``running_mean`` of a batch norm fed directly
        by a selected layer is negated as well.

    Returns
    -------
    NegationPlan
        Selected layer names and the ``state_dict`` keys to negate, in forward order.

    Raises
    ------
    NegationError
        Bad selector or policy, a selection containing the output layer, a selection
        that is not an antichain, or (with ``include_bias=False``) a layer without weight.
    """
    if batchnorm not in BATCHNORM_POLICIES:
        raise NegationError(
            f"batchnorm policy {batchnorm!r} is not one of {', '.join(BATCHNORM_POLICIES)}"
        )
    if not isinstance(include_bias, (bool, np.bool_)):
        raise NegationError(f"include_bias must be True or False, got {include_bias!r}")
    trace = _trace(model, example_input)
    selected = select_layers(trace.layers, selector, module_names=trace.module_names)
    for layer in selected:
        if layer.name == trace.output_layer:
            raise NegationError(
                f"{layer.name!r} is the output layer; NoT never negates the output layer "
                "(choose earlier layers, e.g. 'first')"
            )
    _check_antichain(trace, selected)

    param_aliases = _alias_keys(model.named_parameters(remove_duplicate=False))
    params = dict(model.named_parameters(remove_duplicate=False))
    keys: dict[str, None] = {}
    for layer in selected:
        chosen = [
            k for k in layer.param_keys if include_bias or k.rsplit(".", 1)[-1].endswith("weight")
        ]
        if not chosen:
            raise NegationError(
                f"layer {layer.name!r} ({layer.kind}) has no weight parameter to negate with "
                f"include_bias=False; its parameters are {', '.join(layer.param_keys)}"
            )
        for key in chosen:
            keys.update(dict.fromkeys(param_aliases[id(params[key])]))
        if batchnorm == "negate-running-mean":
            keys.update(dict.fromkeys(trace.bn_running_means.get(layer.name, [])))
    return NegationPlan(
        layers=tuple(layer.name for layer in selected),
        keys=tuple(keys),
        selector=_selector_text(selector),
        include_bias=bool(include_bias),
        batchnorm=batchnorm,
    )


def negate_model_(model: nn.Module, plan: NegationPlan) -> nn.Module:
    """Negate the plan's keys of ``model`` in place.

    Parameters
    ----------
    model : nn.Module
        Model whose parameters (and buffers, for the running-mean policy) are negated.
    plan : NegationPlan
        The plan; its keys must be ``model.state_dict()`` keys.

    Returns
    -------
    nn.Module
        ``model`` itself.

    Raises
    ------
    NegationError
        A key is not in the model's ``state_dict`` or is not floating point; nothing is
        changed in that case.
    """
    state = model.state_dict(keep_vars=True)
    targets: dict[int, torch.Tensor] = {}
    for key in _key_tuple(plan.keys):
        if key not in state:
            raise _unknown_key(key, state.keys())
        tensor = state[key]
        if not tensor.is_floating_point():
            raise _not_float(key, tensor.dtype)
        targets[id(tensor)] = tensor  # tied parameters are negated once
    with torch.no_grad():
        for tensor in targets.values():
            tensor.neg_()
    return model
