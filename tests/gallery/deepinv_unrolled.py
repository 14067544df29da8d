"""An unrolled proximal gradient network in DeepInverse's idiom: one DnCNN-style prior
(``in_conv``, ``conv_list``, ``out_conv``, residual) called in every iteration of a loop,
per-iteration step sizes in one parameter vector indexed by the iteration, a gated unit
that splits its features with ``chunk``, and ``model(y, physics)`` with any physics that
has ``A`` and ``A_adjoint``. Re-typed small for the tests."""
from __future__ import annotations

import torch
from torch import nn


class GatedDnCNN(nn.Module):
    def __init__(self, in_channels=1, out_channels=1, depth=4, bias=True, nf=16):
        super().__init__()
        self.depth = depth
        self.in_conv = nn.Conv2d(in_channels, nf, kernel_size=3, stride=1, padding=1, bias=bias)
        self.conv_list = nn.ModuleList(
            [nn.Conv2d(nf, nf, kernel_size=3, stride=1, padding=1, bias=bias) for _ in range(self.depth - 2)])
        self.gate = nn.Conv2d(nf, 2 * nf, kernel_size=1, bias=bias)
        self.out_conv = nn.Conv2d(nf, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)
        self.nl_list = nn.ModuleList([nn.ReLU() for _ in range(self.depth - 1)])

    def forward(self, x, sigma=None):
        x1 = self.in_conv(x)
        x1 = self.nl_list[0](x1)
        for i in range(self.depth - 2):
            x_l = self.conv_list[i](x1)
            x1 = self.nl_list[i + 1](x_l)
        value, gate = self.gate(x1).chunk(2, dim=1)
        x1 = value * torch.sigmoid(gate)
        return self.out_conv(x1) + x


class UnrolledPGD(nn.Module):
    def __init__(self, prior: nn.Module, max_iter: int = 4, stepsize: float = 0.9):
        super().__init__()
        self.prior = prior
        self.max_iter = max_iter
        self.stepsize = nn.Parameter(torch.full((max_iter,), stepsize))

    def forward(self, y, physics):
        x = physics.A_adjoint(y)
        for k in range(self.max_iter):
            x = x - self.stepsize[k] * physics.A_adjoint(physics.A(x) - y)
            x = self.prior(x)
        return x


def build():
    """``(model, example_inputs)``: what ``spade prune deepinv_unrolled:build`` prunes."""
    from spade.data import example_pair
    from spade.physics import BlockCS
    torch.manual_seed(0)
    physics = BlockCS.gaussian(0.25)
    _, y = example_pair(physics, side=66)
    return UnrolledPGD(GatedDnCNN()).eval(), (y, physics)
