"""Tests for not_flower.task.models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from not_flower.task.models import MODELS, build_model, example_input, vit_patch_size

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


@pytest.fixture(autouse=True)
def _few_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    yield
    torch.set_num_threads(old)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_and_one_sgd_step(name, shape):
    torch.manual_seed(0)
    num_classes = 7
    model = build_model(name, shape, num_classes)
    model.train()
    x = torch.rand(4, *shape)
    y = torch.tensor([0, 1, 2, 6])
    out = model(x)
    assert out.shape == (4, num_classes)
    assert model(example_input(shape)).shape == (2, num_classes)

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    loss = nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    opt.step()
    changed = [
        k
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert changed, "an SGD step must change some parameter"
    assert torch.isfinite(nn.functional.cross_entropy(model(x), y))


def test_cnn_layers_and_param_count():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10)
    names = [n for n, m in model.named_modules() if n]
    assert names[0] == "conv1" and isinstance(model.conv1, nn.Conv2d)
    assert next(iter(model.named_parameters()))[0] == "conv1.weight"
    assert {"conv1", "conv2", "fc1", "fc2"} <= set(names)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # conv1 320 + conv2 18,496 + fc1 131,200 + fc2 1,290
    assert _count(model) == 320 + 18_496 + 131_200 + 1_290
    # only conv1 depends on C
    assert _count(build_model("cnn", (3, 32, 32), 10)) - _count(model) == 2 * 32 * 9


def test_mlp_layers_and_param_count():
    model = build_model("mlp", (1, 28, 28), 10)
    assert [n for n, _ in model.named_children() if n.startswith("fc")] == ["fc1", "fc2", "fc3"]
    assert _count(model) == (784 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10)


def test_resnet18_stem_and_param_count():
    model = build_model("resnet18", (1, 8, 8), 10)
    assert (
        model.conv1.in_channels == 1
        and model.conv1.kernel_size == (3, 3)
        and model.conv1.stride == (1, 1)
    )
    assert isinstance(model.maxpool, nn.Identity)
    assert model.fc.out_features == 10
    assert 11_000_000 < _count(model) < 11_300_000
    # first module listed is still conv1
    assert [n for n, _ in model.named_children()][0] == "conv1"


@pytest.mark.parametrize(("shape", "patch"), [((1, 8, 8), 2), ((1, 28, 28), 4), ((3, 32, 32), 4)])
def test_vit_patch_and_channels(shape, patch):
    model = build_model("vit", shape, 10)
    assert vit_patch_size(shape[1]) == patch
    assert model.patch_size == patch and model.image_size == shape[1]
    assert model.conv_proj.in_channels == shape[0] and model.conv_proj.kernel_size == (patch, patch)
    assert 100_000 < _count(model) < 200_000


def test_vit_non_square_rejected():
    with pytest.raises(ValueError, match=r"square.*\(1, 8, 6\)"):
        build_model("vit", (1, 8, 6), 10)


def test_non_square_ok_for_other_models():
    for name in ("cnn", "mlp", "resnet18"):
        assert build_model(name, (1, 8, 6), 3)(torch.rand(2, 1, 8, 6)).shape == (2, 3)


def test_deterministic_init_given_seed():
    for name in MODELS:
        torch.manual_seed(123)
        a = build_model(name, (1, 8, 8), 10).state_dict()
        torch.manual_seed(123)
        b = build_model(name, (1, 8, 8), 10).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # and build_model does not seed by itself
    torch.manual_seed(1)
    c = build_model("cnn", (1, 8, 8), 10).conv1.weight
    d = build_model("cnn", (1, 8, 8), 10).conv1.weight
    assert not torch.equal(c, d)


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError) as err:
        build_model("lenet", (1, 8, 8), 10)
    assert "'lenet'" in str(err.value) and "cnn, mlp, resnet18, vit" in str(err.value)


@pytest.mark.parametrize("bad", [(1, 8), (0, 8, 8), "abc"])
def test_bad_input_shape(bad):
    with pytest.raises(ValueError, match="input_shape must be"):
        build_model("cnn", bad, 10)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        build_model("mlp", (1, 8, 8), 0)


def test_example_input():
    x = example_input((3, 32, 32))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and float(x.abs().sum()) == 0.0
    assert example_input((1, 8, 8), batch_size=5).shape == (5, 1, 8, 8)


def test_cnn_default_init_scale_sane():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 10)
    out = model(torch.rand(16, 1, 8, 8))
    # initial logits small and loss near log(10)
    loss = nn.functional.cross_entropy(out, torch.arange(16) % 10)
    assert abs(loss.item() - math.log(10)) < 0.5
