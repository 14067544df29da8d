"""Single-image super-resolution: ``y = (k * x) downsampled by s`` with circular boundary.

Conventions
-----------
* image ``x``: (B, C, H, W) with H and W multiples of the scale ``s`` in {2, 3, 4};
  measurements ``y``: (B, C, H/s, W/s); the same blur ``k`` acts on every channel.
* Decimation keeps the pixels ``x[..., ::s, ::s]`` of the blurred image. The blur is a
  convolution whose kernel is centred ``(s - 1) / 2`` pixels *before* its middle tap, so
  that low-resolution pixel ``j`` averages around high-resolution coordinate
  ``j*s + (s-1)/2``: the geometry of bicubic resizing (``imresize``;
  ``F.interpolate(..., align_corners=False)``), so the bicubic starting point
  :meth:`A_dagger` is aligned with the measurements.
* The data-consistency step :meth:`prox_l2` is the closed-form FFT solution of
  Zhao et al. (2016), the one USRNet uses.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SpadeError, require
from .arrays import read_array
from .base import LinearPhysics, batch_scalar

SCALES = (2, 3, 4)


def _check_scale(scale) -> int:
    require(scale in SCALES, f"scale {scale} is not supported: choose one of {list(SCALES)}")
    return int(scale)


def gaussian_kernel(sigma: float, scale: int) -> torch.Tensor:
    """Isotropic Gaussian blur of standard deviation ``sigma`` (pixels), centred
    ``(scale - 1) / 2`` before the middle tap, normalised to sum 1; odd size ``2R + 1``."""
    scale = _check_scale(scale)
    require(sigma > 0, f"Gaussian kernel width {sigma} must be > 0")
    c = (scale - 1) / 2
    radius = int(math.ceil(3 * sigma + c))
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-((d + c) ** 2) / (2 * sigma ** 2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def _cubic(t: torch.Tensor) -> torch.Tensor:
    a = t.abs()
    return torch.where(a <= 1, 1.5 * a ** 3 - 2.5 * a ** 2 + 1,
                       torch.where(a <= 2, -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2, torch.zeros_like(a)))


def bicubic_kernel(scale: int) -> torch.Tensor:
    """The anti-aliasing bicubic kernel of downscaling by ``scale`` (Keys, a = -0.5,
    stretched by ``scale``, as in MATLAB ``imresize``), centred ``(scale - 1) / 2`` before
    the middle tap."""
    scale = _check_scale(scale)
    c = (scale - 1) / 2
    radius = int(math.ceil(2 * scale + c))
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = _cubic((d + c) / scale)
    k = torch.outer(w, w)
    return (k / k.sum()).float()


def make_kernel(spec: str, scale: int) -> torch.Tensor:
    """A blur kernel from a name: ``"bicubic"``, ``"gaussian:SIGMA"``, or a ``.npy`` /
    ``.mat`` (key ``kernel``) file holding a 2-D array (normalised to sum 1)."""
    spec = str(spec)
    if spec == "bicubic":
        return bicubic_kernel(scale)
    if spec.startswith("gaussian:"):
        try:
            sigma = float(spec.split(":", 1)[1])
        except ValueError:
            raise SpadeError(f"kernel '{spec}': the Gaussian width is not a number (e.g. gaussian:1.6)") from None
        return gaussian_kernel(sigma, scale)
    if Path(spec).suffix.lower() in (".npy", ".mat"):
        array = np.asarray(read_array(spec, "kernel", "kernel"), dtype=np.float64)
        require(array.ndim == 2 and array.sum() > 0, f"kernel in {spec} is not a 2-D array with positive sum")
        return torch.from_numpy(array / array.sum()).float()
    raise SpadeError(f"unknown kernel '{spec}': use 'bicubic', 'gaussian:SIGMA' or a .npy/.mat file")


def _p2o(kernel: torch.Tensor, shape) -> torch.Tensor:
    """Optical transfer function (H, W) complex of a kernel centred at its middle pixel."""
    kh, kw = kernel.shape
    padded = torch.zeros(shape, dtype=kernel.dtype, device=kernel.device)
    padded[:kh, :kw] = kernel
    padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
    return torch.fft.fft2(padded)


def _block_mean(a: torch.Tensor, s: int) -> torch.Tensor:
    """Mean of the ``s x s`` tiles of size (H/s, W/s): (..., H, W) -> (..., H/s, W/s)."""
    H, W = a.shape[-2:]
    return a.reshape(*a.shape[:-2], s, H // s, s, W // s).mean(dim=(-4, -2))


def _tile(a: torch.Tensor, s: int) -> torch.Tensor:
    """``s x s`` copies of ``a``: (..., h, w) -> (..., s h, s w), i.e. ``a.repeat(.., s, s)``.
    A complex ``a`` is tiled through its real view: the ONNX exporter has no complex
    ``repeat`` (nor ``expand``), and torch-pruning cannot trace a ``cat`` of complex tiles."""
    if not a.is_complex():
        return a.repeat(*([1] * (a.dim() - 2)), s, s)
    return torch.view_as_complex(torch.view_as_real(a).repeat(*([1] * (a.dim() - 2)), s, s, 1))


class SuperResolution(LinearPhysics):
    """Blur + decimation by ``scale`` with circular boundary (see module docstring)."""

    kind = "sr"
    protocols = ("sr",)
    config_keys = frozenset({"scale", "kernel"})

    def __init__(self, scale: int, kernel: torch.Tensor | str = "bicubic", noise_level: float = 0.0,
                 kernel_name: str | None = None):
        super().__init__(noise_level)
        self.scale = _check_scale(scale)
        if isinstance(kernel, str):
            kernel_name = kernel
            kernel = make_kernel(kernel, self.scale)
        kernel = torch.as_tensor(kernel, dtype=torch.float32)
        require(kernel.dim() == 2, f"blur kernel has shape {tuple(kernel.shape)}: expected (h, w)")
        self.kernel_name = kernel_name or "custom"
        self.register_buffer("kernel", kernel)
        self._otf_cache: dict = {}

    @classmethod
    def from_config(cls, config):
        """Settings: ``scale`` (required: 2, 3 or 4), ``kernel`` ("bicubic" |
        "gaussian:SIGMA" | path), ``noise_level`` (0)."""
        require("scale" in config, "physics 'sr' needs a 'scale' (2, 3 or 4)")
        return cls(config["scale"], config.get("kernel", "bicubic"), noise_level=float(config.get("noise_level", 0.0)))

    def _otf(self, shape, like: torch.Tensor) -> torch.Tensor:
        key = (tuple(shape), like.device, like.dtype)
        otf = self._otf_cache.get(key)
        if otf is None:
            require(self.kernel.shape[0] <= shape[0] and self.kernel.shape[1] <= shape[1],
                    f"image {tuple(shape)} is smaller than the blur kernel {tuple(self.kernel.shape)}")
            otf = _p2o(self.kernel.to(device=like.device, dtype=like.dtype), shape)
            self._otf_cache = {key: otf}
        return otf

    def _check_image(self, x: torch.Tensor) -> None:
        require(x.dim() == 4 and x.shape[-2] % self.scale == 0 and x.shape[-1] % self.scale == 0,
                f"image has shape {tuple(x.shape)}: expected (B, C, H, W) with H and W multiples "
                f"of the scale {self.scale} (crop it first)")

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Circular convolution with the kernel, (B, C, H, W) -> (B, C, H, W)."""
        otf = self._otf(x.shape[-2:], x)
        return torch.fft.ifft2(torch.fft.fft2(x) * otf).real

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x)
        s = self.scale
        return self.blur(x)[..., ::s, ::s]

    def _upsample_zeros(self, y: torch.Tensor) -> torch.Tensor:
        s = self.scale
        up = y.new_zeros(*y.shape[:-2], y.shape[-2] * s, y.shape[-1] * s)
        up[..., ::s, ::s] = y
        return up

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        require(y.dim() == 4, f"low-resolution image has shape {tuple(y.shape)}: expected (B, C, h, w)")
        up = self._upsample_zeros(y)
        otf = self._otf(up.shape[-2:], up)
        return torch.fft.ifft2(torch.fft.fft2(up) * otf.conj()).real

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling of ``y`` (the usual starting point and baseline)."""
        return F.interpolate(y, scale_factor=self.scale, mode="bicubic", align_corners=False)

    def prox_l2(self, z, y, gamma, max_iter: int = 0, tol: float = 0.0):
        """Closed-form FFT solution (Zhao et al. 2016); ``max_iter``/``tol`` are unused."""
        s = self.scale
        alpha = 1.0 / batch_scalar(gamma, z)
        H, W = z.shape[-2:]
        otf = self._otf((H, W), z)
        fr = otf.conj() * torch.fft.fft2(self._upsample_zeros(y)) + alpha * torch.fft.fft2(z)
        fbr = _block_mean(otf * fr, s)
        inv_w = _block_mean(otf.abs() ** 2, s)  # (H/s, W/s): the same for every image
        fx = (fr - otf.conj() * _tile(fbr / (inv_w + alpha), s)) / alpha
        return torch.fft.ifft2(fx).real

    def image_shape(self, side=None, channels: int = 1):
        """(channels, side, side), ``side`` (256 by default) a multiple of the scale."""
        return super().image_shape(side or 256, channels)

    def crop_image(self, x):
        """The top-left part whose sides are multiples of the scale."""
        s = self.scale
        return x[..., :(x.shape[-2] // s) * s, :(x.shape[-1] // s) * s]

    def check_patch(self, size, what="patch size"):
        require(size % self.scale == 0, f"{what} {size} is not a multiple of the SR scale {self.scale}")
        return size

    def settings(self) -> dict[str, Any]:
        return {"scale": self.scale, "kernel": self.kernel_name, "noise_level": self.noise_level}

    @classmethod
    def from_settings(cls, settings, tensors):
        return cls(settings["scale"], tensors["kernel"], noise_level=settings.get("noise_level", 0.0),
                   kernel_name=settings.get("kernel"))
