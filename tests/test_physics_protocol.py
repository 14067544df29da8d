"""The physics protocol: adjointness of every operator, the gradient step, noise objects,
random operators, per-sample coil maps, and a new kind of physics that works everywhere
from its own definition alone."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import spade.physics
from spade.data import Image, example_pair, prepare
from spade.errors import SpadeError
from spade.evaluation import evaluate
from spade.finetune import finetune
from spade.finetune.data import physics_at
from spade.models import create_model
from spade.physics import (KINDS, MRI, BlockCS, GaussianNoise, LinearPhysics, RandomBlockCS, SNRNoise,
                           SparseRecovery, SuperResolution, build_physics, equispaced_mask, physics_from_settings,
                           random_mask, simulate_coil_maps, variable_density_mask)
from spade.physics.mri import fft2, from_complex, ifft2, to_complex
from spade.prune.data import measurement_batches


class Inpainting(LinearPhysics):
    """A kind of physics defined here only: keep a random fraction ``rate`` of the pixels."""

    kind = "test-inpainting"
    protocols = ("fastmri",)
    config_keys = frozenset({"shape", "rate", "seed"})

    def __init__(self, mask: torch.Tensor, noise_level: float = 0.0):
        super().__init__(noise_level)
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32))

    @classmethod
    def from_config(cls, config):
        h, w = config["shape"]
        gen = torch.Generator().manual_seed(int(config.get("seed", 0)))
        return cls((torch.rand(h, w, generator=gen) < config.get("rate", 0.5)).float(),
                   noise_level=config.get("noise_level", 0.0))

    def A(self, x):
        return x * self.mask

    def A_adjoint(self, y):
        return y * self.mask

    def image_shape(self, side=None, channels=1):
        return (1, *self.mask.shape)

    def crop_image(self, x):
        return x[..., :self.mask.shape[0], :self.mask.shape[1]]

    def default_patch(self):
        return self.mask.shape[0]

    def check_patch(self, size, what="patch size"):
        if (size, size) != tuple(self.mask.shape):
            raise SpadeError(f"{what} {size} is not the mask's {tuple(self.mask.shape)}")
        return size

    def settings(self):
        return {"noise_level": self.noise_level}

    @classmethod
    def from_settings(cls, settings, tensors):
        return cls(tensors["mask"], settings["noise_level"])


def _mri(mask_fn, **kwargs):
    mask = mask_fn((24, 20), 4, 0.1) if mask_fn is equispaced_mask else mask_fn((24, 20), 4, 0.1, seed=1)
    return MRI(mask, **kwargs)


OPERATORS = {
    "mri-real-unshifted": (lambda: _mri(random_mask, real_image=True, centered=False), (3, 1, 24, 20)),
    "mri-complex-equispaced": (lambda: _mri(equispaced_mask), (3, 2, 24, 20)),
    "mri-complex-unshifted": (lambda: _mri(variable_density_mask, centered=False), (3, 2, 24, 20)),
    "mri-multicoil": (lambda: _mri(random_mask, coil_maps=simulate_coil_maps(4, (24, 20), seed=3)), (3, 2, 24, 20)),
    "mri-per-sample-maps": (lambda: _mri(random_mask).with_coil_maps(
        torch.randn(3, 4, 24, 20, dtype=torch.complex64, generator=torch.Generator().manual_seed(4))), (3, 2, 24, 20)),
    "sr-bicubic-x2": (lambda: SuperResolution(2), (2, 3, 24, 20)),
    "sr-gaussian-x3": (lambda: SuperResolution(3, "gaussian:1.6"), (2, 1, 36, 30)),
    "sr-gaussian-x4": (lambda: SuperResolution(4, "gaussian:0.8"), (2, 1, 48, 40)),
    "cs-0.01": (lambda: BlockCS.gaussian(0.01, seed=1), (2, 1, 66, 99)),
    "cs-0.25": (lambda: BlockCS.gaussian(0.25, seed=1), (2, 1, 66, 99)),
    "cs-1.0": (lambda: BlockCS.gaussian(1.0, seed=1), (2, 1, 33, 33)),
    "random-cs-step": (lambda: RandomBlockCS([0.1, 0.25, 0.5], seed=2).step(), (2, 1, 66, 66)),
    "sparse": (lambda: SparseRecovery.gaussian(50, 100, seed=3), (8, 100)),
    "sparse-snr": (lambda: build_physics({"kind": "sparse", "m": 30, "n": 60, "snr_db": 40}), (8, 60)),
    "test-inpainting": (lambda: Inpainting.from_config({"shape": (16, 12)}), (2, 1, 16, 12)),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_adjointness(name):
    """<A x, y> == <x, A^T y> (real inner product) for random x and y, in float64."""
    make, shape = OPERATORS[name]
    physics = make().double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    y = torch.randn(physics.A(x).shape, generator=gen, dtype=torch.float64)
    lhs = float((physics.A(x) * y).sum())
    rhs = float((x * physics.A_adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-9 * physics.A(x).norm() * y.norm(), (lhs, rhs)


@pytest.mark.parametrize("name", ["mri-multicoil", "sr-gaussian-x3", "cs-0.25", "sparse"])
def test_gradient_step(name):
    make, shape = OPERATORS[name]
    physics = make()
    x, x_true = torch.rand(shape), torch.rand(shape)
    y = physics.A(x_true)
    step = torch.tensor([0.3])
    assert torch.allclose(physics.gradient_step(x, y, step), x - step * physics.A_adjoint(physics.A(x) - y))
    # a small enough step lowers the data term
    lip = 1.0 / float(physics.AtA(torch.ones_like(x)).abs().max().clamp_min(1.0))
    before = float((physics.A(x) - y).pow(2).sum())
    assert float((physics.A(physics.gradient_step(x, y, lip)) - y).pow(2).sum()) < before


def test_gaussian_noise_is_seeded_and_reproducible():
    y = torch.zeros(4, 1000)
    noise = GaussianNoise(0.1)
    assert torch.equal(noise(y, seed=3), noise(y, seed=3)) and not torch.equal(noise(y, seed=3), noise(y, seed=4))
    assert abs(float(noise(y, seed=3).std()) - 0.1) < 0.005
    a, b = GaussianNoise(0.1, seed=7), GaussianNoise(0.1, seed=7)
    first, second = a(y), a(y)
    assert not torch.equal(first, second)  # the generator advances
    assert torch.equal(first, b(y)) and torch.equal(second, b(y))  # the same sequence from the same seed
    assert GaussianNoise(0.0).noiseless and GaussianNoise(0.0)(y) is y
    with pytest.raises(SpadeError, match="negative"):
        GaussianNoise(-1.0)


def test_snr_noise_scales_with_each_sample():
    y = torch.cat([torch.ones(1, 2000), 10 * torch.ones(1, 2000)])
    n = SNRNoise(20.0)(y, seed=0) - y
    assert torch.allclose(n.std(dim=1), torch.tensor([0.1, 1.0]), rtol=0.05)
    assert not SNRNoise(20.0).noiseless
    with pytest.raises(SpadeError, match="SNR"):
        SNRNoise(-200.0)


def test_physics_noise_objects():
    physics = SuperResolution(2, noise_level=0.05)
    assert isinstance(physics.noise_model, GaussianNoise) and physics.noise_model.sigma == 0.05
    assert physics.noise_for(0.2).sigma == 0.2 and physics.noise_for(None) is physics.noise_model
    sparse = build_physics({"kind": "sparse", "m": 30, "n": 60, "snr_db": 40})
    assert isinstance(sparse.noise_model, SNRNoise) and sparse.noise_model.snr_db == 40


def test_random_block_cs_steps():
    physics = RandomBlockCS([0.1, 0.25, 0.5], seed=0)
    again = RandomBlockCS([0.1, 0.25, 0.5], seed=0)
    ops = [physics.step() for _ in range(12)]
    assert [op.phi.shape for op in ops] == [again.step().phi.shape for _ in range(12)]
    assert {round(op.ratio, 2) for op in ops} == {0.1, 0.25, 0.5}
    # a seeded step is a function of its seed alone, and restarts the generator
    a, b = physics.step(seed=11), again.step(seed=11)
    assert torch.equal(a.phi, b.phi) and torch.equal(physics.step().phi, again.step().phi)
    assert [r.ratio for r in physics.references()] == [r.ratio for r in again.references()]
    assert all(torch.equal(r.phi, s.phi) for r, s in zip(physics.references(), again.references()))
    fixed = BlockCS.gaussian(0.25)
    assert fixed.step(seed=3) is fixed and fixed.references() == [fixed] and physics_at(fixed, 5, 0) is fixed
    with pytest.raises(SpadeError, match="outside"):
        RandomBlockCS([0.1, 2.0])


def test_mri_per_sample_coil_maps_match_one_operator_per_sample():
    base = _mri(random_mask)
    maps = torch.randn(2, 3, 24, 20, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    batch = base.with_coil_maps(maps)
    assert batch.n_coils == 3 and batch.mask is base.mask
    x = torch.randn(2, 2, 24, 20)
    y = batch.A(x)
    for i in range(2):
        single = base.with_coil_maps(maps[i])
        assert torch.allclose(y[i:i + 1], single.A(x[i:i + 1]), atol=1e-6)
        assert torch.allclose(batch.A_adjoint(y)[i:i + 1], single.A_adjoint(y[i:i + 1]), atol=1e-5)


def _estimated_coils_reference(model, y, physics):
    """VarNet with sensitivity estimation, computed with the estimated-coil operator
    written out (``A x = M F (S x)``, ``A^H y = sum_c conj(S_c) F^-1 (M y_c)``)."""
    maps = model.sens_net(y, physics)

    def A(x):
        return torch.view_as_real(fft2(to_complex(x).unsqueeze(1) * maps, physics.centered) * physics.mask)

    def AH(k):
        z = ifft2(torch.view_as_complex(k.contiguous()) * physics.mask, physics.centered)
        return from_complex((z * maps.conj()).sum(1), real_image=False)

    x = AH(y)
    for cascade, scales in model.sharing.schedule():
        x = x - cascade.dc_weight * AH(A(x) - y) + cascade.prior(x, scales)
    return x


def test_varnet_estimated_coils_use_the_mri_physics():
    torch.manual_seed(0)
    physics = build_physics({"kind": "mri", "shape": [32, 32], "acceleration": 4, "center_fraction": 0.25,
                             "coils": 4})
    model = create_model("varnet", cascades=2, width=4, levels=2, sens_maps=True, sens_width=4, sens_levels=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(1))
        y = physics.simulate(x, noise_level=0.01, seed=2)
        assert torch.equal(model(y, physics), _estimated_coils_reference(model, y, physics))


def test_every_physics_module_registers_its_kinds():
    """A kind defined in any module of spade.physics is found without edits elsewhere."""
    for info in pkgutil.iter_modules(spade.physics.__path__):
        module = importlib.import_module(f"spade.physics.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, LinearPhysics) and cls.__dict__.get("kind"):
                assert KINDS[cls.kind] is cls and cls.protocols, cls
    with pytest.raises(SpadeError, match="defined twice"):
        type("OtherMRI", (LinearPhysics,), {"kind": "mri"})


def test_image_conventions_of_each_kind():
    mri = _mri(random_mask)
    x = torch.rand(1, 1, 30, 30)
    assert mri.image_shape() == (1, 24, 20) and torch.equal(mri.crop_image(x), x[..., 3:27, 5:25])
    z = mri.to_domain(mri.crop_image(x))
    assert z.shape == (1, 2, 24, 20) and not z[:, 1].any() and torch.equal(mri.to_image(z), mri.crop_image(x))
    real = _mri(random_mask, real_image=True)
    assert torch.equal(real.to_domain(x), x) and torch.equal(real.to_image(-x), -x)
    with pytest.raises(SpadeError, match=r"smaller than the \(24, 20\) k-space mask"):
        mri.crop_image(torch.rand(1, 1, 16, 16))
    with pytest.raises(SpadeError, match="square mask"):
        mri.default_patch()
    square = MRI(random_mask((32, 32), 4, 0.1))
    assert square.check_patch(square.default_patch()) == 32
    with pytest.raises(SpadeError, match="does not match the MRI mask"):
        square.check_patch(16)
    sr = SuperResolution(3)
    assert sr.image_shape(96, 3) == (3, 96, 96) and sr.crop_image(torch.rand(1, 3, 50, 47)).shape == (1, 3, 48, 45)
    assert SuperResolution(2).image_shape() == (1, 256, 256) and sr.check_patch(sr.default_patch()) == 96
    with pytest.raises(SpadeError, match="image side 100 is not a multiple of the SR scale 3"):
        sr.image_shape(100)
    cs = BlockCS.gaussian(0.25)
    assert cs.image_shape(channels=3) == (1, 264, 264) and cs.default_patch() == 99
    assert cs.pad_image(torch.rand(1, 1, 256, 264)).shape == (1, 1, 264, 297)  # ISTA-Net+: a full extra block
    with pytest.raises(SpadeError, match="patch size 40 is not a multiple of the CS block size 33"):
        cs.check_patch(40)
    assert SparseRecovery.gaussian(20, 40).image_shape() == (40,)


def _image(name: str, seed: int, shape=(20, 18)) -> Image:
    gen = torch.Generator().manual_seed(seed)
    return Image(name, (torch.rand(shape, generator=gen) * 255).round().byte().numpy())


class TinyNet(nn.Module):
    """Starting point, one gradient step and a residual CNN: a model for any physics."""

    def __init__(self):
        super().__init__()
        self.step = nn.Parameter(torch.tensor(0.5))
        self.cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, y, physics, return_aux=False):
        x = physics.gradient_step(physics.A_dagger(y), y, self.step)
        x = x + self.cnn(x)
        return (x, {"iterates": [x]}) if return_aux else x


def test_a_new_physics_needs_only_its_own_definition():
    physics = build_physics({"kind": "test-inpainting", "shape": [16, 16], "rate": 0.6, "noise_level": 0.01})
    assert isinstance(physics, Inpainting)
    with pytest.raises(SpadeError, match=r"no setting \['scale'\]"):
        build_physics({"kind": "test-inpainting", "shape": [16, 16], "scale": 2})
    again = physics_from_settings(physics.kind, physics.settings(), physics.tensors())
    assert torch.equal(again.mask, physics.mask) and again.noise_level == 0.01
    # data: example pairs, measured test images, pruning batches
    x, y = example_pair(physics, batch=2, seed=0)
    assert x.shape == (2, 1, 16, 16) and y.shape == x.shape
    x_net, ref, crop = prepare(_image("a", 0), physics, "fastmri")
    assert x_net.shape == (1, 1, 16, 16) and ref.shape == (16, 16) and crop == (16, 16)
    with pytest.raises(SpadeError, match="needs MRI or Inpainting physics"):
        prepare(_image("a", 0), SuperResolution(2), "fastmri")
    assert len(measurement_batches(physics, [_image("a", 0), _image("b", 1)], "fastmri", samples=2)) == 2
    # evaluation and fine-tuning (patches and test measurements)
    images = [_image(f"train{i}", i) for i in range(3)]
    test = [_image("test", 9)]
    start = evaluate(None, physics, test, "fastmri").mean("init_psnr")
    torch.manual_seed(0)
    model, history = finetune(TinyNet(), physics, images, "supervised", steps=4, batch=2, lr=1e-3,
                              val=test, progress=False, log=lambda m: None)  # its default protocol
    assert len(history.steps) == 4 and history.validations
    assert evaluate(model, physics, test, "fastmri").mean("psnr") > 0 and start > 0
    _, history = finetune(TinyNet(), physics, test, "self-supervised", steps=2, batch=1, lr=1e-3,
                          protocol="fastmri", progress=False, log=lambda m: None)
    assert len(history.steps) == 2


def test_readme_physics_example_runs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Adding a physics", 1)[1]
    scope: dict = {}
    exec(compile(re.search(r"```python\n(.*?)```", section, re.S).group(1), "README physics", "exec"), scope)
    physics, x, y = scope["physics"], scope["x"], scope["y"]
    assert KINDS["inpainting"] is type(physics) and x.shape == (2, 1, 64, 64)
    assert torch.equal(y, physics.simulate(x, seed=0)) and not torch.equal(y, physics.A(x))
    image = _image("big", 0, shape=(80, 70))
    assert evaluate(None, physics, [image], "fastmri").mean("init_psnr") > 0
