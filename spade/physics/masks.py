"""Cartesian k-space sampling masks.

Every mask is a float tensor of shape (H, W) with values 0/1. Generated masks use the
*centred* layout (k-space origin in the middle, as after ``fftshift``), to be used with
``MRI(..., centered=True)``. Masks read from files are returned as stored; say which
layout they use when building the operator (the ISTA-Net+ masks are unshifted:
``centered=False``).

1-D masks (fastMRI style) sample whole phase-encoding columns: the mask is constant
along H.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import require
from .arrays import read_array


def _check(shape, acceleration, center_fraction):
    require(len(shape) == 2 and all(int(s) > 0 for s in shape),
            f"mask shape {tuple(shape)} is not (H, W) with positive sizes")
    require(acceleration >= 1, f"acceleration {acceleration} is below 1: give a factor >= 1 (e.g. 4)")
    require(0 <= center_fraction <= 1,
            f"centre fraction {center_fraction} is outside [0, 1]: give e.g. 0.08")


def _center_columns(width: int, center_fraction: float) -> tuple[int, int]:
    num_low = int(round(width * center_fraction))
    start = (width - num_low + 1) // 2
    return start, num_low


def equispaced_mask(shape, acceleration: float, center_fraction: float, offset: int = 0) -> torch.Tensor:
    """fastMRI brain-style mask: a fully sampled centre plus equispaced columns.

    The spacing is adjusted so that the total number of columns is ``W / acceleration``
    (the fastMRI ``EquispacedMaskFunc`` rule); ``offset`` is the first sampled column.
    """
    _check(shape, acceleration, center_fraction)
    height, width = int(shape[0]), int(shape[1])
    start, num_low = _center_columns(width, center_fraction)
    cols = np.zeros(width, dtype=np.float32)
    cols[start:start + num_low] = 1
    if num_low < width / acceleration:
        # spacing that yields width/acceleration columns in total
        adjusted_accel = (acceleration * (num_low - width)) / (num_low * acceleration - width)
        picks = np.around(np.arange(offset, width - 1, adjusted_accel)).astype(np.int64)
        cols[picks[picks < width]] = 1
    return torch.from_numpy(np.tile(cols, (height, 1)))


def random_mask(shape, acceleration: float, center_fraction: float, seed: int = 0) -> torch.Tensor:
    """fastMRI knee-style mask: a fully sampled centre plus random columns.

    Outer columns are kept with the probability that makes the expected number of
    columns ``W / acceleration`` (the fastMRI ``RandomMaskFunc`` rule).
    """
    _check(shape, acceleration, center_fraction)
    height, width = int(shape[0]), int(shape[1])
    start, num_low = _center_columns(width, center_fraction)
    rng = np.random.default_rng(seed)
    prob = max(0.0, (width / acceleration - num_low) / max(width - num_low, 1))
    cols = (rng.uniform(size=width) < prob).astype(np.float32)
    cols[start:start + num_low] = 1
    return torch.from_numpy(np.tile(cols, (height, 1)))


def variable_density_mask(shape, acceleration: float, center_fraction: float = 0.04,
                          seed: int = 0, power: float = 2.0) -> torch.Tensor:
    """2-D variable-density random mask with a fully sampled central disc.

    Points are drawn without replacement with probability proportional to
    ``(1 - r)^power`` (``r`` the normalised distance to the centre) until
    ``H*W / acceleration`` points are sampled; the central disc whose radius is
    ``center_fraction`` of the half-diagonal is always sampled.
    """
    _check(shape, acceleration, center_fraction)
    height, width = int(shape[0]), int(shape[1])
    ky = (np.arange(height) - height // 2) / (height / 2)
    kx = (np.arange(width) - width // 2) / (width / 2)
    r = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) / math.sqrt(2)
    total = int(round(height * width / acceleration))
    mask = np.zeros((height, width), dtype=np.float32)
    mask[r <= center_fraction] = 1
    remaining = total - int(mask.sum())
    if remaining > 0:
        density = (1 - r) ** power
        density[mask > 0] = 0
        density = density.ravel() / density.sum()
        rng = np.random.default_rng(seed)
        picks = rng.choice(density.size, size=min(remaining, int((density > 0).sum())),
                           replace=False, p=density)
        mask.ravel()[picks] = 1
    return torch.from_numpy(mask)


def load_mask(path: str | Path, key: str = "mask_matrix") -> torch.Tensor:
    """Read a 0/1 mask of shape (H, W) from a ``.mat`` file (``key``) or a ``.npy`` file."""
    array = read_array(path, key, "mask")
    require(array.ndim == 2, f"mask in {path} has shape {array.shape}: expected a 2-D (H, W) array")
    values = np.unique(array)
    require(np.all(np.isin(values, [0, 1])),
            f"mask in {path} has values other than 0 and 1 ({values[:5]}...): expected a binary mask")
    return torch.from_numpy(array.astype(np.float32))
