"""Sparse recovery: ``y = A x + n`` with a Gaussian matrix, the classic LISTA benchmark.

Conventions (Gregor & LeCun 2010; Chen et al. 2018)
---------------------------------------------------
* codes ``x``: (B, n) vectors, Bernoulli-Gaussian: each entry is nonzero with
  probability ``p`` (0.1) and then standard normal (:func:`bernoulli_gaussian`);
* measurements ``y``: (B, m); ``A``: (m, n), i.i.d. Gaussian with unit-norm columns,
  drawn from ``seed`` (m = 250, n = 500 by default);
* noise: ``snr_db`` (``None`` = noiseless, 40 dB in the classic noisy setting) sets
  every sample's noise standard deviation to ``||A x|| / sqrt(m) * 10^(-snr/20)``; an
  explicit ``noise_level`` (absolute standard deviation) is used instead when given;
* ``A_dagger`` is the minimum-norm least-squares solution ``A^T (A A^T)^-1 y``;
  :func:`ista` is the classical iterative soft-thresholding solver LISTA unrolls.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import require
from .base import LinearPhysics
from .noise import SNRNoise


def gaussian_matrix(m: int, n: int, seed: int = 0) -> torch.Tensor:
    """(m, n) Gaussian matrix with unit-norm columns."""
    require(1 <= m and 1 <= n, f"matrix size {m} x {n}: both must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.randn(m, n, generator=gen, dtype=torch.float64)
    return (a / a.norm(dim=0, keepdim=True)).float()


def bernoulli_gaussian(batch: int, n: int, p: float = 0.1, seed: int | None = None,
                       device: str | torch.device = "cpu") -> torch.Tensor:
    """(batch, n) codes: each entry nonzero with probability ``p``, nonzero values N(0, 1)."""
    require(0 < p <= 1, f"sparsity probability {p} is outside (0, 1]")
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    support = torch.rand(batch, n, generator=gen) < p
    values = torch.randn(batch, n, generator=gen)
    return (values * support).to(device)


def soft_threshold(v: torch.Tensor, theta) -> torch.Tensor:
    """``sign(v) max(|v| - theta, 0)``."""
    return torch.sign(v) * torch.relu(v.abs() - theta)


class SparseRecovery(LinearPhysics):
    """``y = A x + n`` for code vectors (see module docstring)."""

    kind = "sparse"
    protocols = ("nmse",)
    config_keys = frozenset({"m", "n", "seed", "snr_db"})

    def __init__(self, matrix: torch.Tensor, snr_db: float | None = None, noise_level: float = 0.0, seed: int | None = None):
        super().__init__(noise_level)
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        require(matrix.dim() == 2 and matrix.shape[0] <= matrix.shape[1],
                f"sparse-recovery matrix has shape {tuple(matrix.shape)}: expected (m, n) with m <= n")
        if snr_db is not None and math.isinf(snr_db):
            snr_db = None
        self.snr_db = None if snr_db is None else float(snr_db)
        if self.snr_db is not None:
            self.noise_model = SNRNoise(self.snr_db)
        self.seed = seed
        self.register_buffer("matrix", matrix.contiguous())
        gram = matrix.double() @ matrix.double().T
        self.register_buffer("pinv", torch.linalg.solve(gram, matrix.double()).T.float().contiguous())  # (n, m)
        self.lipschitz = float(torch.linalg.matrix_norm(matrix.double(), ord=2) ** 2)

    @classmethod
    def from_config(cls, config):
        """Settings: ``m`` (250), ``n`` (500), ``seed`` (0) of the Gaussian matrix,
        ``snr_db`` (inf = noiseless; 40 in the classic noisy setting), ``noise_level`` (0;
        an absolute standard deviation, used only without ``snr_db``)."""
        snr = config.get("snr_db", math.inf)
        require(isinstance(snr, (int, float)), f"snr_db = {snr!r} is not a number: give e.g. 40 or inf")
        return cls.gaussian(int(config.get("m", 250)), int(config.get("n", 500)), int(config.get("seed", 0)),
                            snr_db=float(snr), noise_level=float(config.get("noise_level", 0.0)))

    @classmethod
    def gaussian(cls, m: int = 250, n: int = 500, seed: int = 0, **kwargs) -> "SparseRecovery":
        return cls(gaussian_matrix(m, n, seed), seed=seed, **kwargs)

    @property
    def m(self) -> int:
        return self.matrix.shape[0]

    @property
    def n(self) -> int:
        return self.matrix.shape[1]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        require(x.dim() == 2 and x.shape[1] == self.n, f"codes have shape {tuple(x.shape)}: expected (B, {self.n})")
        return x @ self.matrix.T

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        require(y.dim() == 2 and y.shape[1] == self.m,
                f"measurements have shape {tuple(y.shape)}: expected (B, {self.m})")
        return y @ self.matrix

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """Minimum-norm least-squares solution ``A^T (A A^T)^-1 y``."""
        self.A_adjoint(y)  # shape check
        return y @ self.pinv.T

    def image_shape(self, side=None, channels: int = 1):
        """(n,): codes, not images (``side`` and ``channels`` unused)."""
        return (self.n,)

    def _derived_buffers(self) -> set[str]:
        return {"pinv"}

    def settings(self) -> dict[str, Any]:
        return {"m": self.m, "n": self.n, "snr_db": self.snr_db, "noise_level": self.noise_level, "seed": self.seed}

    @classmethod
    def from_settings(cls, settings, tensors):
        return cls(tensors["matrix"], snr_db=settings.get("snr_db"), noise_level=settings.get("noise_level", 0.0),
                   seed=settings.get("seed"))


def ista(y: torch.Tensor, physics: SparseRecovery, lam: float = 0.1, iterations: int = 16) -> torch.Tensor:
    """ISTA for ``min_x 1/2 ||A x - y||^2 + lam ||x||_1`` from ``x = 0``: ``iterations``
    steps of ``x <- soft(x + A^T (y - A x) / L, lam / L)``, ``L = ||A||_2^2``."""
    lip = physics.lipschitz
    x = y.new_zeros(y.shape[0], physics.n)
    for _ in range(iterations):
        x = soft_threshold(physics.gradient_step(x, y, 1 / lip), lam / lip)
    return x
