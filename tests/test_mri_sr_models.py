"""MRI and SR families (varnet, du-mri, deq-mri, hqs-sr, hqs-sr-ps): shapes in every sharing
mode, randomized recursions, priors' modulation, DEQ convergence, sensitivity maps, pruned
widths, model files, and short real trainings that beat the starting point."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from spade.data import PatchDataset, load_images
from spade.errors import SpadeError
from spade.models import create_model, families, load_model, save_model
from spade.models.deq import anderson
from spade.models.priors import DnCNN, ResNetPrior, UNet
from spade.models.varnet import SensitivityNet, calibration_mask
from spade.physics import build_physics

MRI_FAMILIES = ("varnet", "du-mri", "deq-mri")
SR_FAMILIES = ("hqs-sr", "hqs-sr-ps")
CASES = [(name, preset) for name in MRI_FAMILIES + SR_FAMILIES for preset in families()[name].presets]
#: small widths for the tests that build or train many models
SMALL = {"varnet": {"cascades": 3, "width": 4, "levels": 2}, "du-mri": {"iterations": 3, "width": 8, "depth": 3},
         "deq-mri": {"width": 8, "blocks": 1}, "hqs-sr": {"iterations": 3, "width": 8, "blocks": 1},
         "hqs-sr-ps": {"iterations": 3, "width": 32, "blocks": 1}}


def small(name: str, preset: str) -> dict:
    cfg = dict(families()[name].presets[preset], **SMALL[name])
    if preset == "recursive":
        cfg.pop("cascades", None), cfg.pop("iterations", None)
    return cfg


@pytest.fixture(scope="module")
def mri():
    return build_physics({"kind": "mri", "shape": [32, 32], "acceleration": 4, "center_fraction": 0.16})


@pytest.fixture(scope="module")
def sr():
    return build_physics({"kind": "sr", "scale": 2, "kernel": "gaussian:1.0", "noise_level": 0.01})


def crops(source: str, size: int, count: int, seed: int, complex_image: bool) -> torch.Tensor:
    """Real image crops (count, C, size, size); complex images get a zero imaginary part."""
    data = PatchDataset(load_images(source), size, count, seed=seed)
    x = torch.stack([data[i] for i in range(count)])
    return torch.cat([x, torch.zeros_like(x)], dim=1) if complex_image else x


def pair(name, mri, sr, batch=2, seed=0):
    if name in MRI_FAMILIES:
        x = crops("embedded-mri", 32, batch, seed, complex_image=True)
        return x, mri.simulate(x, seed=seed), mri
    x = crops("embedded", 24, batch, seed, complex_image=False)
    return x, sr.simulate(x, seed=seed), sr


def perturb(model: nn.Module, scale: float = 0.02) -> None:
    """Move every weight off its initial value (zero output layers make outputs trivial)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("name,preset", CASES)
def test_shapes_every_sharing_mode(name, preset, mri, sr):
    model = create_model(name, **families()[name].presets[preset])
    x, y, physics = pair(name, mri, sr)
    out, aux = model(y, physics, return_aux=True)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert all(it.shape == x.shape for it in aux["iterates"])
    if name == "deq-mri":
        assert aux["iterates"][-1] is out and aux["iterations"] >= 1
    else:
        assert len(aux["iterates"]) == sum(model.sharing.last_counts)
        expected_blocks = {"untied": 6, "tied": 1, "recursive": 2}[preset]
        assert len(model.sharing.blocks) == expected_blocks
    assert model(y, physics).shape == x.shape


@pytest.mark.parametrize("name", ["varnet", "du-mri", "hqs-sr", "hqs-sr-ps"])
def test_randomized_recursions(name, mri, sr):
    model = create_model(name, **small(name, "recursive"))
    perturb(model)
    x, y, physics = pair(name, mri, sr)
    seen = set()
    for _ in range(12):
        _, aux = model(y, physics, return_aux=True)
        counts = model.sharing.last_counts
        assert len(counts) == 2 and all(1 <= c <= 3 for c in counts) and len(aux["iterates"]) == sum(counts)
        seen.add(tuple(counts))
    assert len(seen) > 1
    model.eval()
    first = model(y, physics)
    assert model.sharing.last_counts == [3, 3]
    assert torch.equal(first, model(y, physics))


