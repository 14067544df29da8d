"""Metrics against scikit-image on the same arrays."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from spade import metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    gt = rng.random((3, 40, 48))
    rec = np.clip(gt + 0.05 * rng.standard_normal(gt.shape), 0, 1)
    return rec, gt


def test_psnr_matches_skimage(pair):
    rec, gt = pair
    for rng in (1.0, 255.0, gt.max()):
        assert abs(metrics.psnr(rec, gt, rng) - peak_signal_noise_ratio(gt, rec, data_range=rng)) < 1e-4


def test_fastmri_conventions(pair):
    rec, gt = pair
    rec, gt = rec[0] * 3.7, gt[0] * 3.7
    out = metrics.fastmri_metrics(rec, gt)
    assert abs(out["psnr"] - peak_signal_noise_ratio(gt, rec, data_range=gt.max())) < 1e-4
    assert abs(out["ssim"] - structural_similarity(gt, rec, data_range=gt.max())) < 1e-8
    assert abs(out["nmse"] - np.sum((rec - gt) ** 2) / np.sum(gt ** 2)) < 1e-12


def test_sr_conventions(pair):
    rec, gt = pair
    out = metrics.sr_metrics(rec, gt, scale=3)
    y_rec = rgb2ycbcr(np.moveaxis(rec, 0, -1))[..., 0][3:-3, 3:-3]
    y_gt = rgb2ycbcr(np.moveaxis(gt, 0, -1))[..., 0][3:-3, 3:-3]
    assert abs(out["psnr"] - peak_signal_noise_ratio(y_gt, y_rec, data_range=255)) < 1e-4
    assert abs(out["ssim"] - structural_similarity(y_gt, y_rec, data_range=255)) < 1e-8
    # grey images are their own luminance
    grey = metrics.sr_metrics(rec[:1], gt[:1], scale=2)
    assert abs(grey["psnr"] - peak_signal_noise_ratio(gt[0, 2:-2, 2:-2] * 255, rec[0, 2:-2, 2:-2] * 255,
                                                      data_range=255)) < 1e-4


def test_ista_conventions(pair):
    rec, gt = pair
    gt8 = np.round(gt[0] * 255).astype(np.uint8)
    out = metrics.ista_metrics(rec[0] * 1.1, gt8)  # values above 1 are clipped
    r = np.clip(rec[0] * 1.1, 0, 1) * 255
    assert abs(out["psnr"] - peak_signal_noise_ratio(gt8.astype(np.float64), r, data_range=255)) < 1e-4
    assert abs(out["ssim"] - structural_similarity(r, gt8.astype(np.float64), data_range=255)) < 1e-8


def test_nmse_db_and_identical_images(pair):
    rec, gt = pair
    assert abs(metrics.nmse_db(rec, gt) - 10 * np.log10(metrics.nmse(rec, gt))) < 1e-12
    assert metrics.psnr(gt, gt, 1.0) == float("inf")
