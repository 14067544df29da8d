"""Reading images: grey, or RGB reduced to luminance, with the field's conventions.

An :class:`Image` holds its name and pixels as stored: ``uint8`` (8-bit files), or
``float32`` in [0, 1] (16-bit files scaled by 1/65535; ``.npy`` arrays by the dtype rule of
:func:`spade.limits.check_pixels`, which every image passes).
Pixels are (H, W) for grey/Y images and (3, H, W) for RGB.

RGB is reduced to Y with OpenCV's full-range BT.601 rule (``0.299 R + 0.587 G + 0.114 B``,
rounded to uint8 in fixed point exactly as ``cv2.cvtColor(..., COLOR_BGR2YCrCb)``), the
rule of the ISTA-Net+ CS protocol.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SpadeError, require
from ..limits import check_pixels

EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".npy")


@dataclass(frozen=True)
class Image:
    """A named image; ``pixels`` is (H, W) or (3, H, W), uint8 or float32 in [0, 1]."""

    name: str
    pixels: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[-2:])

    def tensor(self) -> torch.Tensor:
        """(C, H, W) float32 in [0, 1]."""
        return to_tensor(self.pixels)

    def centre_crop(self, size: int) -> "Image":
        """The central (at most) ``size x size`` pixels."""
        h, w = self.shape
        top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
        return Image(self.name, self.pixels[..., top:top + size, left:left + size].copy())


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W) or (C, H, W) pixels -> (C, H, W) float32, uint8 scaled by 1/255."""
    a = np.asarray(pixels)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    else:
        a = a.astype(np.float32)
    if a.ndim == 2:
        a = a[None]
    return torch.from_numpy(np.ascontiguousarray(a))


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luminance of (3, H, W) RGB; uint8 in, uint8 out (OpenCV's
    fixed-point rounding), float in, float out."""
    if rgb.dtype == np.uint8:
        r, g, b = (rgb[i].astype(np.int64) for i in range(3))
        return ((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14).astype(np.uint8)
    r, g, b = rgb[0], rgb[1], rgb[2]
    return (0.299 * r + 0.587 * g + 0.114 * b).astype(np.float32)


def _decode(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        a = np.load(str(path), allow_pickle=False)
        if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (3, 4):
            a = np.moveaxis(a[..., :3], -1, 0)
        return a
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            a = np.asarray(im, dtype=np.float32)
            return a / (65535.0 if a.max() > 255 or im.mode.startswith("I;16") else 255.0)
        if im.mode == "F":  # 32-bit float: values as stored (checked to lie in [0, 1])
            return np.asarray(im, dtype=np.float32)
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        a = np.asarray(im)
    if a.ndim == 3:
        a = np.moveaxis(a, -1, 0)
    return a


def channel_mode(image_channels: int) -> str:
    """How test images are read for a network with ``image_channels`` image channels:
    ``"rgb"`` for 3 (colour super-resolution), else ``"y"`` (grey / luminance)."""
    return "rgb" if image_channels == 3 else "y"


def read_image(path: str | Path, channels: str = "y") -> Image:
    """Read an image file; ``channels="y"`` reduces RGB to luminance, ``"rgb"`` keeps
    colour (grey images are repeated to 3 channels)."""
    path = Path(path)
    require(channels in ("y", "rgb"), f"unknown channel mode '{channels}': use 'y' or 'rgb'")
    require(path.is_file(), f"image {path} does not exist")
    require(path.suffix.lower() in EXTENSIONS,
            f"image {path} has an unsupported type: use one of {', '.join(EXTENSIONS)}")
    try:
        a = _decode(path)
    except SpadeError:
        raise
    except Exception as exc:
        raise SpadeError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from None
    require(a.ndim in (2, 3) and (a.ndim == 2 or a.shape[0] in (1, 3)) and min(a.shape[-2:]) > 0,
            f"image {path} has shape {a.shape}: expected (H, W), (H, W, 3) or (3, H, W)")
    a = check_pixels(a, f"image {path}")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if channels == "y" and a.ndim == 3:
        a = rgb_to_y(a)
    elif channels == "rgb" and a.ndim == 2:
        a = np.repeat(a[None], 3, axis=0)
    return Image(path.stem, a)
