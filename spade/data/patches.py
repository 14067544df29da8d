"""Training samples reproducible by index: random image crops with the eight
flips/rotations, and the synthetic codes of sparse recovery."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import require
from ..physics.sparse import bernoulli_gaussian
from .images import Image


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0..7) element of the dihedral group acting on the last two axes:
    ``k % 4`` quarter turns, then a horizontal flip if ``k >= 4``."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


class PatchDataset(Dataset):
    """``length`` random ``size x size`` patches (C, size, size) of a list of images.

    Item ``i`` is the same for a given ``seed`` whatever the order of access (it draws
    from its own generator seeded by ``(seed, i)``), so training is reproducible and
    resumable. ``augment`` applies one of the eight flips/rotations.
    """

    def __init__(self, images: list[Image], size: int, length: int, augment: bool = True, seed: int = 0):
        require(len(images) > 0, "no training images given")
        require(size >= 1 and length >= 1, f"patch size {size} and count {length} must be >= 1")
        self.tensors = [img.tensor() for img in images]
        small = [img.name for img, t in zip(images, self.tensors) if min(t.shape[-2:]) < size]
        require(not small, f"images {small} are smaller than the {size}-pixel patch: lower the patch size")
        self.size, self.length, self.augment, self.seed = int(size), int(length), augment, int(seed)
        areas = np.array([t.shape[-1] * t.shape[-2] for t in self.tensors], dtype=np.float64)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, int(i)))
        t = self.tensors[rng.choice(len(self.tensors), p=self.weights)]
        h, w = t.shape[-2:]
        top = int(rng.integers(0, h - self.size + 1))
        left = int(rng.integers(0, w - self.size + 1))
        patch = t[:, top:top + self.size, left:left + self.size]
        if self.augment:
            patch = dihedral(patch, int(rng.integers(0, 8)))
        return patch.contiguous()


#: the training source of sparse recovery: ``"bernoulli-gaussian"`` or ``"bernoulli-gaussian:P"``
CODES = "bernoulli-gaussian"


def code_probability(source) -> float:
    """The nonzero probability ``P`` of a code source ``"bernoulli-gaussian[:P]"`` (0.1 by default)."""
    name, _, p = str(source).partition(":")
    require(name == CODES, f"sparse recovery trains on synthetic codes, not '{source}': give the data source "
                           f"'{CODES}' or '{CODES}:P' (P = probability of a nonzero entry, default 0.1)")
    try:
        value = float(p) if p else 0.1
    except ValueError:
        value = math.nan
    require(0 < value <= 1, f"data source '{source}': the nonzero probability must be a number in (0, 1]")
    return value


class CodeDataset(Dataset):
    """``length`` Bernoulli-Gaussian codes (n,): each entry nonzero with probability ``p``,
    then N(0, 1). Item ``i`` is drawn from its own seed ``(seed, i)`` (as :class:`PatchDataset`)."""

    def __init__(self, n: int, length: int, p: float = 0.1, seed: int = 0):
        require(n >= 1 and length >= 1, f"code size {n} and count {length} must be >= 1")
        self.n, self.length, self.p, self.seed = int(n), int(length), float(p), int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        seed = int(np.random.default_rng((self.seed, int(i))).integers(2 ** 62))
        return bernoulli_gaussian(1, self.n, self.p, seed=seed)[0]
