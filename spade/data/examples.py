"""Example measurements for tracing, profiling and quick checks.

:func:`example_pair` crops real embedded images (not noise, so that activations and
data-driven importance scores look like real use) to the shape an operator expects and
measures them.
"""
from __future__ import annotations

import torch

from ..errors import require
from ..physics import MRI, BlockCS, LinearPhysics, SuperResolution
from ..physics.sparse import SparseRecovery, bernoulli_gaussian
from .sources import embedded_photos

#: default image side for operators without a fixed image size
DEFAULT_SIDE = {"cs": 264, "sr": 256}


def image_shape_for(physics: LinearPhysics, side: int | None = None, channels: int = 1) -> tuple[int, int, int]:
    """(C, H, W) of the images ``physics`` measures; ``side`` for size-free operators."""
    if isinstance(physics, MRI):
        return (1 if physics.real_image else 2, *physics.mask.shape)
    if isinstance(physics, BlockCS):
        side = side or DEFAULT_SIDE["cs"]
        b = physics.block_size
        require(side % b == 0, f"image side {side} is not a multiple of the CS block size {b}")
        return (1, side, side)
    if isinstance(physics, SuperResolution):
        side = side or DEFAULT_SIDE["sr"]
        require(side % physics.scale == 0, f"image side {side} is not a multiple of the scale {physics.scale}")
        return (channels, side, side)
    raise AssertionError(f"no example images for {type(physics).__name__}")


def example_pair(physics: LinearPhysics, batch: int = 1, side: int | None = None, channels: int = 1,
                 seed: int = 0, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``batch`` crops of the embedded photographs and their noiseless-or-noisy
    measurements (the operator's own noise level, seeded); for sparse recovery, ``batch``
    Bernoulli-Gaussian codes (B, n) instead of images."""
    if isinstance(physics, SparseRecovery):
        x = bernoulli_gaussian(batch, physics.n, seed=seed, device=device)
        return x, physics.to(device).simulate(x, seed=seed)
    c, h, w = image_shape_for(physics, side, channels)
    photos = embedded_photos("rgb" if c == 3 else "y")
    gen = torch.Generator().manual_seed(seed)
    crops = []
    for i in range(batch):
        t = photos[i % len(photos)].tensor()
        require(t.shape[-2] >= h and t.shape[-1] >= w, f"example image {photos[i % len(photos)].name} is smaller than {h}x{w}")
        top = int(torch.randint(0, t.shape[-2] - h + 1, (1,), generator=gen))
        left = int(torch.randint(0, t.shape[-1] - w + 1, (1,), generator=gen))
        crop = t[:, top:top + h, left:left + w]
        if c == 2:  # complex image: real part = the photo, imaginary part = 0
            crop = torch.cat([crop[:1], torch.zeros_like(crop[:1])])
        crops.append(crop[:c] if c != 2 else crop)
    x = torch.stack(crops).to(device)
    physics = physics.to(device)
    return x, physics.simulate(x, seed=seed)
