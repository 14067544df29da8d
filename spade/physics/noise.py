"""Noise models: what ``simulate`` adds to clean measurements ``A x``.

A noise model is called as ``noise(y, seed=None)`` and returns ``y`` plus noise of the
shape and dtype of ``y``. ``seed`` draws from a fresh generator seeded with it (the same
seed gives the same noise); without it the model draws from its own generator, seeded
once at construction (``seed=``; reproducible sequence of draws), or from torch's global
generator when it has none.
"""
from __future__ import annotations

import math

import torch

from ..errors import require


class GaussianNoise:
    """White Gaussian noise of standard deviation ``sigma`` (per real component)."""

    def __init__(self, sigma: float = 0.0, seed: int | None = None):
        require(sigma >= 0, f"noise level {sigma} is negative: give a value >= 0")
        self.sigma = float(sigma)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    @property
    def noiseless(self) -> bool:
        """Whether the model adds nothing (then ``noise(y) is y``)."""
        return self.sigma == 0

    def _generator(self, device: torch.device, seed: int | None) -> torch.Generator | None:
        if seed is not None:
            return torch.Generator(device=device).manual_seed(int(seed))
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(int(self.seed))
        return self._generators[device]

    def std(self, y: torch.Tensor) -> torch.Tensor | float:
        """Standard deviation of the noise added to ``y`` (a scalar or per sample)."""
        return self.sigma

    def __call__(self, y: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        if self.noiseless:
            return y
        n = torch.randn(y.shape, generator=self._generator(y.device, seed), dtype=y.dtype, device=y.device)
        return y + self.std(y) * n

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"


class SNRNoise(GaussianNoise):
    """White Gaussian noise at a signal-to-noise ratio of ``snr_db`` per sample: standard
    deviation ``||y_i|| / sqrt(numel(y_i)) * 10^(-snr_db / 20)`` for sample ``i``."""

    def __init__(self, snr_db: float, seed: int | None = None):
        require(isinstance(snr_db, (int, float)) and -100 < snr_db < math.inf,
                f"SNR {snr_db} dB is not a usable signal-to-noise ratio")
        super().__init__(0.0, seed)
        self.snr_db = float(snr_db)

    @property
    def noiseless(self) -> bool:
        return False

    def std(self, y: torch.Tensor) -> torch.Tensor:
        flat = y.flatten(1)
        sigma = flat.norm(dim=1) / math.sqrt(flat.shape[1]) * 10 ** (-self.snr_db / 20)
        return sigma.view(-1, *([1] * (y.dim() - 1)))

    def __repr__(self) -> str:
        return f"SNRNoise(snr_db={self.snr_db})"
