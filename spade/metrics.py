"""PSNR, SSIM and NMSE under the conventions of the field.

Each protocol states its scale and data range; every function takes one image pair as
NumPy arrays (or tensors) of shape (H, W) or (C, H, W) and returns Python floats.

* ``fastmri``: magnitude images; PSNR and SSIM with ``data_range = max(ground truth)``;
  NMSE ``||x - gt||^2 / ||gt||^2``.
* ``sr``: luminance (Y of BT.601, ``skimage.color.rgb2ycbcr``, on the 0-255 scale) of RGB
  images, or the grey image itself; a border of ``scale`` pixels cropped; peak 255.
* ``ista``: the ISTA-Net+ protocols (CS and MRI): reconstruction clipped to [0, 1] and
  scaled by 255 against the uint8 ground truth; PSNR with peak 255; scikit-image SSIM
  with ``data_range=255`` and its default 7x7 uniform window.
* ``nmse_db``: NMSE in dB, for sparse recovery (LISTA).

SSIM is scikit-image's ``structural_similarity`` in every protocol. scikit-image (and
SciPy behind it) is imported when a function first needs it: a command that only parses
its arguments does not load it.
"""
from __future__ import annotations

import math

import numpy as np


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def psnr(x, ref, data_range: float) -> float:
    """``10 log10(data_range^2 / MSE)``; ``inf`` for identical images."""
    x, ref = _np(x), _np(ref)
    mse = float(np.mean((x - ref) ** 2))
    if mse == 0:
        return math.inf
    return 10 * math.log10(data_range ** 2 / mse)


def ssim(x, ref, data_range: float) -> float:
    """scikit-image SSIM (default 7x7 uniform window) of 2-D images or (C, H, W) stacks
    (channels averaged)."""
    from skimage.metrics import structural_similarity

    x, ref = _np(x), _np(ref)
    if x.ndim == 3:
        return float(np.mean([structural_similarity(a, b, data_range=data_range) for a, b in zip(x, ref)]))
    return float(structural_similarity(x, ref, data_range=data_range))


def nmse(x, ref) -> float:
    """Normalised MSE ``||x - ref||^2 / ||ref||^2``."""
    x, ref = _np(x), _np(ref)
    return float(np.sum((x - ref) ** 2) / np.sum(ref ** 2))


def nmse_db(x, ref) -> float:
    """NMSE in decibels (``10 log10``), the LISTA convention."""
    return 10 * math.log10(nmse(x, ref))


def fastmri_metrics(x, gt) -> dict:
    """fastMRI: magnitude images, ``data_range = gt.max()``."""
    x, gt = np.abs(_np(x)), np.abs(_np(gt))
    rng = float(gt.max())
    return {"psnr": psnr(x, gt, rng), "ssim": ssim(x, gt, rng), "nmse": nmse(x, gt)}


def luminance(img, scale255: bool = True) -> np.ndarray:
    """Y channel (BT.601, 16-235 on the 0-255 scale) of a (3, H, W) image in [0, 1]; a
    (1, H, W) or (H, W) grey image is returned as is (times 255)."""
    img = _np(img)
    if img.ndim == 3 and img.shape[0] == 3:
        from skimage.color import rgb2ycbcr

        y = rgb2ycbcr(np.clip(np.moveaxis(img, 0, -1), 0, 1))[..., 0]
        return y if scale255 else y / 255.0
    img = img[0] if img.ndim == 3 else img
    return img * 255.0 if scale255 else img


def sr_metrics(x, gt, scale: int) -> dict:
    """SR: Y channel on the 0-255 scale, border of ``scale`` pixels cropped, peak 255."""
    y, ref = luminance(np.clip(_np(x), 0, 1)), luminance(gt)
    if scale > 0:
        y, ref = y[scale:-scale, scale:-scale], ref[scale:-scale, scale:-scale]
    return {"psnr": psnr(y, ref, 255.0), "ssim": ssim(y, ref, 255.0)}


def ista_metrics(x, gt_uint8) -> dict:
    """ISTA-Net+ (CS and MRI): ``clip(x, 0, 1) * 255`` against the uint8 ground truth."""
    rec = np.clip(_np(x), 0, 1) * 255.0
    ref = _np(gt_uint8)
    return {"psnr": psnr(rec, ref, 255.0), "ssim": ssim(rec, ref, 255.0)}
