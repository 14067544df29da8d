"""Where training batches come from: the two data pipelines and the per-step physics.

* :class:`PatchStream` — the **training split**: random patches (``spade.data.PatchDataset``)
  of training images, or for sparse recovery fresh Bernoulli-Gaussian codes
  (``spade.data.CodeDataset``), measured on the fly with noise seeded per sample. Sample ``k`` of the
  run (``k = step * batch + j``) is a pure function of ``(seed, k)``, so a resumed or
  distributed run sees exactly the batches of a single uninterrupted one.
* :class:`MeasurementSet` — the **test measurements themselves** (the SPADE protocol for
  school and self-supervised fine-tuning): every image measured once, whole, exactly as
  :func:`spade.evaluation.evaluate` measures it (``evaluation.prepare``, noise seed
  ``seed + index``); the ground truth is dropped right after measuring. Measurements of
  equal shape are grouped into batches; an epoch visits every batch once, in an order
  seeded by ``(seed, epoch)``.
* :class:`RandomBlockCS` — block CS with a random ratio from a list and a fresh Gaussian
  Phi for every step (the COAST training protocol); a fixed operator otherwise.

A distributed run splits every global batch into contiguous shares (:func:`shard`); each
share's loss is scaled by ``n_share * world / n_batch`` so that DDP's gradient averaging
gives exactly the gradient of the whole batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data import CodeDataset, Image, PatchDataset
from ..errors import require
from ..evaluation import prepare
from ..physics import MRI, BlockCS, LinearPhysics, SparseRecovery, SuperResolution, build_physics


@dataclass
class Batch:
    """One process's share of a global batch.

    y: measurements; x: ground truth (B, C, H, W) or None (measurement data never carry
    it); key: identity of a fixed batch (None for fresh patches); weight: loss scale of
    this share (see module docstring; 0 for a placeholder share).
    """

    y: torch.Tensor
    x: torch.Tensor | None
    key: Any
    weight: float


def shard(n: int, rank: int, world: int) -> tuple[slice, float]:
    """This process's contiguous share of ``n`` items and its loss weight; a process
    whose share would be empty gets item 0 with weight 0."""
    start, stop = (n * rank) // world, (n * (rank + 1)) // world
    if stop == start:
        return slice(0, 1), 0.0
    return slice(start, stop), (stop - start) * world / n


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for item ``index`` of a run seeded with ``seed``."""
    return (int(seed) * 1_000_003 + int(index)) % (2 ** 63)


