"""Cartesian MRI: ``y = M F S x`` (single- or multi-coil), orthonormal FFT.

Conventions
-----------
* image ``x``: (B, 1, H, W) real (``real_image=True``, e.g. magnitude data as used by
  ISTA-Net+) or (B, 2, H, W) complex as real/imaginary channels;
* k-space ``y``: (B, N, H, W, 2), N coils (N = 1 for single-coil), last axis real/imag
  (the fastMRI layout);
* ``mask``: (H, W) 0/1 in the layout of the k-space the FFT produces: with
  ``centered=True`` the FFT is ``fftshift(fft2(ifftshift(.)))`` (fastMRI), with
  ``centered=False`` the plain ``fft2`` (ISTA-Net+: the normal operator is then exactly
  ``Re(IFFT2(mask * FFT2(x)))``);
* coil maps ``S``: (N, H, W) complex, normalised to sum-of-squares 1 by
  :func:`simulate_coil_maps`; given maps are used as they are.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import require
from .base import LinearPhysics, batch_scalar


def fft2(x: torch.Tensor, centered: bool) -> torch.Tensor:
    """Orthonormal 2-D FFT over the last two axes (centred: fastMRI's shifted layout)."""
    if centered:
        x = torch.fft.ifftshift(x, dim=(-2, -1))
        return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))
    return torch.fft.fft2(x, norm="ortho")


def ifft2(k: torch.Tensor, centered: bool) -> torch.Tensor:
    """Inverse of :func:`fft2`."""
    if centered:
        k = torch.fft.ifftshift(k, dim=(-2, -1))
        return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=(-2, -1))
    return torch.fft.ifft2(k, norm="ortho")


