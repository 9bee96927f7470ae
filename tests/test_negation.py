"""Tests for strategies.negation: forward order, selectors, refusals and negation properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from flwr.app import Array, ArrayRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn
from torch.nn import functional as F

from strategies.negation import (
    BATCHNORM_POLICIES,
    Layer,
    NegationError,
    NegationPlan,
    forward_layers,
    negate,
    negate_model_,
    plan_negation,
    select_layers,
)


# --------------------------------------------------------------------------- #
# small models
# --------------------------------------------------------------------------- #
class Reordered(nn.Module):
    """Head defined (and in state_dict) before the conv, but the conv runs first."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8 * 4 * 4, 5)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 4)
        return self.head(torch.flatten(x, 1))


class Chain(nn.Module):
    """conv1 -> conv2 -> conv3 -> fc, plus an unused Linear and a parameter-free module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.unused = nn.Linear(2, 2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.act(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


class TwoBranch(nn.Module):
    """Two parallel convs on the same input, summed, then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 8, 3, padding=1)
        self.right = nn.Conv2d(3, 8, 1)
        self.merge = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.merge(F.relu(self.left(x)) + self.right(x)))
        return self.fc(x.mean(dim=(2, 3)))


class ConvBN(nn.Module):
    """conv -> bn -> relu -> fc, with non-trivial BN statistics and affine parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 4)
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.randn(6))
            self.bn.running_var.copy_(torch.rand(6) + 0.5)
            self.bn.weight.copy_(torch.randn(6))
            self.bn.bias.copy_(torch.randn(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


class Attention(nn.Module):
    """Linear embedding -> MultiheadAttention -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h, _ = self.attn(h, h, h, need_weights=False)
        return self.head(h.mean(dim=1))