def to_domain(x: torch.Tensor, physics: LinearPhysics) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] -> the network's domain (complex MRI: zero imaginary
    channel appended)."""
    if isinstance(physics, MRI) and not physics.real_image:
        return torch.cat([x, torch.zeros_like(x)], dim=1)
    return x


def default_patch(physics: LinearPhysics) -> int:
    """Patch side that the operator accepts: CS 3 blocks, SR 96 (a multiple of 2, 3, 4),
    MRI the (square) mask side."""
    if isinstance(physics, BlockCS):
        return 3 * physics.block_size
    if isinstance(physics, SuperResolution):
        return 96
    if isinstance(physics, MRI):
        h, w = physics.mask.shape
        require(h == w, f"patch training for MRI needs a square mask (this one is {h}x{w})")
        return int(h)
    raise AssertionError(type(physics).__name__)


def check_patch(size: int, physics: LinearPhysics) -> int:
    if isinstance(physics, BlockCS):
        b = physics.block_size
        require(size % b == 0, f"patch size {size} is not a multiple of the CS block size {b}")
    elif isinstance(physics, SuperResolution):
        require(size % physics.scale == 0, f"patch size {size} is not a multiple of the SR scale {physics.scale}")
    elif isinstance(physics, MRI):
        require(tuple(physics.mask.shape) == (size, size),
                f"patch size {size} does not match the MRI mask {tuple(physics.mask.shape)}")
    return size


class RandomBlockCS:
    """Block CS whose ratio and Gaussian Phi change every step (see module docstring).

    ``reference()`` gives one fixed operator per ratio (Phi seeded by ``seed``), for
    validation and for the saved model (the first one).
    """

    def __init__(self, ratios, block_size: int = 33, noise_level: float = 0.0, seed: int = 0):
        require(len(ratios) > 0, "physics 'cs' ratio list is empty: give e.g. [0.1, 0.25, 0.5]")
        self.ratios = [float(r) for r in ratios]
        self.block_size, self.noise_level, self.seed = int(block_size), float(noise_level), int(seed)
        self.references = [self._build(r, self.seed) for r in self.ratios]

    def _build(self, ratio: float, seed: int) -> BlockCS:
        return build_physics({"kind": "cs", "ratio": ratio, "seed": seed, "block_size": self.block_size,
                              "noise_level": self.noise_level})

    def at(self, step: int, seed: int) -> BlockCS:
        gen = torch.Generator().manual_seed(sample_seed(seed, step))
        ratio = self.ratios[int(torch.randint(0, len(self.ratios), (1,), generator=gen))]
        return self._build(ratio, sample_seed(seed + 1, step))


def physics_at(physics, step: int, seed: int) -> LinearPhysics:
    return physics.at(step, seed) if isinstance(physics, RandomBlockCS) else physics


def reference_physics(physics) -> list[LinearPhysics]:
    return list(physics.references) if isinstance(physics, RandomBlockCS) else [physics]


class PatchStream:
    """Random patches (or sparse codes) measured on the fly (see module docstring).

    ``dataset``: a :class:`spade.data.PatchDataset` or :class:`spade.data.CodeDataset`."""

    def __init__(self, dataset: PatchDataset | CodeDataset, batch: int, seed: int, noise_level: float | None):
        self.dataset = dataset
        self.batch_size, self.seed, self.noise_level = batch, seed, noise_level
        self._perm: tuple[int, np.ndarray] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def _index(self, k: int) -> int:
        n = len(self.dataset)
        epoch = k // n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng((self.seed, epoch)).permutation(n))
        return int(self._perm[1][k % n])

    def batch(self, step: int, physics: LinearPhysics, rank: int = 0, world: int = 1,
              device: str | torch.device = "cpu") -> Batch:
        part, weight = shard(self.batch_size, rank, world)
        ks = range(step * self.batch_size, (step + 1) * self.batch_size)[part]
        x = to_domain(torch.stack([self.dataset[self._index(k)] for k in ks]).to(device), physics)
        sigma = physics.noise_level if self.noise_level is None else self.noise_level
        if sigma > 0 or isinstance(physics, SparseRecovery):  # sparse recovery: noise at the operator's SNR
            y = torch.cat([physics.simulate(x[i:i + 1], self.noise_level, seed=sample_seed(self.seed, k))
                           for i, k in enumerate(ks)])
        else:
            y = physics.A(x)
        return Batch(y, x, None, weight)


class MeasurementSet:
    """The images measured once, whole, without their ground truth (see module docstring)."""

    def __init__(self, images: list[Image], physics: LinearPhysics, protocol: str, batch: int, seed: int,
                 noise_level: float | None, device: str | torch.device = "cpu"):
        require(len(images) > 0, "no images to measure")
        physics = physics.to(device)
        groups: dict[tuple, list[torch.Tensor]] = {}
        for i, image in enumerate(images):
            x = prepare(image, physics, protocol)[0].to(device)
            y = physics.simulate(x, noise_level=noise_level, seed=seed + i)
            groups.setdefault(tuple(y.shape[1:]), []).append(y)
        self.chunks = [torch.cat(ys[i:i + batch]) for ys in groups.values() for i in range(0, len(ys), batch)]
        self.seed = seed
        self._perm: tuple[int, list[int]] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.chunks)

    def batch(self, step: int, physics: LinearPhysics, rank: int = 0, world: int = 1,
              device: str | torch.device = "cpu") -> Batch:
        n = len(self.chunks)
        epoch = step // n
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(sample_seed(self.seed, epoch))
            self._perm = (epoch, torch.randperm(n, generator=gen).tolist())
        c = self._perm[1][step % n]
        part, weight = shard(len(self.chunks[c]), rank, world)
        return Batch(self.chunks[c][part].to(device), None, (c, part.start, part.stop), weight)


def same_physics(a: LinearPhysics, b: LinearPhysics) -> bool:
    """Whether two operators are the same (kind, settings and tensors)."""
    if a.kind != b.kind or a.settings() != b.settings():
        return False
    ta, tb = a.tensors(), b.tensors()
    return ta.keys() == tb.keys() and all(ta[k].shape == tb[k].shape and torch.equal(ta[k], tb[k]) for k in ta)