def to_complex(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) real or (B, 2, H, W) real/imag channels -> (B, H, W) complex."""
    if x.shape[1] == 1:
        return torch.complex(x[:, 0], torch.zeros_like(x[:, 0]))
    return torch.complex(x[:, 0], x[:, 1])


def from_complex(z: torch.Tensor, real_image: bool) -> torch.Tensor:
    """(B, H, W) complex -> (B, 1, H, W) real part or (B, 2, H, W) real/imag channels."""
    if real_image:
        return z.real.unsqueeze(1)
    return torch.stack([z.real, z.imag], dim=1)


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """Magnitude image (B, 1, H, W) of a real (B, 1, H, W) or complex (B, 2, H, W) image."""
    if x.shape[1] == 1:
        return x.abs()
    return torch.sqrt(x[:, :1] ** 2 + x[:, 1:2] ** 2)


def simulate_coil_maps(n_coils: int, shape, seed: int = 0) -> torch.Tensor:
    """Smooth synthetic coil sensitivities (N, H, W), complex, sum-of-squares 1.

    Coils sit evenly on a circle around the field of view; each map is a broad Gaussian
    around its coil with a slowly varying phase. ``seed`` rotates the arrangement.
    """
    require(n_coils >= 1, f"number of coils {n_coils} must be >= 1")
    height, width = int(shape[0]), int(shape[1])
    gen = torch.Generator().manual_seed(int(seed))
    rotation = float(torch.rand(1, generator=gen)) * 2 * math.pi
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height, dtype=torch.float64),
                            torch.linspace(-1, 1, width, dtype=torch.float64), indexing="ij")
    maps = []
    for c in range(n_coils):
        angle = rotation + 2 * math.pi * c / n_coils
        cy, cx = 1.5 * math.sin(angle), 1.5 * math.cos(angle)
        dist2 = (yy - cy) ** 2 + (xx - cx) ** 2
        mag = torch.exp(-dist2 / (2 * 1.2 ** 2))
        phase = 0.5 * math.pi * ((yy - cy) * math.sin(angle) + (xx - cx) * math.cos(angle))
        maps.append(torch.polar(mag, phase))
    maps = torch.stack(maps)
    sos = torch.sqrt((maps.abs() ** 2).sum(0, keepdim=True))
    return (maps / sos).to(torch.complex64)


class MRI(LinearPhysics):
    """Cartesian single- or multi-coil MRI with orthonormal FFTs (see module docstring)."""

    kind = "mri"

    def __init__(self, mask: torch.Tensor, coil_maps: torch.Tensor | None = None,
                 real_image: bool = False, centered: bool = True, noise_level: float = 0.0):
        super().__init__(noise_level)
        mask = torch.as_tensor(mask, dtype=torch.float32)
        require(mask.dim() == 2, f"MRI mask has shape {tuple(mask.shape)}: expected (H, W)")
        require(bool(mask.any()), "MRI mask samples no k-space point (all zeros): give a mask with sampled points")
        self.register_buffer("mask", mask)
        if coil_maps is not None:
            coil_maps = torch.as_tensor(coil_maps)
            if not coil_maps.is_complex():
                require(coil_maps.shape[-1] == 2,
                        "real coil maps must have a trailing real/imag axis of size 2")
                coil_maps = torch.view_as_complex(coil_maps.float().contiguous())
            require(coil_maps.dim() == 3 and tuple(coil_maps.shape[-2:]) == tuple(mask.shape),
                    f"coil maps have shape {tuple(coil_maps.shape)}: expected (N, H, W) with "
                    f"(H, W) = {tuple(mask.shape)}, the mask's shape")
            require(not real_image, "multi-coil MRI needs complex images (real_image=False)")
            self.register_buffer("coil_maps", torch.view_as_real(coil_maps.to(torch.complex64)).contiguous())
        else:
            self.register_buffer("coil_maps", None)
        self.real_image = bool(real_image)
        self.centered = bool(centered)

    # ------------------------------------------------------------------------------
    @property
    def n_coils(self) -> int:
        return 1 if self.coil_maps is None else self.coil_maps.shape[0]

    def _maps(self) -> torch.Tensor:
        return torch.view_as_complex(self.coil_maps)

    def _check_image(self, x: torch.Tensor) -> None:
        channels = 1 if self.real_image else 2
        require(x.dim() == 4 and x.shape[1] == channels and tuple(x.shape[-2:]) == tuple(self.mask.shape),
                f"MRI image has shape {tuple(x.shape)}: expected (B, {channels}, "
                f"{self.mask.shape[0]}, {self.mask.shape[1]}) to match the mask")

    def _check_kspace(self, y: torch.Tensor) -> None:
        require(y.dim() == 5 and y.shape[1] == self.n_coils and y.shape[-1] == 2
                and tuple(y.shape[2:4]) == tuple(self.mask.shape),
                f"k-space has shape {tuple(y.shape)}: expected (B, {self.n_coils}, "
                f"{self.mask.shape[0]}, {self.mask.shape[1]}, 2)")

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x)
        z = to_complex(x).unsqueeze(1)  # (B, 1, H, W)
        if self.coil_maps is not None:
            z = z * self._maps()
        k = fft2(z, self.centered) * self.mask
        return torch.view_as_real(k)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_kspace(y)
        k = torch.view_as_complex(y.contiguous()) * self.mask
        z = ifft2(k, self.centered)
        if self.coil_maps is not None:
            z = (z * self._maps().conj()).sum(1)
        else:
            z = z[:, 0]
        return from_complex(z, self.real_image)

    def prox_l2(self, z, y, gamma, max_iter: int = 100, tol: float = 1e-7):
        """Closed form for single-coil complex images, conjugate gradients otherwise."""
        if self.coil_maps is not None or self.real_image:
            return super().prox_l2(z, y, gamma, max_iter=max_iter, tol=tol)
        gamma = batch_scalar(gamma, z)[:, 0]  # (B or 1, 1, 1)
        kz = fft2(to_complex(z), self.centered)
        ky = torch.view_as_complex(y.contiguous())[:, 0] * self.mask
        k = (kz + gamma * ky) / (1 + gamma * self.mask)
        return from_complex(ifft2(k, self.centered), real_image=False)

    def noise(self, y, sigma, generator):
        """Complex white noise of standard deviation ``sigma`` per real component, at
        the sampled k-space locations only."""
        if sigma == 0:
            return y
        n = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        return y + sigma * n * self.mask.unsqueeze(-1)

    def image_shape(self, y):
        return (y.shape[0], 1 if self.real_image else 2, *self.mask.shape)

    # ------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"real_image": self.real_image, "centered": self.centered,
                "noise_level": self.noise_level, "n_coils": self.n_coils,
                "shape": list(self.mask.shape), "sampling_rate": round(float(self.mask.mean()), 6)}

    @classmethod
    def from_settings(cls, settings, tensors):
        return cls(tensors["mask"], coil_maps=tensors.get("coil_maps"),
                   real_image=settings["real_image"], centered=settings["centered"],
                   noise_level=settings.get("noise_level", 0.0))
