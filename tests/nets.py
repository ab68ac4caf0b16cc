"""Tiny networks for brute-force tests of groups, masks, statistics and protocols."""

from __future__ import annotations

import torch
from torch import nn


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give BN layers non-trivial statistics and affine parameters (eval mode)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)
    return model.eval()


class ChainNet(nn.Module):
    """conv-BN-ReLU-maxpool, conv-ReLU-avgpool, flatten, linear: a plain chain (8x8 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


class NoBNNet(nn.Module):
    """conv-ReLU, conv-ReLU, flatten, linear: rule 3 holds at the `output` tap."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(4 * 3 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(x, 1))


class ResidualNet(nn.Module):
    """Residual add, a grouped conv (groups=2), a depthwise conv, global pooling (8x8 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(4)
        self.relu0 = nn.ReLU()
        self.c1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(4)
        self.r1 = nn.ReLU()
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(4)
        self.r2 = nn.ReLU()
        self.grouped = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False)
        self.bg = nn.BatchNorm2d(6)
        self.rg = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.bd = nn.BatchNorm2d(6)
        self.rd = nn.ReLU6()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu0(self.bn0(self.stem(x)))
        x = self.r2(self.b2(self.c2(self.r1(self.b1(self.c1(x))))) + x)
        x = self.pool(self.rg(self.bg(self.grouped(x))))
        x = self.rd(self.bd(self.dw(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


NETS = {"chain": ChainNet, "nobn": NoBNNet, "residual": ResidualNet}
SHAPES = {"chain": (1, 8, 8), "nobn": (2, 6, 6), "residual": (1, 8, 8)}
CLASSES = {"chain": 5, "nobn": 4, "residual": 5}


def make(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, int, int]]:
    torch.manual_seed(seed)
    return randomize(NETS[name](), seed), SHAPES[name]


def batch(name: str, n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPES[name], generator=g), torch.randint(0, CLASSES[name], (n,), generator=g)
