"""Data for the data-driven criteria and for depth ranking: a model's own measurements.

Each image is brought to the network domain under the model's evaluation protocol
(:func:`spade.data.prepare`: padded to whole CS blocks, cropped to the MRI mask,
...), measured with the model's physics (its own noise level, seeded per image) and
paired with its ground truth: ``((y, physics), x)`` batches of one image each.
"""
from __future__ import annotations

import torch

from ..data.images import Image
from ..data.measurements import prepare
from ..errors import require
from ..physics import LinearPhysics


def measurement_batches(physics: LinearPhysics, images: list[Image], protocol: str, samples: int = 4, seed: int = 0,
                        device: str | torch.device = "cpu") -> list:
    """``[((y, physics), x), ...]`` for the first ``samples`` images."""
    require(samples >= 1, f"samples = {samples}: use at least one image")
    require(len(images) > 0, "the data source holds no images")
    batches = []
    for i, image in enumerate(images[:samples]):
        x, _, _ = prepare(image, physics, protocol)
        x = x.to(device)
        batches.append(((physics.simulate(x, seed=seed + i), physics), x))
    return batches
