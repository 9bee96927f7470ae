"""The user's model."""

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16 * 4 * 4, 10)  # defined first, used last
        self.conv = nn.Conv2d(1, 16, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.head(nn.functional.max_pool2d(x, 2).flatten(1))
