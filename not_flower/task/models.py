"""Model zoo for not-flower: small networks for 8x8, 28x28 and 32x32 images.

Every model takes a float batch of shape ``(B, C, H, W)`` and returns logits of
shape ``(B, num_classes)``.  Initialisation uses the global torch RNG, so it is
deterministic once the caller has called ``torch.manual_seed``; nothing here
seeds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MODELS", "CNN", "MLP", "build_model", "example_input", "vit_patch_size"]

MODELS: tuple[str, ...] = ("cnn", "mlp", "resnet18", "vit")


class CNN(nn.Module):
    """Small two-conv CNN (no BatchNorm), fast on CPU.

    ``conv1(C->32, 3x3, pad 1) - ReLU - conv2(32->64, 3x3, pad 1) - ReLU -
    MaxPool(2) - AdaptiveAvgPool(4x4) - Flatten - fc1(1024->128) - ReLU -
    fc2(128->num_classes)``.  Works for any input of at least 2x2 pixels.

    Parameters
    ----------
    in_channels : int
        Number of input channels ``C``.
    num_classes : int
        Number of output logits.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, num_classes)``."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.avgpool(self.pool(x))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class MLP(nn.Module):
    """Three-layer perceptron.

    ``fc1(C*H*W->256) - ReLU - fc2(256->128) - ReLU - fc3(128->num_classes)``.

    Parameters
    ----------
    in_features : int
        ``C * H * W``.
    num_classes : int
        Number of output logits.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, num_classes)``."""
        x = self.flatten(x)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _resnet18(in_channels: int, num_classes: int) -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    # Small-image stem (as for CIFAR): 3x3 stride-1 conv and no max-pool, so 8x8
    # inputs still reach layer4 at 1x1 and the adaptive avg-pool handles the rest.
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(
        model.conv1.weight, mode="fan_out", nonlinearity="relu"
    )  # as torchvision
    model.maxpool = nn.Identity()
    return model


def vit_patch_size(image_size: int) -> int:
    """Patch size used by the ``vit`` model for a square image of side ``image_size``.

    Parameters
    ----------
    image_size : int
        Height (= width) of the image.

    Returns
    -------
    int
        4 if ``image_size >= 16`` and divisible by 4 (28, 32 -> 4), else 2 if
        even (8 -> 2), else 1.
    """
    if image_size >= 16 and image_size % 4 == 0:
        return 4
    if image_size % 2 == 0:
        return 2
    return 1


def _vit(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    from torchvision.models import VisionTransformer

    c, h, w = input_shape
    if h != w:
        raise ValueError(
            f"model 'vit' needs square images, got input_shape (C, H, W) = {tuple(input_shape)}"
        )
    patch = vit_patch_size(h)
    hidden_dim = 64
    model = VisionTransformer(
        image_size=h,
        patch_size=patch,
        num_layers=4,
        num_heads=4,
        hidden_dim=hidden_dim,
        mlp_dim=128,
        num_classes=num_classes,
    )
    if c != 3:
        # torchvision's patch embedding assumes RGB; rebuild it for C channels with
        # torchvision's own initialisation (truncated normal, std = sqrt(1 / fan_in)).
        model.conv_proj = nn.Conv2d(c, hidden_dim, kernel_size=patch, stride=patch)
        nn.init.trunc_normal_(model.conv_proj.weight, std=math.sqrt(1.0 / (c * patch * patch)))
        nn.init.zeros_(model.conv_proj.bias)
    return model


def _check_shape(input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}"
        ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}")
    return shape  # type: ignore[return-value]


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build an untrained model.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`: ``"cnn"`` (default choice of the app; small,
        layers ``conv1, conv2, fc1, fc2``), ``"mlp"`` (``fc1, fc2, fc3``),
        ``"resnet18"`` (torchvision ResNet-18 with a 3x3 stride-1 stem and no
        max-pool) or ``"vit"`` (small torchvision VisionTransformer: 4 layers,
        4 heads, hidden 64, MLP 128; square images only).
    input_shape : tuple of int
        ``(C, H, W)`` of one input image, e.g. ``(1, 8, 8)``, ``(1, 28, 28)``,
        ``(3, 32, 32)``.
    num_classes : int
        Number of output logits (``>= 1``).

    Returns
    -------
    nn.Module
        The model, mapping ``(B, C, H, W)`` to ``(B, num_classes)``.  Its
        initialisation draws from the global torch RNG (seed it beforehand).

    Raises
    ------
    ValueError
        If ``name`` is unknown (the message lists :data:`MODELS`), the shape is
        invalid, ``num_classes < 1``, or ``vit`` gets a non-square shape.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    c, h, w = _check_shape(input_shape)
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    if name == "cnn":
        if h < 2 or w < 2:
            raise ValueError(
                f"model 'cnn' needs images of at least 2x2 pixels, got input_shape {(c, h, w)}"
            )
        return CNN(c, num_classes)
    if name == "mlp":
        return MLP(c * h * w, num_classes)
    if name == "resnet18":
        return _resnet18(c, num_classes)
    return _vit((c, h, w), num_classes)


def example_input(input_shape: tuple[int, int, int], batch_size: int = 2) -> torch.Tensor:
    """Return a zero batch for tracing / shape checks.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)``.
    batch_size : int, optional
        Batch size ``B`` (default 2; >= 2 keeps BatchNorm usable in train mode).

    Returns
    -------
    torch.Tensor
        ``float32`` zeros of shape ``(B, C, H, W)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return torch.zeros((batch_size, *_check_shape(input_shape)), dtype=torch.float32)
