"""COAST written the way its authors write it (You et al., TIP 2021): one ``Linear(1, 32)``
shared by every block of every iteration turns the sampling ratio into per-channel scales,
reshaped with a hard-coded ``.view(-1, 32, 1, 1)`` and multiplied into each residual
branch; blocks pass ``[features, condition]`` lists. Re-typed small for the tests."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CPMB(nn.Module):
    """Controllable proximal mapping block."""

    def __init__(self, res_scale_linear, nf=32):
        super(CPMB, self).__init__()
        conv_bias = True
        self.conv1 = nn.Conv2d(nf, nf, 3, padding=1, bias=conv_bias)
        self.conv2 = nn.Conv2d(nf, nf, 3, padding=1, bias=conv_bias)
        self.res_scale = res_scale_linear
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        content = x[0]
        cond = x[1]
        cond_repeat = cond.repeat((content.shape[0], 1))
        out = self.act(self.conv1(content))
        out = self.conv2(out)
        res_scale = self.res_scale(cond_repeat)
        alpha = res_scale.view(-1, 32, 1, 1)
        out1 = out.mul(alpha)
        return [content + out1, cond]


class BasicBlock(nn.Module):
    def __init__(self, res_scale_linear, nf=32):
        super(BasicBlock, self).__init__()
        self.lambda_step = nn.Parameter(torch.Tensor([0.5]))
        self.head_conv = nn.Conv2d(1, nf, 3, 1, 1, bias=True)
        self.ResidualBlocks = nn.Sequential(CPMB(res_scale_linear, nf), CPMB(res_scale_linear, nf))
        self.tail_conv = nn.Conv2d(nf, 1, 3, 1, 1, bias=True)

    def forward(self, x, PhiWeight, PhiTWeight, PhiTb, cond):
        x = x - self.lambda_step * PhiTPhi_fun(x, PhiWeight, PhiTWeight)
        x = x + self.lambda_step * PhiTb
        x_input = x
        x_mid = self.head_conv(x_input)
        x_mid, _ = self.ResidualBlocks([x_mid, cond])
        x_mid = self.tail_conv(x_mid)
        return x_input + x_mid


def PhiTPhi_fun(x, PhiW, PhiTW):
    temp = F.conv2d(x, PhiW, padding=0, stride=33, bias=None)
    temp = F.conv2d(temp, PhiTW, padding=0, bias=None)
    return torch.nn.PixelShuffle(33)(temp)


class COAST(nn.Module):
    def __init__(self, LayerNo):
        super(COAST, self).__init__()
        self.LayerNo = LayerNo
        nf = 32
        scale_bias = True
        self.res_scale_linear = nn.Linear(1, nf, bias=scale_bias)
        self.fcs = nn.ModuleList([BasicBlock(self.res_scale_linear, nf) for _ in range(LayerNo)])

    def forward(self, x, Phi, Qinit, cs_ratio):
        cond = torch.tensor([[cs_ratio]], dtype=x.dtype)
        PhiWeight = Phi.contiguous().view(-1, 1, 33, 33)
        Phix = F.conv2d(x, PhiWeight, padding=0, stride=33, bias=None)  # measurements
        PhiTWeight = Phi.t().contiguous().view(1089, -1, 1, 1)
        PhiTb = torch.nn.PixelShuffle(33)(F.conv2d(Phix, PhiTWeight, padding=0, bias=None))
        x = PhiTb
        for i in range(self.LayerNo):
            x = self.fcs[i](x, PhiWeight, PhiTWeight, PhiTb, cond)
        return x


def example_inputs(ratio: float = 0.25, side: int = 66, seed: int = 0):
    """``(image (1, 1, side, side), Phi (m, 1089), Qinit, ratio)``."""
    g = torch.Generator().manual_seed(seed)
    m = round(ratio * 1089)
    phi = torch.randn(m, 1089, generator=g) / 33
    return torch.rand(1, 1, side, side, generator=g), phi, phi.t().clone(), ratio


def call(model, y, physics):
    """COAST from SPADE's ``(y, physics)``. COAST measures the image it is given; with
    Phi's orthonormal rows (``BlockCS.gaussian``) ``Phi (Phi^T y) = y``, so handing it
    ``A^T y`` gives it exactly the measurements ``y``."""
    return model(physics.A_adjoint(y), physics.phi, physics.phi.t(), physics.ratio)
