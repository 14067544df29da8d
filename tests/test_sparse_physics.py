"""Sparse-recovery physics: adjoint, matrix, noise at a given SNR, codes, settings, ISTA, the nmse protocol."""
from __future__ import annotations

import math

import pytest
import torch

from spade.errors import SpadeError
from spade.evaluation import evaluate
from spade.metrics import nmse_db
from spade.physics import (KINDS, SparseRecovery, bernoulli_gaussian, build_physics, gaussian_matrix, ista,
                           physics_from_settings)


@pytest.fixture(scope="module")
def physics():
    return build_physics({"kind": "sparse"})


def test_matrix_shape_columns_and_seed(physics):
    assert (physics.m, physics.n) == (250, 500) and isinstance(physics, SparseRecovery)
    assert torch.allclose(physics.matrix.norm(dim=0), torch.ones(500), atol=1e-5)
    assert torch.equal(gaussian_matrix(250, 500, 0), physics.matrix)
    assert not torch.equal(gaussian_matrix(250, 500, 1), physics.matrix)
    assert KINDS["sparse"] is SparseRecovery
    x = bernoulli_gaussian(3, 500, seed=0)
    assert physics.A(x).shape == (3, 250) and physics.image_shape() == (500,)


def test_dagger_is_minimum_norm_solution(physics):
    y = torch.randn(4, 250)
    x = physics.A_dagger(y)
    assert torch.allclose(physics.A(x), y, atol=1e-4)
    # minimum norm: x lies in the row space of A (x = A^T z)
    z = torch.linalg.lstsq(physics.matrix.T.double(), x.T.double()).solution
    assert torch.allclose((physics.matrix.T.double() @ z).T.float(), x, atol=1e-4)


def test_bernoulli_gaussian_codes():
    x = bernoulli_gaussian(400, 500, p=0.1, seed=3)
    density = float((x != 0).float().mean())
    assert abs(density - 0.1) < 0.005
    nonzero = x[x != 0]
    assert abs(float(nonzero.std()) - 1) < 0.03 and abs(float(nonzero.mean())) < 0.03
    assert torch.equal(x, bernoulli_gaussian(400, 500, p=0.1, seed=3))
    with pytest.raises(SpadeError, match="probability"):
        bernoulli_gaussian(2, 5, p=0)


def test_snr_noise():
    noiseless = build_physics({"kind": "sparse", "m": 50, "n": 100})
    noisy = build_physics({"kind": "sparse", "m": 50, "n": 100, "snr_db": 40})
    x = bernoulli_gaussian(2000, 100, seed=0)
    clean = noiseless.simulate(x)
    assert torch.equal(clean, noiseless.A(x))
    y = noisy.simulate(x, seed=1)
    snr = 10 * math.log10(float((clean ** 2).sum() / ((y - clean) ** 2).sum()))
    assert abs(snr - 40) < 0.3
    assert torch.equal(y, noisy.simulate(x, seed=1))
    explicit = noisy.simulate(x, noise_level=0.1, seed=1)  # absolute standard deviation
    assert abs(float((explicit - clean).std()) - 0.1) < 0.005


def test_settings_round_trip():
    p = build_physics({"kind": "sparse", "m": 30, "n": 60, "seed": 4, "snr_db": 40})
    q = physics_from_settings(p.kind, p.settings(), p.tensors())
    assert q.settings() == p.settings() and p.settings()["snr_db"] == 40.0
    assert set(p.tensors()) == {"matrix"}  # the pseudo-inverse is derived
    assert torch.equal(p.pinv, q.pinv)
    assert build_physics({"kind": "sparse", "snr_db": math.inf}).settings()["snr_db"] is None
    with pytest.raises(SpadeError, match="no setting"):
        build_physics({"kind": "sparse", "rows": 3})
    with pytest.raises(SpadeError, match="m <= n"):
        SparseRecovery(torch.randn(5, 3))


def test_prox_l2_optimality(physics):
    z, y = torch.randn(3, 500), torch.randn(3, 250)
    x = physics.prox_l2(z, y, 0.7)
    residual = x + 0.7 * physics.AtA(x) - (z + 0.7 * physics.A_adjoint(y))
    assert float(residual.norm() / z.norm()) < 1e-4


def test_ista_converges():
    p = build_physics({"kind": "sparse", "m": 100, "n": 200})
    x = bernoulli_gaussian(100, 200, seed=0)
    y = p.simulate(x)
    assert nmse_db(ista(y, p, 0.05, 200), x) < -15 < nmse_db(ista(y, p, 0.05, 16), x)


def test_nmse_protocol():
    p = build_physics({"kind": "sparse", "m": 50, "n": 100})
    result = evaluate(None, p, 200, "nmse", seed=5).summary()
    assert set(result) == {"init_nmse_db", "ista_nmse_db"}
    assert result["ista_nmse_db"] < result["init_nmse_db"] < 0
    assert evaluate(None, p, 200, "nmse", seed=5).summary() == result
    with pytest.raises(SpadeError, match="draws its own test codes"):
        evaluate(None, p, ["an image"], "nmse")
    with pytest.raises(SpadeError, match="needs SparseRecovery"):
        evaluate(None, build_physics({"kind": "sr", "scale": 2}), None, "nmse")