@pytest.mark.parametrize("make,channels,width", [
    (lambda: DnCNN(2, 8, 4), 2, 8), (lambda: ResNetPrior(1, 8, 2), 1, 8),
    (lambda: ResNetPrior(1, 8, 2, shuffle=2), 1, 8), (lambda: UNet(2, 4, 2), 2, 4),
], ids=["dncnn", "resnet", "resnet-pixelshuffle", "unet"])
def test_priors_apply_modulation_scales(make, channels, width):
    prior = make()
    perturb(prior, 0.1)
    x = torch.rand(2, channels, 16, 16)
    ones = [torch.ones(1, width) for _ in range(prior.n_scales)]
    assert torch.allclose(prior(x, ones), prior(x, None))
    halves = [0.5 * s for s in ones]
    assert not torch.allclose(prior(x, halves), prior(x, None), atol=1e-4)


def test_residual_priors_start_as_identity():
    x = torch.rand(1, 2, 16, 16)
    assert torch.equal(DnCNN(2, 8, 4)(x), x)
    assert torch.equal(ResNetPrior(2, 8, 2, shuffle=2)(x), x)
    assert torch.equal(UNet(2, 4, 2)(x), torch.zeros_like(x))


@pytest.mark.parametrize("name,preset", CASES)
def test_save_load_round_trip(name, preset, mri, sr, tmp_path):
    model = create_model(name, **small(name, preset))
    perturb(model)
    model.eval()
    x, y, physics = pair(name, mri, sr)
    expected = model(y, physics)
    spec = save_model(tmp_path / "m.spade", model, physics)
    loaded = load_model(tmp_path / "m.spade")
    assert spec["family"] == name and loaded.spec["config"] == model.config
    assert torch.equal(loaded.model(y, loaded.physics), expected)


def _protected_outputs(model: nn.Module) -> list[nn.Module]:
    """Layers whose outputs are image channels, and the sensitivity network."""
    return [m for n, m in model.named_modules()
            if n.endswith(("tail", ".out")) or getattr(m, "spade_protect", False)]


@pytest.mark.filterwarnings("ignore:Unwrapped parameters detected", "ignore:Maximum recursive depth")
@pytest.mark.parametrize("name,preset", [(n, "tied" if n == "deq-mri" else "recursive") for n in MRI_FAMILIES + SR_FAMILIES])
def test_pruned_priors_run_and_reload(name, preset, mri, sr, tmp_path):
    """Removing half the hidden channels (dependency graph of torch-pruning) leaves a model
    that runs with unchanged shapes and reloads from its file: forward passes read widths
    from tensors, modulation heads shrink with the channels they scale."""
    model = create_model(name, **small(name, preset))
    perturb(model)
    model.eval()
    x, y, physics = pair(name, mri, sr)
    before = sum(p.numel() for p in model.parameters())
    pruner = tp.pruner.MetaPruner(model, example_inputs=(y, physics), importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=_protected_outputs(model),
                                  forward_fn=lambda m, inputs: m(*inputs))
    pruner.step()
    assert sum(p.numel() for p in model.parameters()) < 0.6 * before
    out = model(y, physics)
    assert out.shape == x.shape
    spec = save_model(tmp_path / "pruned.spade", model, physics)
    assert spec["shapes"]
    assert torch.equal(load_model(tmp_path / "pruned.spade").model(y, physics), out)


