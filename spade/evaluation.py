"""Evaluation protocols: measure test images, reconstruct, score under one convention.

========= =====================================================================
protocol  what it does
========= =====================================================================
ista-cs   official ISTA-Net+ CS protocol: uint8 Y image, zero-padded right/bottom by
          ``33 - size mod 33``, measured block-wise, reconstruction cropped, clipped to
          [0, 1]; PSNR (peak 255) and scikit-image SSIM (``data_range=255``).
ista-mri  official ISTA-Net+ MRI protocol: grey image / 255, ``y = mask * FFT2(x)``,
          clipped to [0, 1]; PSNR/SSIM on the 0-255 scale.
fastmri   magnitude images, ``data_range = max(ground truth)``; PSNR, SSIM, NMSE.
          Images larger than the mask are centre-cropped to it.
sr        images cropped to a multiple of the scale; PSNR/SSIM on the Y channel with a
          border of ``scale`` pixels removed.
nmse      sparse recovery (no images): seeded Bernoulli-Gaussian test codes; NMSE in dB
          over the whole test set, ``10 log10(sum ||x - x*||^2 / sum ||x*||^2)``;
          16 iterations of ISTA (LISTA's layer count) are scored too
          (:func:`evaluate_sparse`).
========= =====================================================================

Every protocol also scores the physics' starting point (``A_dagger``: ``Qinit``,
zero-filled, bicubic) so a reconstruction is always seen against what it starts from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import metrics
from .data.images import Image
from .errors import require
from .limits import check_finite
from .physics import MRI, BlockCS, LinearPhysics, SparseRecovery, SuperResolution, bernoulli_gaussian, ista, pad_to_blocks
from .physics.mri import magnitude

PROTOCOLS = {
    "ista-cs": "ISTA-Net+ CS: Y (OpenCV full-range BT.601), 0-255, PSNR peak 255, skimage SSIM data_range=255",
    "ista-mri": "ISTA-Net+ MRI: grey 0-255, PSNR peak 255, skimage SSIM data_range=255",
    "fastmri": "fastMRI: magnitude, data_range = max(ground truth), PSNR/SSIM/NMSE",
    "sr": "SR: Y channel (BT.601), border of `scale` pixels cropped, peak 255",
    "nmse": "sparse recovery: seeded Bernoulli-Gaussian codes, NMSE in dB over the test set",
}
#: protocol used when neither the user nor the model file names one
DEFAULT_PROTOCOL = {"cs": "ista-cs", "mri": "fastmri", "sr": "sr", "sparse": "nmse"}
_PHYSICS_OF = {"ista-cs": BlockCS, "ista-mri": MRI, "fastmri": MRI, "sr": SuperResolution, "nmse": SparseRecovery}


@dataclass
class Evaluation:
    """Per-image and mean scores of a model and of its starting point."""

    protocol: str
    per_image: list[dict] = field(default_factory=list)

    def mean(self, key: str) -> float:
        vals = [r[key] for r in self.per_image if key in r]
        return float(np.mean(vals)) if vals else math.nan

    def summary(self) -> dict:
        keys = [k for k in self.per_image[0] if k not in ("image", "arrays")] if self.per_image else []
        return {k: self.mean(k) for k in keys}

    def to_json(self) -> dict:
        out = {"protocol": self.protocol, "convention": PROTOCOLS[self.protocol], "n_images": len(self.per_image)}
        out.update(self.summary())
        out["per_image"] = self.per_image
        return out


def _center_crop(x: torch.Tensor, shape) -> torch.Tensor:
    h, w = x.shape[-2:]
    th, tw = shape
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


def prepare(image: Image, physics: LinearPhysics, protocol: str) -> tuple[torch.Tensor, np.ndarray, tuple]:
    """Image -> (network-domain ground truth (1, C, H', W'), reference array for the
    metric, crop (h, w) of the reconstruction)."""
    x = image.tensor().unsqueeze(0)  # (1, C, H, W) in [0, 1]
    if protocol == "ista-cs":
        require(image.pixels.dtype == np.uint8 and image.pixels.ndim == 2,
                f"image {image.name}: the ista-cs protocol needs 8-bit grey/Y images")
        h, w = image.shape
        return pad_to_blocks(x, physics.block_size, "ista"), image.pixels, (h, w)
    if protocol in ("ista-mri", "fastmri"):
        shape = tuple(physics.mask.shape)
        require(x.shape[-2] >= shape[0] and x.shape[-1] >= shape[1],
                f"image {image.name} is {tuple(x.shape[-2:])}, smaller than the {shape} k-space mask")
        x = _center_crop(x, shape)
        if protocol == "ista-mri":
            require(image.pixels.dtype == np.uint8, f"image {image.name}: the ista-mri protocol needs 8-bit images")
            ref = _center_crop(torch.from_numpy(image.pixels.astype(np.float64)), shape).numpy()
        else:
            ref = x[0, 0].double().numpy()
        if not physics.real_image:
            x = torch.cat([x, torch.zeros_like(x)], dim=1)
        return x, ref, shape
    if protocol == "sr":
        s = physics.scale
        h, w = (image.shape[0] // s) * s, (image.shape[1] // s) * s
        x = x[..., :h, :w]
        return x, x[0].double().numpy(), (h, w)
    raise AssertionError(protocol)


def score(protocol: str, x_hat: torch.Tensor, ref: np.ndarray, physics: LinearPhysics) -> dict:
    """Metrics of one reconstruction (1, C, H, W) against its reference."""
    if protocol in ("ista-cs", "ista-mri"):
        img = x_hat[0, 0] if x_hat.shape[1] == 1 else magnitude(x_hat)[0, 0]
        return metrics.ista_metrics(img, ref)
    if protocol == "fastmri":
        return metrics.fastmri_metrics(magnitude(x_hat)[0, 0], ref)
    return metrics.sr_metrics(x_hat[0], ref, physics.scale)


@torch.no_grad()
def evaluate(model: nn.Module | None, physics: LinearPhysics, images: list[Image] | int | None, protocol: str,
             noise_level: float | None = None, seed: int = 0, device: str | torch.device = "cpu",
             keep: int = 0) -> Evaluation:
    """Score ``model`` (and the starting point ``A_dagger``) on ``images``.

    ``model=None`` scores the starting point only. Noise (the physics' own level unless
    ``noise_level`` is given) is drawn with
    ``seed + index`` per image. ``keep`` > 0 stores the first ``keep`` reconstructions
    (and ground truths) as arrays in the per-image records under ``"arrays"``.
    """
    require(protocol in PROTOCOLS, f"unknown protocol '{protocol}': choose one of {sorted(PROTOCOLS)}")
    require(isinstance(physics, _PHYSICS_OF[protocol]),
            f"protocol '{protocol}' needs {_PHYSICS_OF[protocol].__name__} physics, the model has "
            f"{type(physics).__name__}")
    if protocol == "nmse":
        require(images is None or isinstance(images, int),
                "the nmse protocol draws its own test codes: pass images=None or a number of test vectors")
        return evaluate_sparse(model, physics, images or 1000, seed=seed, noise_level=noise_level, device=device)
    require(len(images) > 0, "no test images")
    physics = physics.to(device)
    if model is not None:
        model = model.to(device).eval()
    result = Evaluation(protocol)
    for i, image in enumerate(images):
        x, ref, crop = prepare(image, physics, protocol)
        x = x.to(device)
        y = physics.simulate(x, noise_level=noise_level, seed=seed + i)
        record = {"image": image.name}
        init = physics.A_dagger(y)[..., :crop[0], :crop[1]].cpu()
        for key, value in score(protocol, init, ref, physics).items():
            record[f"init_{key}"] = value
        if model is not None:
            x_hat = model(y, physics)[..., :crop[0], :crop[1]].float().cpu()
            check_finite(x_hat, f"the reconstruction of {image.name}", "the model diverges on it; no score is given")
            record.update(score(protocol, x_hat, ref, physics))
            if i < keep:
                record["arrays"] = {"reconstruction": x_hat[0].numpy(), "ground_truth": ref, "init": init[0].numpy()}
        result.per_image.append(record)
    return result


@torch.no_grad()
def evaluate_sparse(model: nn.Module | None, physics: SparseRecovery, n_samples: int = 1000, p: float = 0.1,
                    seed: int = 0, noise_level: float | None = None, device: str | torch.device = "cpu",
                    ista_lam: float = 0.1, ista_iterations: int = 16) -> Evaluation:
    """NMSE (dB) on ``n_samples`` Bernoulli-Gaussian codes drawn with ``seed`` (noise with
    ``seed + 1``), for ``model`` (``nmse_db``), the starting point ``A_dagger``
    (``init_nmse_db``) and ``ista_iterations`` of ISTA with ``ista_lam`` (``ista_nmse_db``)."""
    require(n_samples >= 1, f"number of test vectors {n_samples} must be >= 1")
    physics = physics.to(device)
    codes = bernoulli_gaussian(n_samples, physics.n, p, seed=seed, device=device)
    y = physics.simulate(codes, noise_level=noise_level, seed=seed + 1)
    record = {"image": f"bernoulli-gaussian p={p} n={n_samples} seed={seed}",
              "init_nmse_db": metrics.nmse_db(physics.A_dagger(y), codes),
              "ista_nmse_db": metrics.nmse_db(ista(y, physics, ista_lam, ista_iterations), codes)}
    if model is not None:
        record["nmse_db"] = metrics.nmse_db(model.to(device).eval()(y, physics), codes)
    return Evaluation("nmse", [record])
