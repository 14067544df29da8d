"""Deep unfolding of proximal gradient descent for MRI (``du-mri``).

Starting from the zero-filled image ``x_0 = A_dagger(y)``, iteration k is

    x <- P_k( x - eta_k A^H (A x - y) )

a gradient step on the data term with a learned step ``eta_k`` (initialised to 1), then a
residual CNN prior ``P_k(v) = v + net_k(v)``: DnCNN (``prior="dncnn"``, ``depth``
convolutions) or ResNet/EDSR blocks (``prior="resnet"``, ``blocks`` residual blocks).
Images are complex (B, 2, H, W) by default; ``image_channels=1`` for real-valued MRI
physics. The step is :class:`GradientStep`, which the deep equilibrium model reuses as
its fixed-point map.

Sharing modes: ``untied`` (default: every iteration owns its prior and step), ``tied``,
``recursive`` (S stages x R recursions; the modulation scales the DnCNN's last hidden
features, or the inner features of every residual block).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import ReconstructionNet
from .priors import require_channels, residual_prior
from .registry import register
from .sharing import Sharing, sharing_presets


def unroll(sharing: Sharing, x: torch.Tensor, *args, return_aux: bool = False):
    """Run the schedule of ``sharing``: ``x = block(x, *args, scales)`` for every step;
    returns ``x`` or ``(x, {"iterates": [...]})``."""
    iterates = []
    for block, scales in sharing.schedule():
        x = block(x, *args, scales)
        iterates.append(x)
    return (x, {"iterates": iterates}) if return_aux else x


class GradientStep(nn.Module):
    """``P(x - eta A^H(A x - y))`` for a residual prior ``P`` (any module called as
    ``prior(v, scales)``)."""

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.eta = nn.Parameter(torch.tensor([1.0]))
        self.prior = prior

    def forward(self, x, y, physics, scales=None):
        return self.prior(physics.gradient_step(x, y, self.eta), scales)


@register("du-mri", physics=("mri",), protocol="fastmri",
          description="deep unfolding: learned gradient steps and residual CNN priors (DnCNN/ResNet)",
          presets=sharing_presets(stages=2, recursions=3), depth_key="iterations")
class DeepUnfolding(ReconstructionNet):
    """Deep unfolding (see module docstring). ``model(y, physics)``."""

    def __init__(self, iterations: int = 6, prior: str = "dncnn", width: int = 32, depth: int = 5, blocks: int = 2,
                 res_scale: float = 1.0, image_channels: int = 2, sharing: str = "untied", stages: int = 2,
                 recursions: int = 3):
        super().__init__()
        self.image_channels = image_channels
        heads = 1 if prior == "dncnn" else blocks  # DnCNN.n_scales, ResNetPrior.n_scales
        self.sharing = Sharing(lambda: GradientStep(residual_prior(prior, image_channels, width, depth, blocks, res_scale)),
                               mode=sharing, iterations=iterations, stages=stages, recursions=recursions,
                               mod_width=width, mod_heads=heads)

    def forward(self, y: torch.Tensor, physics, return_aux: bool = False):
        x = physics.A_dagger(y)
        require_channels(x, self.image_channels, "du-mri")
        return unroll(self.sharing, x, y, physics, return_aux=return_aux)
