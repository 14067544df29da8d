"""k-space masks: sampling rates, centre, reproducibility, loading."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch

from spade.errors import SpadeError
from spade.physics import equispaced_mask, load_mask, random_mask, variable_density_mask


@pytest.mark.parametrize("accel, cf", [(4, 0.08), (8, 0.04)])
def test_equispaced_mask(accel, cf):
    m = equispaced_mask((64, 320), accel, cf)
    assert m.shape == (64, 320) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m, m[:1].expand_as(m))  # whole columns
    cols = m[0]
    num_low = round(320 * cf)
    start = (320 - num_low + 1) // 2
    assert cols[start:start + num_low].all()
    assert abs(cols.sum().item() - 320 / accel) <= 2


@pytest.mark.parametrize("accel, cf", [(4, 0.08), (8, 0.04)])
def test_random_mask(accel, cf):
    rates = [random_mask((8, 368), accel, cf, seed=s)[0].mean().item() for s in range(40)]
    assert abs(np.mean(rates) - 1 / accel) < 0.02
    assert torch.equal(random_mask((8, 64), 4, 0.1, seed=3), random_mask((8, 64), 4, 0.1, seed=3))
    assert not torch.equal(random_mask((8, 64), 4, 0.1, seed=3), random_mask((8, 64), 4, 0.1, seed=4))


def test_variable_density_mask():
    m = variable_density_mask((128, 128), 5, 0.05, seed=1)
    assert abs(m.mean().item() - 1 / 5) < 0.01
    assert m[64, 64] == 1
    # denser in the centre than at the periphery
    assert m[48:80, 48:80].mean() > 2 * m[:16, :16].mean()


def test_load_mask_mat_and_npy(tmp_path):
    mask = (np.random.default_rng(0).random((16, 12)) < 0.3).astype(np.uint8)
    scipy.io.savemat(tmp_path / "m.mat", {"mask_matrix": mask})
    np.save(tmp_path / "m.npy", mask)
    assert torch.equal(load_mask(tmp_path / "m.mat"), torch.from_numpy(mask.astype(np.float32)))
    assert torch.equal(load_mask(tmp_path / "m.npy"), torch.from_numpy(mask.astype(np.float32)))


def test_load_mask_errors(tmp_path):
    scipy.io.savemat(tmp_path / "k.mat", {"other": np.ones((4, 4))})
    with pytest.raises(SpadeError, match="no key 'mask_matrix'"):
        load_mask(tmp_path / "k.mat")
    np.save(tmp_path / "v.npy", np.ones(5))
    with pytest.raises(SpadeError, match="2-D"):
        load_mask(tmp_path / "v.npy")
    np.save(tmp_path / "g.npy", np.full((4, 4), 0.5))
    with pytest.raises(SpadeError, match="binary"):
        load_mask(tmp_path / "g.npy")
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(SpadeError, match="cannot read"):
        load_mask(tmp_path / "bad.mat")
    with pytest.raises(SpadeError, match="does not exist"):
        load_mask(tmp_path / "missing.mat")


def test_official_ista_mask_is_unshifted(bench_data):
    m = load_mask(bench_data / "ista_net_plus/mri20/mask_20.mat")
    assert m.shape == (256, 256) and abs(m.mean().item() - 0.2019) < 1e-3
    assert m[0, 0] == 1  # the k-space origin sits in the corner
