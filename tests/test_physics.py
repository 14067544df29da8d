"""Physics operators: proximal-step optimality, conventions, shapes, seeds, bad input
(adjointness of every operator: test_physics_protocol.py)."""
from __future__ import annotations

import pytest
import torch

from spade.errors import SpadeError
from spade.physics import (MRI, BlockCS, SuperResolution, build_physics, equispaced_mask, gaussian_phi,
                           least_squares_qinit, pad_to_blocks, random_mask, simulate_coil_maps)
from spade.physics.base import LinearPhysics
from spade.physics.cs import batch_to_blocks, blocks_to_batch


def _dot(a, b):
    return float((a * b).sum())


def _rand_like_image(physics, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


MRI_CASES = {
    "single-real-unshifted": dict(real_image=True, centered=False),
    "single-complex-centered": dict(),
    "single-complex-unshifted": dict(centered=False),
    "multicoil": dict(coil_maps=simulate_coil_maps(4, (24, 20), seed=3)),
}


def _mri(case, mask_fn=random_mask):
    mask = mask_fn((24, 20), 4, 0.1) if mask_fn is equispaced_mask else mask_fn((24, 20), 4, 0.1, seed=1)
    return MRI(mask, **MRI_CASES[case]).double()


def _mri_shapes(p, batch=3):
    c = 1 if p.real_image else 2
    return (batch, c, 24, 20), (batch, p.n_coils, 24, 20, 2)


@pytest.mark.parametrize("case", sorted(MRI_CASES))
def test_mri_prox_is_optimal(case):
    p = _mri(case)
    xs, _ = _mri_shapes(p, batch=2)
    z, x_true = _rand_like_image(p, xs, 3), _rand_like_image(p, xs, 4)
    y = p.A(x_true)
    gamma = torch.tensor([0.3, 4.0], dtype=torch.float64)
    x = p.prox_l2(z, y, gamma, tol=1e-10)
    grad = p.A_adjoint(p.A(x) - y) + (x - z) / gamma.view(-1, 1, 1, 1)
    assert float(grad.norm() / z.norm()) < 1e-6


def test_ista_mri_convention_is_exact():
    """Real image, unshifted mask: the normal operator is Re(IFFT2(mask * FFT2(x)))."""
    mask = random_mask((16, 16), 3, 0.1, seed=2)
    p = MRI(mask, real_image=True, centered=False).double()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    expected = torch.fft.ifft2(mask * torch.fft.fft2(x)).real
    assert torch.allclose(p.AtA(x), expected, atol=1e-12)
    # zero-filled start = Re(IFFT2(y)) with y = mask * FFT2(x) (any FFT scaling cancels)
    assert torch.allclose(p.A_dagger(p.A(x)), expected, atol=1e-12)


def test_coil_maps_have_unit_sum_of_squares_and_full_mask_is_isometry():
    maps = simulate_coil_maps(6, (20, 28), seed=1)
    assert maps.shape == (6, 20, 28) and maps.is_complex()
    assert torch.allclose((maps.abs() ** 2).sum(0), torch.ones(20, 28), atol=1e-5)
    p = MRI(torch.ones(20, 28), coil_maps=maps).double()
    x = torch.randn(2, 2, 20, 28, dtype=torch.float64)
    assert torch.allclose(p.AtA(x), x, atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kernel", ["bicubic", "gaussian:1.6"])
def test_sr_prox_closed_form_is_optimal(scale, kernel):
    p = SuperResolution(scale, kernel).double()
    z = _rand_like_image(p, (2, 1, 8 * scale, 8 * scale), 3)
    y = p.A(_rand_like_image(p, z.shape, 4))
    gamma = torch.tensor([0.05, 3.0], dtype=torch.float64)
    x = p.prox_l2(z, y, gamma)
    grad = p.A_adjoint(p.A(x) - y) + (x - z) / gamma.view(-1, 1, 1, 1)
    assert float(grad.norm() / z.norm()) < 1e-8
    cg = LinearPhysics.prox_l2(p, z, y, gamma, max_iter=500, tol=1e-12)
    assert torch.allclose(x, cg, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kernel", ["bicubic", "gaussian:1.2"])
def test_sr_geometry_matches_bicubic_resizing(scale, kernel):
    """Kernels sum to 1 and low-resolution pixel j sits at j*s + (s-1)/2: the bicubic
    start reproduces a smooth periodic image without a shift."""
    p = SuperResolution(scale, kernel)
    assert abs(float(p.kernel.sum()) - 1) < 1e-5
    t = torch.arange(96, dtype=torch.float64)
    wave = lambda shift: (0.5 - 0.5 * torch.cos(2 * torch.pi * (t + shift) / 96)).repeat(96, 1)[None, None].float()
    out = p.A_dagger(p.A(wave(0)))
    err = lambda shift: float((out - wave(shift))[..., 12:-12, 12:-12].abs().max())
    assert err(0) < 0.01 and err(0) < err(0.5) / 3 and err(0) < err(-0.5) / 3


def test_cs_matches_blockwise_matrix_product():
    """y_blk = Phi @ vec(block), blocks row-major, vec row-major (the official protocol)."""
    p = BlockCS.gaussian(0.25, seed=2)
    x = torch.rand(1, 1, 66, 99)
    y = p.A(x)
    for bi in range(2):
        for bj in range(3):
            blk = x[0, 0, 33 * bi:33 * bi + 33, 33 * bj:33 * bj + 33].reshape(-1)
            assert torch.allclose(y[0, :, bi, bj], p.phi @ blk, atol=1e-5)
    xb = blocks_to_batch(x, 33)
    assert xb.shape == (6, 1, 33, 33) and torch.equal(xb[1, 0], x[0, 0, :33, 33:66])
    assert torch.equal(batch_to_blocks(xb, x.shape), x)


def test_cs_split_blocks_is_the_operator_of_every_block():
    """A batch of one-block images is measured with matrix products; on the blocks of an
    image it gives what the strided convolutions give on the image."""
    phi = gaussian_phi(0.1, seed=3)
    p = BlockCS(phi, least_squares_qinit(phi, torch.rand(500, 1089))).double()
    x = torch.rand(2, 1, 66, 99, dtype=torch.float64)
    y = p.A(x)
    yb, join = p.split_blocks(y, 33)
    xb = blocks_to_batch(x, 33)
    assert yb.shape == (12, 109, 1, 1)
    assert torch.allclose(p.A(xb), yb, atol=1e-12)
    for method in ("A_adjoint", "A_dagger"):
        want = getattr(p, method)(y)
        got = join(getattr(p, method)(yb))
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-12), method
    z = torch.rand_like(x)
    assert torch.allclose(join(p.gradient_step(blocks_to_batch(z, 33), yb, 0.3)), p.gradient_step(z, y, 0.3),
                          atol=1e-12)
    assert torch.equal(join(xb), x)
    assert p.split_blocks(y, 32) is None
    assert _mri("single-complex-centered").split_blocks(torch.zeros(1, 1, 24, 20, 2), 33) is None


def test_cs_gaussian_phi_orthonormal_rows_and_official_counts():
    for ratio, m in [(0.01, 10), (0.04, 43), (0.1, 109), (0.25, 272), (0.3, 327), (0.4, 436), (0.5, 545), (0.2, 218)]:
        phi = gaussian_phi(ratio, seed=0)
        assert phi.shape == (m, 1089)
        assert torch.allclose(phi @ phi.T, torch.eye(m), atol=1e-5)


def test_cs_least_squares_qinit_and_prox():
    phi = gaussian_phi(0.1, seed=3)
    blocks = torch.rand(500, 1089)
    q = least_squares_qinit(phi, blocks)
    assert q.shape == (1089, 109)
    assert torch.allclose(phi @ q, torch.eye(109), atol=1e-3)
    # Qinit is the least-squares fit: its residual beats Phi^T's
    y = blocks @ phi.T
    assert float(((y @ q.T) - blocks).norm()) < float(((y @ phi) - blocks).norm())
    p = BlockCS(phi, q).double()
    z = torch.randn(2, 1, 66, 66, dtype=torch.float64)
    yy = p.A(torch.randn_like(z))
    x = p.prox_l2(z, yy, 0.7)
    grad = p.A_adjoint(p.A(x) - yy) + (x - z) / 0.7
    assert float(grad.norm() / z.norm()) < 1e-8


def test_cs_padding_rules():
    x = torch.ones(1, 1, 256, 264)
    assert pad_to_blocks(x, 33, "ista").shape[-2:] == (264, 297)  # a full extra block when divisible
    assert pad_to_blocks(x, 33, "minimal").shape[-2:] == (264, 264)
    with pytest.raises(SpadeError):
        pad_to_blocks(x, 33, "other")


@pytest.mark.parametrize("physics", [
    MRI(random_mask((16, 16), 4, 0.1)), SuperResolution(2, "gaussian:1.0", noise_level=0.05), BlockCS.gaussian(0.25)])
def test_simulate_seeds(physics):
    shape = {"mri": (2, 2, 16, 16), "sr": (2, 1, 16, 16), "cs": (2, 1, 33, 33)}[physics.kind]
    x = torch.rand(shape)
    a = physics.simulate(x, noise_level=0.1, seed=5)
    b = physics.simulate(x, noise_level=0.1, seed=5)
    c = physics.simulate(x, noise_level=0.1, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(physics.simulate(x, noise_level=0.0), physics.A(x))
    assert physics.A_adjoint(a).shape == x.shape


def test_mri_noise_only_on_sampled_locations():
    mask = random_mask((16, 16), 4, 0.1)
    p = MRI(mask)
    y = p.simulate(torch.zeros(1, 2, 16, 16), noise_level=1.0, seed=0)
    assert float(y[..., mask == 0, :].abs().max()) == 0.0


@pytest.mark.parametrize("config, message", [
    ({"kind": "cs", "ratio": 0.0}, "outside (0, 1]"),
    ({"kind": "cs", "ratio": 1.5}, "outside (0, 1]"),
    ({"kind": "sr", "scale": 5}, "scale 5"),
    ({"kind": "sr", "scale": 2, "kernel": "gaussian:-1"}, "must be > 0"),
    ({"kind": "mri", "shape": [16, 16], "acceleration": 0.5}, "acceleration"),
    ({"kind": "mri", "shape": [16, 16], "center_fraction": 2}, "centre fraction"),
    ({"kind": "xray"}, "unknown"),
    ({"kind": "mri", "shape": [8, 8], "bogus": 1}, "no setting"),
])
def test_bad_physics_settings(config, message):
    with pytest.raises(SpadeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        build_physics(config)


def test_shape_mismatches_are_reported():
    p = MRI(random_mask((16, 16), 4, 0.1))
    with pytest.raises(SpadeError, match="to match the mask"):
        p.A(torch.zeros(1, 2, 32, 32))
    with pytest.raises(SpadeError, match="multiples of the scale"):
        SuperResolution(3).A(torch.zeros(1, 1, 10, 10))
    with pytest.raises(SpadeError, match="block size"):
        BlockCS.gaussian(0.1).A(torch.zeros(1, 1, 40, 33))
    with pytest.raises(SpadeError, match="coil maps"):
        MRI(torch.ones(16, 16), coil_maps=simulate_coil_maps(2, (8, 8)))


def test_physics_round_trip_through_settings():
    from spade.physics import physics_from_settings

    for p in (MRI(random_mask((16, 16), 4, 0.1), coil_maps=simulate_coil_maps(3, (16, 16))),
              SuperResolution(3, "gaussian:1.2", noise_level=0.01), BlockCS.gaussian(0.1, seed=4)):
        q = physics_from_settings(p.kind, p.settings(), p.tensors())
        x = torch.rand({"mri": (1, 2, 16, 16), "sr": (1, 1, 24, 24), "cs": (1, 1, 33, 66)}[p.kind])
        assert torch.equal(p.A(x), q.A(x))