class Digits(nn.Module):
    """A root Sequential-like module whose children are named by digits.

    Its first child has no parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 6))
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().numpy().tobytes()


def _state_bits(model: nn.Module) -> dict[str, bytes]:
    return {k: _bits(v) for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    )


IMG = _x(2, 3, 32, 32)
SMALL = _x(2, 3, 8, 8)


# --------------------------------------------------------------------------- #
# forward order
# --------------------------------------------------------------------------- #
def test_forward_order_is_found_by_running_not_by_definition():
    model = Reordered()
    assert list(model.state_dict())[0] == "head.weight"
    layers = forward_layers(model, SMALL)
    assert layers == [
        Layer("conv", 0, ("conv.weight", "conv.bias"), "Conv2d"),
        Layer("head", 1, ("head.weight", "head.bias"), "Linear"),
    ]
    plan = plan_negation(model, SMALL)
    assert plan.layers == ("conv",) and plan.keys == ("conv.weight", "conv.bias")
    with pytest.raises(NegationError, match="'head' is the output layer"):
        plan_negation(model, SMALL, "head")


def test_unused_and_parameter_free_modules_are_not_layers():
    names = [layer.name for layer in forward_layers(Chain(), SMALL)]
    assert names == ["conv1", "conv2", "conv3", "fc"]


def test_vit_first_layer_is_patch_embedding(vit):
    assert list(vit.state_dict())[:2] == ["class_token", "conv_proj.weight"]
    layers = forward_layers(vit, IMG)
    assert [(layer.name, layer.kind) for layer in layers[:3]] == [
        ("conv_proj", "Conv2d"),
        ("", "VisionTransformer"),
        ("encoder", "Encoder"),
    ]
    assert layers[1].param_keys == ("class_token",)
    assert layers[2].param_keys == ("encoder.pos_embedding",)
    attn = "encoder.layers.encoder_layer_0.self_attention"
    names = [layer.name for layer in layers]
    assert names.index(attn) + 1 == names.index(attn + ".out_proj")
    assert names[-1] == "heads.head"
    assert [layer.index for layer in layers] == list(range(len(layers)))
    assert plan_negation(vit, IMG).keys == ("conv_proj.weight", "conv_proj.bias")


def test_resnet18_order(resnet):
    layers = forward_layers(resnet, IMG)
    names = [layer.name for layer in layers]
    assert names[:4] == ["conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1"]
    assert names[-1] == "fc"
    assert len(names) == len({k.rsplit(".", 1)[0] for k, _ in resnet.named_parameters()})
    # the downsample path of layer2.0 is used after the main path's bn2
    assert names.index("layer2.0.bn2") < names.index("layer2.0.downsample.0")


def test_mha_and_out_proj_are_separate_layers_in_order():
    layers = forward_layers(Attention(), _x(2, 5, 4))
    assert [(layer.name, layer.param_keys) for layer in layers] == [
        ("embed", ("embed.weight", "embed.bias")),
        ("attn", ("attn.in_proj_weight", "attn.in_proj_bias")),
        ("attn.out_proj", ("attn.out_proj.weight", "attn.out_proj.bias")),
        ("head", ("head.weight", "head.bias")),
    ]


def test_tracing_leaves_model_untouched(resnet):
    model = ConvBN()
    model.train()
    model.bn.eval()  # mixed flags must come back as they were
    frozen = model.fc.weight
    frozen.requires_grad_(False)
    before = _state_bits(model)
    plan_negation(model, SMALL, batchnorm="negate-running-mean")
    assert _state_bits(model) == before
    assert model.training and model.conv.training and not model.bn.training
    assert not frozen.requires_grad and model.conv.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())

    resnet.train()
    before = _state_bits(resnet)
    forward_layers(resnet, IMG)
    assert _state_bits(resnet) == before  # BN running stats and num_batches_tracked unchanged
    assert resnet.training and all(m.training for m in resnet.modules())


# --------------------------------------------------------------------------- #
# selectors
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def resnet_layers(resnet) -> list[Layer]:
    return forward_layers(resnet, IMG)


def _names(layers: list[Layer]) -> list[str]:
    return [layer.name for layer in layers]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("first", ["conv1"]),
        ("layer2.0.conv1", ["layer2.0.conv1"]),
        ("layer1.*.conv1", ["layer1.0.conv1", "layer1.1.conv1"]),
        (
            "layer?.0.downsample.[0]",
            ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"],
        ),
        (2, ["layer1.0.conv1"]),
        (-1, ["fc"]),
        (-2, ["layer4.1.bn2"]),
        ("-2", ["layer4.1.bn2"]),
        ("2", ["layer1.0.conv1"]),
        ("conv1, 2", ["conv1", "layer1.0.conv1"]),
        (" 2 ,conv1 ", ["conv1", "layer1.0.conv1"]),
        (["layer1.0.conv1", 0], ["conv1", "layer1.0.conv1"]),
        (["first", "conv1", 0, "0", "c*1"], ["conv1"]),
        (
            "layer1.0.conv1, layer1.0.*, 2",
            ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv2", "layer1.0.bn2"],
        ),
    ],
)
def test_selectors(resnet_layers, selector, expected):
    assert _names(select_layers(resnet_layers, selector)) == expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("", "empty layer selector"),
        (" , ", "empty layer selector"),
        ([], "empty layer selector"),
        ("conv9", "'conv9' matches no layer; available layers in forward order: 'conv1', 'bn1'"),
        ("layer9.*", "'layer9.*' matches no layer"),
        (41, "layer index 41 is out of range: valid indices are -41..40"),
        ("-42", "layer index '-42' is out of range: valid indices are -41..40"),
        ("conv1, nope", "'nope' matches no layer"),
        (True, "True"),
        ([1.5], "1.5"),
        (None, "None"),
    ],
)
def test_selector_errors(resnet_layers, selector, message):
    with pytest.raises(
        NegationError,
        match=message.replace("?", r"\?")
        .replace("*", r"\*")
        .replace("[", r"\[")
        .replace(".", r"\."),
    ):
        select_layers(resnet_layers, selector)


def test_no_match_lists_at_most_twenty_layers(resnet_layers):
    with pytest.raises(NegationError) as err:
        select_layers(resnet_layers, "nope")
    listed = str(err.value).split("forward order: ")[1]
    assert listed.startswith("'conv1', 'bn1', 'layer1.0.conv1'")
    assert listed.endswith(", ... (41 layers)") and listed.count("'") == 40


def test_module_without_parameters_is_explained(resnet):
    for selector in ("layer1", "relu", "layer1.0"):
        with pytest.raises(
            NegationError, match=f"'{selector}' names module.*own no parameters used in forward"
        ):
            plan_negation(resnet, IMG, selector)
    with pytest.raises(NegationError, match="'unused'.*own no parameters used in forward"):
        plan_negation(Chain(), SMALL, "unused")


def test_digit_names_and_ambiguity():
    model = Digits()
    x = _x(2, 3, 2, 2)
    layers = forward_layers(model, x)
    assert _names(layers) == ["body.1", "body.3", "out"]
    assert _names(select_layers(layers, "body.1")) == ["body.1"]
    root = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))
    layers = forward_layers(root, _x(2, 4))
    assert _names(layers) == ["0", "2", "3"]
    assert _names(select_layers(layers, "0")) == ["0"]  # index 0 is also the layer named "0"
    with pytest.raises(NegationError, match="'2' is ambiguous: index 2 is '3'"):
        select_layers(layers, "2")
    assert _names(select_layers(layers, 2)) == ["3"]
    assert _names(select_layers(layers, "[2]")) == ["2"]


# --------------------------------------------------------------------------- #
# refusals and the antichain
# --------------------------------------------------------------------------- #
def test_output_layer_refused_even_with_others(resnet):
    for selector in ("fc", -1, "conv1, fc"):
        with pytest.raises(
            NegationError, match="'fc' is the output layer; NoT never negates the output layer"
        ):
            plan_negation(resnet, IMG, selector)


def test_sequential_layers_are_not_an_antichain():
    with pytest.raises(
        NegationError, match="'conv1' feeds 'conv2': negated layers must form an antichain"
    ):
        plan_negation(Chain(), SMALL, "conv1, conv2")
    with pytest.raises(NegationError, match="'conv1' feeds 'conv3'"):
        plan_negation(Chain(), SMALL, ["conv3", "conv1"])


def test_parallel_branches_are_an_antichain():
    model = TwoBranch()
    plan = plan_negation(model, SMALL, "left, right")
    assert plan.layers == ("left", "right")
    assert plan.keys == ("left.weight", "left.bias", "right.weight", "right.bias")
    with pytest.raises(NegationError, match="'right' feeds 'merge'"):
        plan_negation(model, SMALL, "right, merge")


def test_resnet_block_branches(resnet):
    plan = plan_negation(resnet, IMG, "layer2.0.conv1, layer2.0.downsample.0")
    assert plan.layers == ("layer2.0.conv1", "layer2.0.downsample.0")
    with pytest.raises(NegationError, match="'layer2.0.conv2' feeds 'layer3.0.downsample.0'"):
        plan_negation(resnet, IMG, "layer2.0.conv2, layer3.0.downsample.0")


def test_vit_class_token_and_patch_embedding_are_parallel(vit):
    assert plan_negation(vit, IMG, "0, 1").keys == (
        "conv_proj.weight",
        "conv_proj.bias",
        "class_token",
    )
    with pytest.raises(NegationError, match="'' feeds 'encoder'"):
        plan_negation(vit, IMG, "1, 2")


def test_fused_attention_call_is_not_an_antichain():
    with pytest.raises(
        NegationError, match="'attn' feeds 'attn.out_proj' .*multi_head_attention_forward"
    ):
        plan_negation(Attention(), _x(2, 5, 4), "attn, attn.out_proj")


def test_bad_policies_refused():
    with pytest.raises(NegationError, match="'drop'.*keep, negate-running-mean"):
        plan_negation(ConvBN(), SMALL, batchnorm="drop")
    with pytest.raises(NegationError, match="include_bias must be True or False, got 'no'"):
        plan_negation(ConvBN(), SMALL, include_bias="no")
    with pytest.raises(
        NegationError, match="'' .*VisionTransformer.*no weight parameter.*class_token"
    ):
        vit = torchvision.models.VisionTransformer(
            image_size=8,
            patch_size=4,
            num_layers=1,
            num_heads=1,
            hidden_dim=8,
            mlp_dim=8,
            num_classes=2,
        )
        plan_negation(vit, _x(1, 3, 8, 8), 1, include_bias=False)


# --------------------------------------------------------------------------- #
# negation properties
# --------------------------------------------------------------------------- #
def test_negating_twice_restores_model_bit_for_bit(resnet):
    model = ConvBN()
    before = _state_bits(model)
    plan = plan_negation(model, SMALL, batchnorm="negate-running-mean")
    negate_model_(model, plan)
    after = _state_bits(model)
    assert {k for k in before if before[k] != after[k]} == {
        "conv.weight",
        "conv.bias",
        "bn.running_mean",
    }
    assert negate_model_(model, plan) is model
    assert _state_bits(model) == before


def test_negate_changes_only_selected_keys_and_shares_the_rest(resnet):
    state = resnet.state_dict()
    plan = plan_negation(resnet, IMG, "layer2.0.conv1, layer2.0.downsample.[0]")
    out = negate(state, plan.keys)
    assert type(out) is type(state) and list(out) == list(state)
    assert out._metadata is state._metadata  # load_state_dict keeps working
    for key, value in state.items():
        if key in plan.keys:
            assert torch.equal(out[key], -value) and out[key] is not value
        else:
            assert out[key] is value
    assert plan.keys == ("layer2.0.conv1.weight", "layer2.0.downsample.0.weight")
    assert torch.equal(resnet.state_dict()["layer2.0.conv1.weight"], state["layer2.0.conv1.weight"])
    assert plan.apply(state).keys() == out.keys()


def test_predictions_change_after_negating_first_layer():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    x = _x(256, 3, 4, 4, seed=3)
    plan = plan_negation(model, x[:2])
    assert plan.layers == ("1",)
    with torch.no_grad():
        before = model(x).argmax(1)
        negate_model_(model, plan)
        after = model(x).argmax(1)
    assert before.unique().numel() > 5  # the untouched model is not constant
    assert (before != after).float().mean() > 0.5


def test_include_bias_false_keeps_bias():
    model = Chain()
    bias = model.conv1.bias.detach().clone()
    weight = model.conv1.weight.detach().clone()
    plan = plan_negation(model, SMALL, include_bias=False)
    assert plan.keys == ("conv1.weight",) and not plan.include_bias
    negate_model_(model, plan)
    assert torch.equal(model.conv1.bias, bias) and torch.equal(model.conv1.weight, -weight)
    mha = plan_negation(Attention(), _x(2, 5, 4), "attn", include_bias=False)
    assert mha.keys == ("attn.in_proj_weight",)
    assert plan_negation(Attention(), _x(2, 5, 4), "attn").keys == (
        "attn.in_proj_weight",
        "attn.in_proj_bias",
    )


def test_batchnorm_keep_leaves_running_mean():
    model = ConvBN()
    mean = model.bn.running_mean.clone()
    plan = plan_negation(model, SMALL, batchnorm="keep")
    assert plan.keys == ("conv.weight", "conv.bias")
    negate_model_(model, plan)
    assert torch.equal(model.bn.running_mean, mean)


def test_batchnorm_negate_running_mean_matches_train_mode_identity():
    torch.manual_seed(2)
    model = ConvBN().eval()
    x = _x(4, 3, 8, 8, seed=5)
    with torch.no_grad():
        y = model.bn(model.conv(x))
    plan = plan_negation(model, SMALL, batchnorm="negate-running-mean")
    assert plan.keys == ("conv.weight", "conv.bias", "bn.running_mean")
    assert plan.to_dict()["batchnorm"] == "negate-running-mean"
    mean = model.bn.running_mean.clone()
    negate_model_(model, plan)
    assert torch.equal(model.bn.running_mean, -mean)
    with torch.no_grad():
        y_neg = model.bn(model.conv(x))
    beta = model.bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(y_neg, 2 * beta - y, rtol=1e-5, atol=1e-5)


def test_batchnorm_policy_on_resnet(resnet):
    plan = plan_negation(resnet, IMG, "first", batchnorm="negate-running-mean")
    assert plan.keys == ("conv1.weight", "bn1.running_mean")
    # a BN is a layer like any other; its output feeds no batch norm
    assert plan_negation(resnet, IMG, "bn1", batchnorm="negate-running-mean").keys == (
        "bn1.weight",
        "bn1.bias",
    )
    assert BATCHNORM_POLICIES == ("keep", "negate-running-mean")


def test_tied_parameters_are_negated_once_under_every_key():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight
            self.out = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.b(torch.relu(self.a(x))))

    model = Tied()
    x = _x(2, 4)
    assert _names(forward_layers(model, x)) == ["a", "out"]
    plan = plan_negation(model, x)
    assert plan.keys == ("a.weight", "b.weight")
    weight = model.a.weight.detach().clone()
    negate_model_(model, plan)
    assert torch.equal(model.a.weight, -weight)  # once, not twice


def test_negate_errors():
    state = Chain().state_dict()
    with pytest.raises(
        NegationError, match="key 'conv9.weight' is not in the arrays .*'conv1.weight'"
    ):
        negate(state, ["conv1.weight", "conv9.weight"])
    ints = {"w": np.ones(3), "n": np.arange(3)}
    with pytest.raises(NegationError, match="key 'n' has dtype int64"):
        negate(ints, ["n"])
    with pytest.raises(NegationError, match="'bn.num_batches_tracked' has dtype torch.int64"):
        negate(ConvBN().state_dict(), ["bn.num_batches_tracked"])
    with pytest.raises(NegationError, match="key 'x' has dtype int32"):
        negate(ArrayRecord({"x": Array(np.arange(3, dtype=np.int32))}), ["x"])
    with pytest.raises(NegationError, match="list"):
        negate([np.ones(2)], ["0"])
    model = ConvBN()
    before = _state_bits(model)
    with pytest.raises(NegationError, match="'nope'"):
        negate_model_(model, NegationPlan(layers=(), keys=("conv.weight", "nope")))
    with pytest.raises(NegationError, match="num_batches_tracked"):
        negate_model_(
            model, NegationPlan(layers=(), keys=("conv.weight", "bn.num_batches_tracked"))
        )
    assert _state_bits(model) == before  # nothing changed on refusal


def test_arrayrecord_round_trip():
    model = ConvBN()
    state = model.state_dict()
    record = ArrayRecord(state)
    plan = plan_negation(model, SMALL, batchnorm="negate-running-mean")
    out = plan.apply(record)
    assert isinstance(out, ArrayRecord) and out is not record
    assert list(out.keys()) == list(record.keys())
    for key in record:
        if key not in plan.keys:
            assert out[key] is record[key]
    back = out.to_torch_state_dict()
    for key, value in state.items():
        expected = -value if key in plan.keys else value
        assert _bits(back[key]) == _bits(expected), key
    # the input record is unchanged and double negation restores the exact bytes
    assert all(_bits(v) == _bits(state[k]) for k, v in record.to_torch_state_dict().items())
    twice = negate(out, plan.keys)
    assert all(twice[k].data == record[k].data for k in record)
    loaded = ConvBN()
    loaded.load_state_dict(back)
    negate_model_(model, plan)
    assert _state_bits(loaded) == _state_bits(model)


def test_plan_to_dict_is_json():
    import json

    plan = plan_negation(TwoBranch(), SMALL, ["left", "right"], include_bias=False)
    data = json.loads(json.dumps(plan.to_dict()))
    assert data == {
        "layers": ["left", "right"],
        "keys": ["left.weight", "right.weight"],
        "selector": "left, right",
        "include_bias": False,
        "batchnorm": "keep",
    }


def test_nan_and_signed_zero_round_trip():
    values = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45], dtype=np.float32)
    values.view(np.uint32)[4] = 0x7FC00123  # a NaN with a payload
    for arrays in ({"v": values}, {"v": torch.from_numpy(values.copy())}, ArrayRecord([values])):
        key = "v" if "v" in arrays else "0"
        once = negate(arrays, [key])
        twice = negate(once, key)
        to_np = (lambda a: a.numpy()) if isinstance(arrays, ArrayRecord) else np.asarray
        assert to_np(twice[key]).tobytes() == values.tobytes()
        assert (to_np(once[key]).view(np.uint32) == values.view(np.uint32) ^ 0x80000000).all()


# --------------------------------------------------------------------------- #
# hypothesis: negate is an involution touching only the given keys
# --------------------------------------------------------------------------- #
_float_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    elements={"allow_nan": True, "allow_infinity": True, "allow_subnormal": True},
)


@settings(max_examples=60, deadline=None)
@given(
    arrays=st.dictionaries(
        st.text("abcdefgh.", min_size=1, max_size=6), _float_arrays, min_size=1, max_size=6
    ),
    data=st.data(),
    container=st.sampled_from(["numpy", "torch", "arrayrecord"]),
)
def test_negate_is_an_involution_on_given_keys(arrays, data, container):
    names = list(arrays)
    keys = data.draw(st.lists(st.sampled_from(names), max_size=len(names)), label="keys")
    if container == "torch":
        arrays = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    elif container == "arrayrecord":
        arrays = ArrayRecord({k: Array(v) for k, v in arrays.items()})

    def raw(value) -> np.ndarray:
        return value.numpy() if isinstance(value, (Array, torch.Tensor)) else value

    before = {k: raw(v).tobytes() for k, v in arrays.items()}
    once = negate(arrays, keys)
    twice = negate(once, keys)
    assert type(once) is type(arrays) and list(once) == names and list(twice) == names
    for name in names:
        assert raw(arrays[name]).tobytes() == before[name]  # input untouched
        assert raw(twice[name]).tobytes() == before[name]  # involution, bit for bit
        if name in keys:
            a, b = raw(arrays[name]), raw(once[name])
            assert a.dtype == b.dtype and a.shape == b.shape
            uint = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
            sign = uint(1) << uint(8 * a.dtype.itemsize - 1)
            assert (b.view(uint) == (a.view(uint) ^ sign)).all()
        else:
            assert once[name] is arrays[name] and twice[name] is arrays[name]


# --------------------------------------------------------------------------- #
# reading .npy payloads in place (negation fast path, reply validation)
# --------------------------------------------------------------------------- #
def test_npy_payload_is_a_zero_copy_view_of_c_ordered_arrays():
    from flwr.app import Array

    from strategies.negation import npy_payload

    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    array = Array(values)
    header, view = npy_payload(array)
    assert view.tolist() == values.ravel().tolist() and view.dtype == np.float32
    assert not view.flags.writeable  # a view of the immutable bytes, not a copy
    assert array.data.startswith(header) and len(header) + view.nbytes == len(array.data)
    ints = npy_payload(Array(np.arange(5, dtype=np.int64)))
    assert ints is not None and ints[1].tolist() == [0, 1, 2, 3, 4]
    # anything unusual goes to the general path
    assert npy_payload(Array(np.asfortranarray(values))) is None
    bad = Array(dtype=array.dtype, shape=(3, 5), stype=array.stype, data=array.data)
    assert npy_payload(bad) is None  # payload length does not match the shape
    other = Array(dtype="float64", shape=(3, 4), stype=array.stype, data=array.data)
    assert npy_payload(other) is None  # header dtype disagrees with the Array's


@pytest.mark.parametrize(
    "values, finite",
    [
        (np.ones((4, 4), dtype=np.float32), True),
        (np.array([1.0, np.nan], dtype=np.float32), False),
        (np.array([[1.0], [-np.inf]], dtype=np.float64), False),
        (np.asfortranarray(np.array([[1.0, 2.0], [np.inf, 0.0]], dtype=np.float32)), False),
        (np.array([1, 2, 3], dtype=np.int64), True),
    ],
)
def test_all_finite(values, finite):
    from flwr.app import Array

    from strategies.not_strategy import all_finite

    assert all_finite(Array(values)) is finite
