"""The training engine on sparse recovery: fresh Bernoulli-Gaussian codes measured on the
fly (noise at the operator's SNR), LISTA trained below ISTA, and clear errors."""
from __future__ import annotations

import math

import pytest
import torch

from spade.data import CodeDataset, code_probability
from spade.errors import SpadeError
from spade.evaluation import evaluate_sparse
from spade.finetune import finetune
from spade.finetune.data import PatchStream
from spade.models import create_model
from spade.physics import build_physics

SMALL = {"m": 20, "n": 40, "hidden": 20}


def test_codes_are_reproducible_and_sparse():
    codes = CodeDataset(400, 50, p=0.2, seed=3)
    assert torch.equal(codes[7], CodeDataset(400, 50, p=0.2, seed=3)[7])
    assert not torch.equal(codes[7], codes[8]) and not torch.equal(codes[7], CodeDataset(400, 50, 0.2, seed=4)[7])
    density = torch.stack([codes[i] for i in range(50)]).ne(0).float().mean()
    assert 0.15 < float(density) < 0.25


@pytest.mark.parametrize("source, p", [("bernoulli-gaussian", 0.1), ("bernoulli-gaussian:0.3", 0.3)])
def test_code_source(source, p):
    assert code_probability(source) == p


@pytest.mark.parametrize("source, message", [("embedded", "give the data source 'bernoulli-gaussian'"),
                                             ("bernoulli-gaussian:x", r"must be a number in \(0, 1\]"),
                                             ("bernoulli-gaussian:1.5", r"must be a number in \(0, 1\]")])
def test_code_source_errors(source, message):
    with pytest.raises(SpadeError, match=message):
        code_probability(source)


@pytest.mark.parametrize("snr", [math.inf, 40.0])
def test_stream_measures_at_the_operators_snr(snr):
    physics = build_physics({"kind": "sparse", **{k: SMALL[k] for k in ("m", "n")}, "snr_db": snr})
    stream = PatchStream(CodeDataset(physics.n, 64, 0.1, seed=0), batch=8, seed=0, noise_level=None)
    batch = stream.batch(0, physics)
    residual = (batch.y - physics.A(batch.x)).norm() / physics.A(batch.x).norm()
    if math.isinf(snr):
        assert float(residual) < 1e-6  # noiseless (up to rounding of one-code products)
    else:
        assert 0.003 < float(residual) < 0.03  # 40 dB: 1% of the signal norm
    assert torch.equal(batch.y, stream.batch(0, physics).y)  # noise seeded per code


def test_lista_trains_below_ista():
    torch.manual_seed(0)
    physics = build_physics({"kind": "sparse", "m": 20, "n": 40})
    model = create_model("lista", layers=6, **SMALL)
    model, history = finetune(model, physics, "bernoulli-gaussian", steps=150, batch=32, lr=2e-3, progress=False,
                              log=lambda _: None)
    assert history.data_used == "patches measured on the fly" and history.protocol == "nmse"
    scores = evaluate_sparse(model, physics, 500, seed=1, ista_iterations=6).per_image[0]
    assert scores["nmse_db"] < scores["ista_nmse_db"] - 2, scores


@pytest.mark.parametrize("kwargs, message", [
    ({"data": "embedded"}, "give the data source 'bernoulli-gaussian'"),
    ({"val": "embedded"}, "sparse recovery has no validation images"),
    ({"data_mode": "measurements", "strategy": "self-supervised"}, "sparse recovery trains on fresh codes"),
])
def test_sparse_training_errors(kwargs, message):
    physics = build_physics({"kind": "sparse", "m": 20, "n": 40})
    kwargs = {"data": "bernoulli-gaussian", **kwargs}
    with pytest.raises(SpadeError, match=message):
        finetune(create_model("lista", layers=2, **SMALL), physics, steps=1, progress=False, log=lambda _: None,
                 **kwargs)
