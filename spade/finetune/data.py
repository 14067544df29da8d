"""Where training batches come from: the two data pipelines and the per-step physics.

* :class:`PatchStream` — random patches (``spade.data.PatchDataset``) of training images
  (the default for every strategy), or for sparse recovery fresh Bernoulli-Gaussian codes
  (``spade.data.CodeDataset``), measured on the fly with noise seeded per sample. Sample ``k`` of the
  run (``k = step * batch + j``) is a pure function of ``(seed, k)``, so a resumed or
  distributed run sees exactly the batches of a single uninterrupted one.
* :class:`MeasurementSet` — whole images measured once (the default of test-time
  adaptation, where the images are the test images themselves, as in the SPADE paper's
  school and self-supervised fine-tuning): every image measured exactly as
  :func:`spade.evaluation.evaluate` measures it (:func:`spade.data.prepare`, noise seed
  ``seed + index``); the ground truth is dropped right after measuring. Measurements of
  equal shape are grouped into batches; an epoch visits every batch once, in an order
  seeded by ``(seed, epoch)``.
* :func:`physics_at` — the operator of a training step: the physics' own ``step``, seeded
  by ``(seed, step)`` (a fixed operator is the same every step; a
  :class:`spade.physics.RandomBlockCS` draws a new ratio and Phi).

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

from ..data import CodeDataset, Image, PatchDataset, prepare
from ..errors import require
from ..physics import LinearPhysics, RandomBlockCS


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


def physics_at(physics: LinearPhysics | RandomBlockCS, step: int, seed: int) -> LinearPhysics:
    """The operator of training step ``step`` of a run seeded with ``seed``."""
    return physics.step(seed=sample_seed(seed, step))


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
        x = physics.to_domain(torch.stack([self.dataset[self._index(k)] for k in ks]).to(device))
        if physics.noise_for(self.noise_level).noiseless:
            y = physics.A(x)
        else:
            y = torch.cat([physics.simulate(x[i:i + 1], self.noise_level, seed=sample_seed(self.seed, k))
                           for i, k in enumerate(ks)])
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
