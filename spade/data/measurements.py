"""Measuring a test image the way an evaluation protocol does.

The physics decides how an image fits it (:meth:`~spade.physics.LinearPhysics.crop_image`:
centre-cropped to the MRI mask, cropped to a multiple of the SR scale;
:meth:`~spade.physics.LinearPhysics.pad_image`: zero-padded to whole CS blocks;
:meth:`~spade.physics.LinearPhysics.to_domain`: complex channels); the protocol decides
what the reconstruction is scored against: the 8-bit pixels for the ISTA-Net+ protocols,
the [0, 1] image otherwise (a magnitude image (H, W) for ``fastmri``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import SpadeError, require
from ..physics import KINDS, LinearPhysics
from .images import Image

#: protocols scored against the image's 8-bit grey pixels (ISTA-Net+'s 0-255 scale)
PIXEL_PROTOCOLS = ("ista-cs", "ista-mri")


def check_protocol(physics: LinearPhysics, protocol: str) -> None:
    """A SpadeError unless ``physics`` can be scored under ``protocol``."""
    if protocol not in physics.protocols:
        owners = " or ".join(cls.__name__ for cls in KINDS.values() if protocol in cls.protocols) or "other"
        raise SpadeError(f"protocol '{protocol}' needs {owners} physics, the model has {type(physics).__name__} "
                         f"(protocols {', '.join(physics.protocols)})")


def prepare(image: Image, physics: LinearPhysics, protocol: str) -> tuple[torch.Tensor, np.ndarray, tuple]:
    """Image -> (network-domain ground truth (1, C, H', W'), reference array for the
    metric, crop (h, w) of the reconstruction)."""
    check_protocol(physics, protocol)
    try:
        x = physics.crop_image(image.tensor().unsqueeze(0))  # (1, C, h, w) in [0, 1]
    except SpadeError as exc:
        raise SpadeError(f"image {image.name}: {exc}") from None
    if protocol in PIXEL_PROTOCOLS:
        require(image.pixels.dtype == np.uint8 and image.pixels.ndim == 2,
                f"image {image.name}: the {protocol} protocol needs 8-bit grey/Y images")
        ref = physics.crop_image(torch.from_numpy(image.pixels.copy())).numpy()
    elif protocol == "fastmri":
        ref = x[0, 0].double().numpy()
    else:
        ref = x[0].double().numpy()
    return physics.to_domain(physics.pad_image(x)), ref, tuple(x.shape[-2:])
