"""ISTA-Net+ (Zhang & Ghanem, CVPR 2018) for block CS and CS-MRI, from ``nn.Conv2d`` s.

Each phase k runs the gradient step of ISTA and a learned proximal map:

    r = x - lambda_k A^T (A x - y)          (physics.gradient_step)
    x = r + G( Htilde( soft( H(D r), theta_k ) ) )

with ``D``/``G`` 3x3 convolutions between the image and ``channels`` feature maps,
``H`` and ``Htilde`` two conv-ReLU-conv transforms, and ``soft`` soft-thresholding. The
symmetry constraint ``Htilde(H(D r)) ~ D r`` is the architecture's training penalty
(``aux["regularizer"] = sym_weight * sum_k mean((Htilde(H(D r)) - D r)^2)``), computed
when ``return_aux=True``; ``penalty=False`` skips it (two convolutions per phase, a
third of the prior's work) when only the iterates are wanted, as by a distillation
teacher (``iterates_kwargs``), and ``aux["regularizer"]`` is then None.

``block_size=33`` applies the proximal map to every 33x33 block as its own image (zero
padding at block borders), as the official CS model does; ``block_size=None`` applies it
to the whole image (the MRI model, and whole-image CS). When the physics measures every
block on its own too (block CS, ``physics.split_blocks``), the whole network runs on the
batch of blocks and the image is assembled once at the end (the official implementation's
layout), instead of cutting and reassembling it around every phase's prior.

Sharing modes: ``untied`` (the official model: 9 phases, 336,978 parameters), ``tied``,
and ``recursive`` — recursive ISTA-Net+ (3 stages x 3 recursions). Its modulation unit
is two MLPs 2 -> 32 -> ReLU -> 32 fed ``[total iterations / 9, current index / 9]``:
the first scales the channels of the forward transform ``H`` (so each iteration
thresholds its own rescaled coefficients), the second those of the backward transform
``Htilde``; 3 x 37,442 + 2 x 1,152 = 114,630 parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import require
from ..physics.cs import batch_to_blocks, blocks_to_batch
from ..physics.sparse import soft_threshold
from .base import ReconstructionNet
from .registry import register
from .sharing import Sharing, sharing_presets


class ISTAPhase(nn.Module):
    """One ISTA-Net+ phase: step size, threshold, and the transforms D, H, Htilde, G."""

    def __init__(self, channels: int = 32, image_channels: int = 1):
        super().__init__()
        self.lambda_step = nn.Parameter(torch.tensor([0.5]))
        self.soft_thr = nn.Parameter(torch.tensor([0.01]))
        self.conv_D = nn.Conv2d(image_channels, channels, 3, padding=1, bias=False)
        self.conv1_forward = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2_forward = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv1_backward = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2_backward = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv_G = nn.Conv2d(channels, image_channels, 3, padding=1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)

    def backward_transform(self, v: torch.Tensor, scales) -> torch.Tensor:
        out = self.conv2_backward(F.relu(self.conv1_backward(v)))
        return out if scales is None else out * scales[1].reshape(1, -1, 1, 1)

    def forward(self, r: torch.Tensor, scales=None, with_sym: bool = False):
        """``r`` (N, C, h, w) -> (prox(r), symmetry residual or None).

        The features are kept channels-last (NHWC): PyTorch's oneDNN convolutions then
        skip the reorders to and from their blocked layout that NCHW tensors cost at every
        layer, a fixed cost that weighs most on pruned (narrow) layers. The input is copied
        with channels-last strides (``clone``: ``contiguous`` would keep a one-channel
        tensor as it is, which oneDNN reads as NCHW); every layer after it follows."""
        r = r.clone(memory_format=torch.channels_last)
        x_d = self.conv_D(r)
        x_forward = self.conv2_forward(F.relu(self.conv1_forward(x_d)))
        if scales is not None:
            x_forward = x_forward * scales[0].reshape(1, -1, 1, 1)
        x = soft_threshold(x_forward, self.soft_thr)
        x = r + self.conv_G(self.backward_transform(x, scales))
        sym = self.backward_transform(x_forward, scales) - x_d if with_sym else None
        return x, sym


@register("ista-net-plus", physics=("cs", "mri"), protocol="ista-cs",
          description="ISTA-Net+: unrolled ISTA with learned transforms and soft thresholds",
          presets=sharing_presets(stages=3, recursions=3), depth_key="phases")
class ISTANetPlus(ReconstructionNet):
    """ISTA-Net+ (see module docstring). Called as ``model(y, physics)``."""

    iterates_kwargs = {"return_aux": True, "penalty": False}

    def __init__(self, phases: int = 9, channels: int = 32, image_channels: int = 1, block_size: int | None = 33,
                 sharing: str = "untied", stages: int = 3, recursions: int = 3, sym_weight: float = 0.01):
        super().__init__()
        self.block_size = block_size
        self.sym_weight = sym_weight
        self.sharing = Sharing(lambda: ISTAPhase(channels, image_channels), mode=sharing, iterations=phases,
                               stages=stages, recursions=recursions, mod_width=channels, mod_heads=2)

    def forward(self, y: torch.Tensor, physics, return_aux: bool = False, penalty: bool = True):
        b = self.block_size
        split = physics.split_blocks(y, b) if b else None
        if split is not None:  # block CS: every block is its own problem, iterate on the batch of blocks
            y, join = split
        x = physics.A_dagger(y)
        require(not b or split is not None or (x.shape[-2] % b == 0 and x.shape[-1] % b == 0),
                f"ISTA-Net+ with block_size={b} needs images of whole {b}x{b} blocks, got "
                f"{tuple(x.shape[-2:])}: build it with block_size=None for whole-image priors (MRI)")
        with_sym = return_aux and penalty
        iterates, sym_terms = [], []
        for phase, scales in self.sharing.schedule():
            r = physics.gradient_step(x, y, phase.lambda_step)
            if b and split is None:
                rb, sym = phase(blocks_to_batch(r, b), scales, with_sym=with_sym)
                x = batch_to_blocks(rb, r.shape)
            else:
                x, sym = phase(r, scales, with_sym=with_sym)
            if return_aux:
                iterates.append(x if split is None else join(x))
            if with_sym:
                sym_terms.append(torch.mean(sym ** 2))
        out = x if split is None else join(x)
        if not return_aux:
            return out
        return out, {"iterates": iterates,
                     "regularizer": self.sym_weight * torch.stack(sym_terms).sum() if with_sym else None}
