"""Example measurements for tracing, profiling and quick checks.

:func:`example_pair` crops real embedded images (not noise, so that activations and
data-driven importance scores look like real use) to the shape an operator measures
(:meth:`~spade.physics.LinearPhysics.image_shape`) and measures them.
"""
from __future__ import annotations

import torch

from ..errors import require
from ..physics import LinearPhysics
from ..physics.sparse import bernoulli_gaussian
from .images import channel_mode
from .sources import embedded_photos


def example_pair(physics: LinearPhysics, batch: int = 1, side: int | None = None, channels: int = 1,
                 seed: int = 0, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``batch`` crops of the embedded photographs in the network's domain and
    their noiseless-or-noisy measurements (the operator's own noise, seeded); ``side`` and
    ``channels`` for operators that leave the size / colour open. An operator of vector
    signals (image shape ``(n,)``, sparse recovery) gets ``batch`` Bernoulli-Gaussian
    codes (B, n) instead of images."""
    shape = physics.image_shape(side, channels)
    physics = physics.to(device)
    if len(shape) == 1:
        x = bernoulli_gaussian(batch, shape[0], seed=seed, device=device)
        return x, physics.simulate(x, seed=seed)
    c, h, w = shape
    photos = embedded_photos(channel_mode(c))
    gen = torch.Generator().manual_seed(seed)
    crops = []
    for i in range(batch):
        t = photos[i % len(photos)].tensor()
        require(t.shape[-2] >= h and t.shape[-1] >= w, f"example image {photos[i % len(photos)].name} is smaller than {h}x{w}")
        top = int(torch.randint(0, t.shape[-2] - h + 1, (1,), generator=gen))
        left = int(torch.randint(0, t.shape[-1] - w + 1, (1,), generator=gen))
        crops.append(t[:c, top:top + h, left:left + w])
    x = physics.to_domain(torch.stack(crops).to(device))
    return x, physics.simulate(x, seed=seed)
