"""Unrolled half-quadratic splitting for super-resolution (USRNet style; Zhang et al. 2020).

From the bicubic upsampling ``z_0 = A_dagger(y)``, iteration k alternates

    x_k = argmin_x 1/2 ||A x - y||^2 + 1/(2 gamma_k) ||x - z_{k-1}||^2   (physics.prox_l2)
    z_k = P_k(x_k, sigma)

The data step is the closed-form FFT solution of :class:`~spade.physics.SuperResolution`
(any scale 2/3/4, Gaussian or bicubic kernel: one model serves them all). Its penalty
follows the noise level ``sigma`` of the physics: ``gamma_k = w_k / (sigma^2 +
noise_floor^2)`` with a learned weight ``w_k`` per iteration (initialised to 0.01, stored
as its logarithm), so the data are trusted less as the noise grows. ``P_k`` is a residual
ResNet/EDSR prior; with ``noise_input=True`` it also receives ``sigma`` as a constant
input map (a noise-level map as in USRNet, entering through a 1x1 convolution added to
the prior's first features). The output is ``z_K``.

``hqs-sr-ps`` is the sub-pixel variant: each prior rearranges the image to
``shuffle``-times lower resolution (``pixel_unshuffle``), runs its residual blocks there
(``shuffle^2`` fewer pixels) and returns to full resolution through a ``PixelShuffle``
layer (see :class:`~spade.models.priors.ResNetPrior`).

Sharing modes: ``untied`` (USRNet's per-iteration priors), ``tied``, ``recursive`` (S
stages x R recursions; one modulation head per residual block scales its inner features).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import ReconstructionNet
from .du import unroll
from .priors import ResNetPrior, require_channels
from .registry import register
from .sharing import Sharing, sharing_presets

_PRESETS = sharing_presets(stages=2, recursions=3)


class HQSStep(nn.Module):
    """One HQS iteration: closed-form data step with a learned penalty, then the prior."""

    def __init__(self, channels: int, width: int, blocks: int, res_scale: float, shuffle: int, noise_input: bool):
        super().__init__()
        self.log_weight = nn.Parameter(torch.tensor([math.log(0.01)]))
        self.prior = ResNetPrior(channels, width, blocks, res_scale, extra_inputs=int(noise_input), shuffle=shuffle)

    def forward(self, z, y, physics, sigma: torch.Tensor, noise_floor: float, scales=None):
        gamma = self.log_weight.exp() / (sigma ** 2 + noise_floor ** 2)
        x = physics.prox_l2(z, y, gamma)
        return self.prior(x, scales, extra=sigma.reshape(1, 1) if self.prior.extra_inputs else None)


@register("hqs-sr", physics=("sr",), protocol="sr",
          description="unrolled HQS for super-resolution: closed-form FFT data step and ResNet priors",
          presets=_PRESETS, depth_key="iterations")
class HQSSR(ReconstructionNet):
    """Unrolled HQS for SR (see module docstring). ``model(y, physics)``."""

    def __init__(self, iterations: int = 6, width: int = 32, blocks: int = 2, res_scale: float = 1.0,
                 image_channels: int = 1, noise_input: bool = True, noise_floor: float = 0.01, shuffle: int = 1,
                 sharing: str = "untied", stages: int = 2, recursions: int = 3):
        super().__init__()
        self.image_channels = image_channels
        self.noise_floor = float(noise_floor)
        self.sharing = Sharing(lambda: HQSStep(image_channels, width, blocks, res_scale, shuffle, noise_input),
                               mode=sharing, iterations=iterations, stages=stages, recursions=recursions,
                               mod_width=width, mod_heads=blocks)

    def forward(self, y: torch.Tensor, physics, return_aux: bool = False):
        z = physics.A_dagger(y)
        require_channels(z, self.image_channels, self.family)
        sigma = torch.tensor(float(physics.noise_level), dtype=z.dtype, device=z.device)
        return unroll(self.sharing, z, y, physics, sigma, self.noise_floor, return_aux=return_aux)


@register("hqs-sr-ps", physics=("sr",), protocol="sr",
          description="HQS-SR whose priors work at 1/2 resolution and end in a PixelShuffle layer",
          presets=_PRESETS, depth_key="iterations")
class HQSSRPixelShuffle(HQSSR):
    """:class:`HQSSR` with sub-pixel priors (``shuffle=2`` by default)."""

    def __init__(self, iterations: int = 6, width: int = 32, blocks: int = 2, res_scale: float = 1.0,
                 image_channels: int = 1, noise_input: bool = True, noise_floor: float = 0.01, shuffle: int = 2,
                 sharing: str = "untied", stages: int = 2, recursions: int = 3):
        super().__init__(iterations, width, blocks, res_scale, image_channels, noise_input, noise_floor, shuffle,
                         sharing, stages, recursions)
