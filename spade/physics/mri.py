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
  :func:`simulate_coil_maps`; given maps are used as they are. Per-sample maps
  (B, N, H, W), such as a network's estimate, make an operator for one batch
  (:meth:`MRI.with_coil_maps`).
* images for the network: a real test image becomes the real part of a complex image
  (zero imaginary channel, :meth:`MRI.to_domain`); reconstructions are scored as
  magnitude images (:meth:`MRI.to_image`); test images are centre-cropped to the mask.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import require
from .base import LinearPhysics, batch_scalar
from .masks import equispaced_mask, load_mask, random_mask, variable_density_mask
from .noise import GaussianNoise

_MASKS = {"equispaced": equispaced_mask, "random": random_mask, "variable-density": variable_density_mask}


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


def center_crop(x: torch.Tensor, shape) -> torch.Tensor:
    """The centred (h, w) = ``shape`` part of (..., H, W)."""
    h, w = x.shape[-2:]
    th, tw = shape
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


class MRI(LinearPhysics):
    """Cartesian single- or multi-coil MRI with orthonormal FFTs (see module docstring)."""

    kind = "mri"
    protocols = ("fastmri", "ista-mri")
    config_keys = frozenset({"shape", "mask", "acceleration", "center_fraction", "seed", "coils", "real_image",
                             "centered", "mask_key"})

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
            require(coil_maps.dim() in (3, 4) and tuple(coil_maps.shape[-2:]) == tuple(mask.shape),
                    f"coil maps have shape {tuple(coil_maps.shape)}: expected (N, H, W) or per-sample "
                    f"(B, N, H, W) with (H, W) = {tuple(mask.shape)}, the mask's shape")
            require(not real_image, "multi-coil MRI needs complex images (real_image=False)")
            self.register_buffer("coil_maps", torch.view_as_real(coil_maps.to(torch.complex64)).contiguous())
        else:
            self.register_buffer("coil_maps", None)
        self.real_image = bool(real_image)
        self.centered = bool(centered)

    @classmethod
    def from_config(cls, config):
        """Settings: ``shape`` [H, W] (required unless ``mask`` is a file), ``mask``
        (``equispaced`` | ``random`` | ``variable-density`` | path to .mat/.npy;
        ``equispaced``), ``acceleration`` (4), ``center_fraction`` (0.08), ``seed`` (0),
        ``coils`` (1; more simulates smooth coil maps), ``real_image`` (false),
        ``centered`` (true; false for unshifted masks such as ISTA-Net+'s),
        ``mask_key`` ("mask_matrix"), ``noise_level`` (0)."""
        mask_name = str(config.get("mask", "equispaced"))
        seed = int(config.get("seed", 0))
        if mask_name in _MASKS:
            require("shape" in config, "physics 'mri' with a generated mask needs 'shape' [H, W]")
            shape = tuple(int(s) for s in config["shape"])
            args = (shape, float(config.get("acceleration", 4)), float(config.get("center_fraction", 0.08)))
            mask = _MASKS[mask_name](*args) if mask_name == "equispaced" else _MASKS[mask_name](*args, seed=seed)
        else:
            mask = load_mask(mask_name, config.get("mask_key", "mask_matrix"))
            if "shape" in config:
                require(tuple(config["shape"]) == tuple(mask.shape),
                        f"mask {mask_name} is {tuple(mask.shape)}, not the requested shape {tuple(config['shape'])}")
        coils = int(config.get("coils", 1))
        require(coils >= 1, f"coils = {coils}: give 1 (single-coil) or more")
        maps = simulate_coil_maps(coils, mask.shape, seed) if coils > 1 else None
        return cls(mask, coil_maps=maps, real_image=bool(config.get("real_image", False)),
                   centered=bool(config.get("centered", True)), noise_level=float(config.get("noise_level", 0.0)))

    def with_coil_maps(self, coil_maps: torch.Tensor) -> "MRI":
        """The same mask and FFT with other coil maps, (N, H, W) or per-sample
        (B, N, H, W) complex (e.g. maps a network estimated for this batch)."""
        return MRI(self.mask, coil_maps=coil_maps, real_image=False, centered=self.centered,
                   noise_level=self.noise_level)

    # ------------------------------------------------------------------------------
    @property
    def n_coils(self) -> int:
        return 1 if self.coil_maps is None else self.coil_maps.shape[-4]

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

    def noise(self, y: torch.Tensor, model: GaussianNoise, seed: int | None = None) -> torch.Tensor:
        """Noise of ``model`` (per real component) at the sampled k-space locations only."""
        return model(y, seed) * self.mask.unsqueeze(-1)

    # --- images ---------------------------------------------------------------------
    def image_shape(self, side=None, channels: int = 1):
        """(1, H, W): grey images of the mask's size (``side`` and ``channels`` unused)."""
        return (1, *self.mask.shape)

    def to_domain(self, x):
        """Complex images: a zero imaginary channel appended."""
        return x if self.real_image else torch.cat([x, torch.zeros_like(x)], dim=1)

    def to_image(self, x):
        """Complex images: their magnitude; real images as they are."""
        return x if self.real_image else magnitude(x)

    def crop_image(self, x):
        """The centre of the image, of the mask's size."""
        shape = tuple(self.mask.shape)
        require(x.shape[-2] >= shape[0] and x.shape[-1] >= shape[1],
                f"the image is {tuple(x.shape[-2:])}, smaller than the {shape} k-space mask")
        return center_crop(x, shape)

    def default_patch(self):
        """The (square) mask side."""
        h, w = self.mask.shape
        require(h == w, f"patch training for MRI needs a square mask (this one is {h}x{w})")
        return int(h)

    def check_patch(self, size, what="patch size"):
        require(tuple(self.mask.shape) == (size, size),
                f"{what} {size} does not match the MRI mask {tuple(self.mask.shape)}")
        return size

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
