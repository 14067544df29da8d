"""Loss building blocks of the fine-tuning strategies.

* :func:`pixel_loss` — ``l1`` / ``l2`` (mean absolute / squared error) or ``ssim``
  (``1 - SSIM``, Gaussian 11x11 window, ``data_range=1``, from ``pytorch-msssim``) between
  two images (B, C, H, W); SSIM acts on the image channels as they are (for complex MRI
  images: the real and imaginary channels).
* :class:`MCLoss` — measurement consistency ``mean((A x - y)^2)``;
  :class:`EILoss` — equivariant imaging ``mean((f(A T x) - T x)^2)`` for a transformation
  ``T`` drawn from a :class:`TransformGroup`. Both are called as
  ``loss(x_net, y, physics, model, generator)`` (the DeepInverse loss convention) and
  compose by weighted sums (the ``self-supervised`` strategy is ``MC + EI``).
* :class:`TransformGroup` — the transformations of equivariant imaging: quarter-turn
  rotations, circular shifts and flips. Every one keeps an image's shape class: shifts and
  flips keep (H, W); a 90/270-degree rotation swaps H and W and is only drawn for square
  images, so block-CS images (multiples of 33), SR images (multiples of the scale) and MRI
  images (the mask's shape) stay measurable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ssim

from ..errors import require

METRICS = ("l1", "l2", "ssim")
TRANSFORMS = ("rotate", "shift", "flip")


def check_metric(metric: str) -> str:
    require(metric in METRICS, f"unknown loss '{metric}': choose one of {list(METRICS)}")
    return metric


def pixel_loss(x: torch.Tensor, target: torch.Tensor, metric: str = "l2") -> torch.Tensor:
    """Scalar distance between images ``x`` and ``target`` (B, C, H, W) (see module docstring)."""
    if metric == "l1":
        return F.l1_loss(x, target)
    if metric == "l2":
        return F.mse_loss(x, target)
    if metric == "ssim":
        return 1.0 - _ssim(x, target, data_range=1.0, size_average=True)
    raise AssertionError(metric)


class MCLoss:
    """Measurement consistency: ``mean((A x_net - y)^2)`` over every measurement entry."""

    def __call__(self, x_net, y, physics, model=None, generator=None) -> torch.Tensor:
        return F.mse_loss(physics.A(x_net), y)


class EILoss:
    """Equivariant imaging: ``x2 = T x_net`` for ``T`` drawn from ``transforms`` with
    ``generator``, then ``mean((model(A x2) - x2)^2)``; gradients flow through both
    reconstructions."""

    def __init__(self, transforms=None):
        self.group = TransformGroup(TRANSFORMS if transforms is None else transforms)

    def __call__(self, x_net, y, physics, model, generator: torch.Generator) -> torch.Tensor:
        x2 = self.group.sample(x_net.shape, generator)(x_net)
        return F.mse_loss(model(physics.A(x2), physics), x2)


class TransformGroup:
    """Random elements of a group of image transformations (see module docstring).

    ``kinds``: any of ``rotate``, ``shift``, ``flip``. :meth:`sample` draws one
    transformation for the whole batch from a ``torch.Generator`` (so every process of a
    distributed run draws the same one) and returns it as a function (B, C, H, W) ->
    (B, C, H', W').
    """

    def __init__(self, kinds=TRANSFORMS):
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        unknown = sorted(set(kinds) - set(TRANSFORMS))
        require(kinds and not unknown, f"unknown transformation(s) {unknown or kinds}: choose from {list(TRANSFORMS)}")
        self.kinds = kinds

    def sample(self, shape, generator: torch.Generator):
        h, w = shape[-2:]

        def draw(n: int) -> int:
            return int(torch.randint(0, n, (1,), generator=generator))

        kind = self.kinds[draw(len(self.kinds))]
        if kind == "rotate":
            turns = 1 + draw(3) if h == w else 2  # 90/180/270 degrees; 180 only when not square
            return lambda x: torch.rot90(x, turns, dims=(-2, -1))
        if kind == "shift":
            dy, dx = draw(h), draw(w)
            return lambda x: torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        dim = -1 - draw(2)
        return lambda x: torch.flip(x, dims=(dim,))
