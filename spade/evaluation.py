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
Test images are measured by :func:`spade.data.prepare`; each physics names the
protocols it can be scored under (``physics.protocols``, the default first).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import metrics
from .data.images import Image
from .data.measurements import PIXEL_PROTOCOLS, check_protocol, prepare
from .errors import require
from .limits import check_finite
from .physics import KINDS, LinearPhysics, SparseRecovery, bernoulli_gaussian, ista
from .progress import bar

PROTOCOLS = {
    "ista-cs": "ISTA-Net+ CS: Y (OpenCV full-range BT.601), 0-255, PSNR peak 255, skimage SSIM data_range=255",
    "ista-mri": "ISTA-Net+ MRI: grey 0-255, PSNR peak 255, skimage SSIM data_range=255",
    "fastmri": "fastMRI: magnitude, data_range = max(ground truth), PSNR/SSIM/NMSE",
    "sr": "SR: Y channel (BT.601), border of `scale` pixels cropped, peak 255",
    "nmse": "sparse recovery: seeded Bernoulli-Gaussian codes, NMSE in dB over the test set",
}
#: protocol used when neither the user nor the model file names one: the kind's first
DEFAULT_PROTOCOL = {kind: cls.protocols[0] for kind, cls in KINDS.items()}


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


def score(protocol: str, x_hat: torch.Tensor, ref: np.ndarray, physics: LinearPhysics) -> dict:
    """Metrics of one reconstruction (1, C, H, W) against its reference."""
    img = physics.to_image(x_hat)
    if protocol in PIXEL_PROTOCOLS:
        return metrics.ista_metrics(img[0, 0], ref)
    if protocol == "fastmri":
        return metrics.fastmri_metrics(img[0, 0], ref)
    return metrics.sr_metrics(img[0], ref, physics.scale)


@torch.no_grad()
def evaluate(model: nn.Module | None, physics: LinearPhysics, images: list[Image] | int | None, protocol: str,
             noise_level: float | None = None, seed: int = 0, device: str | torch.device = "cpu",
             keep: int = 0, progress: bool = True) -> Evaluation:
    """Score ``model`` (and the starting point ``A_dagger``) on ``images``.

    ``model=None`` scores the starting point only. Noise (the physics' own level unless
    ``noise_level`` is given) is drawn with
    ``seed + index`` per image. ``keep`` > 0 stores the first ``keep`` reconstructions
    (and ground truths) as arrays in the per-image records under ``"arrays"``. ``progress``:
    a bar over the images on stderr (:mod:`spade.progress`).
    """
    require(protocol in PROTOCOLS, f"unknown protocol '{protocol}': choose one of {sorted(PROTOCOLS)}")
    check_protocol(physics, protocol)
    if protocol == "nmse":
        require(images is None or isinstance(images, int),
                "the nmse protocol draws its own test codes: pass images=None or a number of test vectors")
        return evaluate_sparse(model, physics, images or 1000, seed=seed, noise_level=noise_level, device=device)
    require(len(images) > 0, "no test images")
    physics = physics.to(device)
    if model is not None:
        model = model.to(device).eval()
    result = Evaluation(protocol)
    with bar(images, desc=f"evaluating ({protocol})", unit="image", show=progress) as shown:
        for i, image in enumerate(shown):
            x, ref, crop = prepare(image, physics, protocol)
            x = x.to(device)
            y = physics.simulate(x, noise_level=noise_level, seed=seed + i)
            record = {"image": image.name}
            init = physics.A_dagger(y)[..., :crop[0], :crop[1]].cpu()
            for key, value in score(protocol, init, ref, physics).items():
                record[f"init_{key}"] = value
            if model is not None:
                x_hat = model(y, physics)[..., :crop[0], :crop[1]].float().cpu()
                check_finite(x_hat, f"the reconstruction of {image.name}",
                             "the model diverges on it; no score is given")
                record.update(score(protocol, x_hat, ref, physics))
                if i < keep:
                    record["arrays"] = {"reconstruction": x_hat[0].numpy(), "ground_truth": ref,
                                        "init": init[0].numpy()}
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