# --- DEQ ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_deq(mri):
    """A small DEQ after 12 Jacobian-free training steps (untrained, its prior is the identity)."""
    torch.manual_seed(0)
    model = create_model("deq-mri", width=8, blocks=1, tol=1e-3, max_iter=50)
    x_train = crops("embedded-mri", 32, 48, 0, complex_image=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(12):
        x = x_train[4 * step:4 * step + 4]
        loss = torch.mean((model(mri.simulate(x), mri) - x) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_deq_converges_and_reports(trained_deq, mri, tmp_path):
    model = trained_deq
    x, y, physics = pair("deq-mri", mri, None, batch=4, seed=7)
    with torch.no_grad():
        out, aux = model(y, physics, return_aux=True)
    assert aux["residual"] <= 1e-3 and 1 < aux["iterations"] < 50 and len(aux["residuals"]) == aux["iterations"]
    assert (model.last_residual, model.last_iterations) == (aux["residual"], aux["iterations"])
    assert aux["residuals"][-1] == aux["residual"] and aux["residuals"][0] > 1e-3
    # the output is (up to the tolerance) a fixed point of the map
    with torch.no_grad():
        again = model.step(out, y, physics)
    assert float((again - out).norm() / out.norm()) < 2e-3
    save_model(tmp_path / "deq.spade", model, physics)
    loaded = load_model(tmp_path / "deq.spade")
    assert loaded.spec["config"]["tol"] == 1e-3 and loaded.model.tol == 1e-3 and loaded.model.max_iter == 50
    with torch.no_grad():
        assert torch.equal(loaded.model(y, physics), out)
    assert loaded.model.last_iterations == aux["iterations"]
    # a tighter tolerance, rebuilt from the spec, makes the solver work longer
    strict = create_model("deq-mri", **dict(loaded.spec["config"], tol=1e-5, max_iter=50))
    strict.load_state_dict(model.state_dict())
    with torch.no_grad():
        strict.eval()(y, physics)
    assert strict.last_iterations > aux["iterations"]


def test_anderson_beats_plain_iteration():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(40, 40))
    contraction = q @ torch.diag(torch.linspace(0.5, 0.97, 40)) @ q.T  # slow linear fixed-point map
    b = torch.randn(3, 40)

    def f(x):
        return x @ contraction.T + b

    x, fx, residual, picard, _ = anderson(f, torch.zeros(3, 40), memory=1, tol=1e-5, max_iter=1000)
    x, fx, residual, accelerated, _ = anderson(f, torch.zeros(3, 40), memory=5, tol=1e-5, max_iter=1000)
    exact = torch.linalg.solve(torch.eye(40) - contraction, b.T).T
    assert residual <= 1e-5 and float((fx - exact).norm() / exact.norm()) < 1e-3
    assert accelerated < picard / 3


def test_deq_jacobian_free_training_gradient(mri):
    model = create_model("deq-mri", width=8, blocks=1)
    perturb(model)
    x, y, physics = pair("deq-mri", mri, None)
    loss = torch.mean((model(y, physics) - x) ** 2)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_deq_settings_errors():
    with pytest.raises(SpadeError, match="only sharing mode is 'tied'"):
        create_model("deq-mri", sharing="untied")
    with pytest.raises(SpadeError, match="damping"):
        create_model("deq-mri", damping=0)
    assert list(families()["deq-mri"].presets) == ["tied"]


# --- VarNet sensitivities, SR variant, errors --------------------------------------------


def test_calibration_region():
    mri = build_physics({"kind": "mri", "shape": [32, 32], "acceleration": 4, "center_fraction": 0.16})
    acs = calibration_mask(mri.mask, centered=True)
    cols = acs.sum(0).nonzero().flatten().tolist()
    assert cols == list(range(cols[0], cols[0] + len(cols))) and 16 in cols and len(cols) == 5
    assert bool((acs[:, cols] == 1).all()) and float(acs.sum()) == 32 * 5
    unshifted = torch.fft.ifftshift(mri.mask, dim=(-2, -1))
    acs_u = calibration_mask(unshifted, centered=False)
    assert torch.equal(torch.fft.ifftshift(acs, dim=(-2, -1)), acs_u)
    with pytest.raises(SpadeError, match="does not sample its centre"):
        calibration_mask(torch.zeros(8, 8), centered=True)


def test_varnet_estimates_sensitivities(mri):
    multi = build_physics({"kind": "mri", "shape": [32, 32], "acceleration": 4, "center_fraction": 0.16, "coils": 4})
    model = create_model("varnet", cascades=2, width=4, levels=2, sens_maps=True, sens_width=4)
    assert isinstance(model.sens_net, SensitivityNet) and model.sens_net.spade_protect is True
    x = crops("embedded-mri", 32, 2, 0, complex_image=True)
    y = multi.simulate(x)
    maps = model.sens_net(y, multi)
    assert maps.shape == (2, 4, 32, 32) and torch.allclose((maps.abs() ** 2).sum(1), torch.ones(2, 32, 32), atol=1e-4)
    with torch.no_grad():
        out = model(y, multi)
    # untrained: the zero-filled image with estimated maps is close to the one with the true maps
    assert out.shape == x.shape
    assert float((out - multi.A_dagger(y)).norm() / multi.A_dagger(y).norm()) < 0.2
    with pytest.raises(SpadeError, match="multi-coil"):
        model(mri.simulate(x), mri)


def test_hqs_pixel_shuffle_variant_any_scale():
    model = create_model("hqs-sr-ps", iterations=2, width=8, blocks=1).eval()
    assert any(isinstance(m, nn.PixelShuffle) for m in model.modules())
    perturb(model)
    physics = build_physics({"kind": "sr", "scale": 3, "kernel": "bicubic", "noise_level": 0.02})
    x = torch.rand(1, 1, 45, 45)  # 45 is odd: the sub-pixel prior pads to even sizes and crops back
    y = physics.simulate(x, seed=0)
    assert model(y, physics).shape == x.shape
    quiet = build_physics({"kind": "sr", "scale": 3, "kernel": "bicubic"})
    assert not torch.allclose(model(y, quiet), model(y, physics))  # the noise level enters the network


def test_channel_mismatch_is_a_clear_error(mri):
    real = build_physics({"kind": "mri", "shape": [32, 32], "acceleration": 4, "real_image": True})
    y = real.simulate(torch.rand(1, 1, 32, 32))
    for name in MRI_FAMILIES:
        with pytest.raises(SpadeError, match="set image_channels=1"):
            create_model(name, **SMALL[name])(y, real)
    assert create_model("du-mri", image_channels=1, **SMALL["du-mri"])(y, real).shape == (1, 1, 32, 32)


# --- training --------------------------------------------------------------------------


def train(name, cfg, physics, source, size, steps, lr=2e-3, batch=4, seed=0):
    """A short Adam run; returns held-out MSE of (starting point, untrained, trained)."""
    torch.manual_seed(seed)
    complex_image = name in MRI_FAMILIES
    model = create_model(name, **cfg)
    x_train = crops(source, size, steps * batch, 0, complex_image)
    x_test = crops(source, size, 8, 12345, complex_image)
    y_test = physics.simulate(x_test, seed=1)

    def held_out():
        model.eval()
        with torch.no_grad():
            err = float(torch.mean((model(y_test, physics) - x_test) ** 2))
        model.train()
        return err

    start = float(torch.mean((physics.A_dagger(y_test) - x_test) ** 2))
    before = held_out()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        x = x_train[step * batch:(step + 1) * batch]
        loss = torch.mean((model(physics.simulate(x), physics) - x) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return start, before, held_out()


@pytest.mark.parametrize("name", MRI_FAMILIES + SR_FAMILIES)
def test_short_training_beats_starting_point(name):
    """25 (MRI) or 120 (SR) Adam steps on 48x48 crops lower the held-out error below both
    the untrained network and the starting point (zero-filled / bicubic)."""
    if name in MRI_FAMILIES:
        physics = build_physics({"kind": "mri", "shape": [48, 48], "acceleration": 4, "center_fraction": 0.08})
        start, before, after = train(name, SMALL[name], physics, "embedded-mri", 48, steps=25, lr=2e-3)
    else:
        physics = build_physics({"kind": "sr", "scale": 2, "kernel": "gaussian:1.0", "noise_level": 0.01})
        start, before, after = train(name, SMALL[name], physics, "embedded", 48, steps=120, lr=2e-3)
    assert after < 0.95 * min(before, start)


@pytest.mark.slow
@pytest.mark.parametrize("name,preset", CASES)
def test_default_models_train(name, preset):
    """Default sizes, every sharing mode: 60 steps on 48x48 crops beat the starting point."""
    physics = (build_physics({"kind": "mri", "shape": [48, 48], "acceleration": 4, "center_fraction": 0.08})
               if name in MRI_FAMILIES else build_physics({"kind": "sr", "scale": 2, "kernel": "bicubic"}))
    source = "embedded-mri" if name in MRI_FAMILIES else "embedded"
    start, before, after = train(name, families()[name].presets[preset], physics, source, 48, steps=60, lr=1e-3)
    assert after < 0.9 * before and after < 0.9 * start
