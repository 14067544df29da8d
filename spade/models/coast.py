"""COAST (You et al., TIP 2021): one block-CS network for arbitrary sampling ratios and
sampling matrices, from ``nn.Conv2d`` s.

Each iteration k runs a gradient step on the whole image and a ratio-controlled
proximal module:

    r = x - lambda_k A^T A x + lambda_k A^T y
    x = r + tail( CPMB_3( CPMB_2( CPMB_1( head(r) ) ) ) )

``A``/``A^T`` of :class:`~spade.physics.BlockCS` are strided convolutions over the whole
image, so the proximal module sees the image across block borders (COAST's whole-image
deblocking; no per-block prior). ``head`` is a 3x3 conv 1 -> ``channels``, ``tail``
``channels`` -> 1 (both with bias). A CPMB (controllable proximal mapping block) is
``z + s * conv(ReLU(conv(z)))`` with 3x3 convs with bias and ``s`` a per-channel scale
conditioned on the sampling ratio ``m / 1089`` of the physics it is called with, so one
model serves every ratio. The network starts from ``physics.A_dagger(y)``, i.e.
``Phi^T y`` for the Gaussian operators with orthonormal rows that COAST trains on.
Convolutions start from He-normal weights scaled by 0.1 and zero biases (the usual
initialisation of residual CNN blocks), so the untrained network stays close to its
starting point instead of amplifying it over 20 iterations.

Sharing modes (:class:`~spade.models.sharing.Sharing`):

* ``untied`` — COAST: 20 iterations of 56,098 parameters each and one ``Linear(1, 32)``
  fed ``[ratio]`` giving the scales of every CPMB: 20 x 56,098 + 64 = 1,122,024;
* ``tied`` — one iteration called 20 times (56,162 parameters);
* ``recursive`` — R-COAST, 5 stages x 4 recursions: the modulation MLP
  3 -> 32 -> ReLU -> 32, fed ``[2 ratio, total iterations / 20, current index / 20]``,
  gives the CPMB scales of each iteration: 5 x 56,098 + 1,184 = 281,674.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import require
from ..physics import BlockCS
from .base import ReconstructionNet
from .registry import register
from .sharing import Sharing, sharing_presets


class CPMB(nn.Module):
    """Controllable proximal mapping block on (N, C, H, W) features."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``scale`` (1, C): per-channel factor of the residual branch."""
        return z + self.conv2(F.relu(self.conv1(z))) * scale.reshape(1, -1, 1, 1)


class COASTIteration(nn.Module):
    """One COAST iteration: step size, head conv, ``blocks`` CPMBs, tail conv."""

    def __init__(self, channels: int = 32, blocks: int = 3):
        super().__init__()
        self.lambda_step = nn.Parameter(torch.tensor([0.5]))
        self.head = nn.Conv2d(1, channels, 3, padding=1)
        self.cpmbs = nn.ModuleList(CPMB(channels) for _ in range(blocks))
        self.tail = nn.Conv2d(channels, 1, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                m.weight.data.mul_(0.1)
                nn.init.zeros_(m.bias)

    def forward(self, r: torch.Tensor, scales: list[torch.Tensor]) -> torch.Tensor:
        """``r`` (B, 1, H, W) after the gradient step -> the iteration's output."""
        z = self.head(r)
        for block in self.cpmbs:
            z = block(z, scales[0])
        return r + self.tail(z)


@register("coast", physics=("cs",), protocol="ista-cs",
          description="COAST: ratio-controlled unrolled network for arbitrary-ratio block CS",
          presets=sharing_presets(stages=5, recursions=4), depth_key="iterations")
class COAST(ReconstructionNet):
    """COAST / R-COAST (see module docstring). Called as ``model(y, physics)`` with a
    :class:`~spade.physics.BlockCS` of any ratio."""

    def __init__(self, iterations: int = 20, channels: int = 32, blocks: int = 3, sharing: str = "untied",
                 stages: int = 5, recursions: int = 4):
        super().__init__()
        self.sharing = Sharing(lambda: COASTIteration(channels, blocks), mode=sharing, iterations=iterations,
                               stages=stages, recursions=recursions, cond_inputs=1, mod_width=channels, mod_heads=1)
        #: factor on the ratio fed to the modulation (R-COAST feeds 2 x ratio)
        self.ratio_gain = 2.0 if sharing == "recursive" else 1.0

    def forward(self, y: torch.Tensor, physics, return_aux: bool = False):
        require(isinstance(physics, BlockCS),
                f"COAST reconstructs block compressive sensing: got {type(physics).__name__} physics, use BlockCS")
        cond = torch.tensor([self.ratio_gain * physics.ratio], dtype=y.dtype, device=y.device)
        x = physics.A_dagger(y)
        iterates = []
        for iteration, scales in self.sharing.schedule(cond):
            r = physics.gradient_step(x, y, iteration.lambda_step)
            x = iteration(r, scales)
            if return_aux:
                iterates.append(x)
        return (x, {"iterates": iterates}) if return_aux else x
