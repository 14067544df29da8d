"""The compressive-sensing zoo: parameter counts, COAST / R-COAST behaviour, model files, training."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spade.cli import main
from spade.data import PatchDataset, load_images
from spade.errors import SpadeError
from spade.models import count_parameters, create_model, get_family, load_model, save_model
from spade.models.coast import COASTIteration
from spade.physics import MRI, BlockCS, random_mask

RATIOS = (0.1, 0.25, 0.5)
R_COAST = {"sharing": "recursive", "stages": 5, "recursions": 4}

#: (family, preset, parameter count of the papers)
COUNTS = [("ista-net-plus", "untied", 336_978), ("ista-net-plus", "recursive", 114_630),
          ("coast", "untied", 1_122_024), ("coast", "recursive", 281_674)]


@pytest.mark.parametrize("family,preset,count", COUNTS)
def test_parameter_counts(family, preset, count):
    model = create_model(family, **get_family(family).presets[preset])
    assert count_parameters(model) == count


def test_models_command_lists_the_counts(capsys):
    assert main(["models", "--json"]) == 0
    rows = {(r["name"], r["sharing"]): r for r in json.loads(capsys.readouterr().out)}
    for family, preset, count in COUNTS:
        assert rows[(family, preset)]["params"] == count
    assert rows[("coast", "recursive")]["config"]["stages"] == 5
    assert rows[("coast", "recursive")]["config"]["recursions"] == 4


def test_coast_architecture():
    model = create_model("coast")
    iterations = list(model.sharing.blocks)
    assert len(iterations) == 20 and all(isinstance(it, COASTIteration) for it in iterations)
    assert {count_parameters(it) for it in iterations} == {56_098}
    it = iterations[0]
    assert (it.head.in_channels, it.head.out_channels, it.tail.in_channels, it.tail.out_channels) == (1, 32, 32, 1)
    assert len(it.cpmbs) == 3
    assert all(m.bias is not None and m.kernel_size == (3, 3) for m in it.modules() if isinstance(m, nn.Conv2d))
    # one Linear(1, 32) conditions every CPMB of every iteration
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1, 32)]
    # R-COAST: one MLP 3 -> 32 -> ReLU -> 32 modulates all 5 stages
    rc = create_model("coast", **R_COAST)
    assert len(rc.sharing.blocks) == 5
    assert [(m.in_features, m.out_features) for m in rc.modules() if isinstance(m, nn.Linear)] == [(3, 32), (32, 32)]


def _perturb(model, seed=0):
    """Give every parameter (modulation included) a random non-trivial value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model


def _record_conditioning(model):
    """Inputs fed to the modulation unit during the next forward passes."""
    seen = []
    model.sharing.modulation.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0].tolist()))
    return seen


@pytest.mark.parametrize("preset", [{}, R_COAST], ids=["coast", "r-coast"])
def test_one_model_serves_several_ratios(preset):
    model = _perturb(create_model("coast", **preset)).eval()
    seen = _record_conditioning(model)
    x = torch.rand(1, 1, 66, 99)
    outputs = []
    for ratio in RATIOS:
        physics = BlockCS.gaussian(ratio, seed=1)
        seen.clear()
        with torch.no_grad():
            out = model(physics.A(x), physics)
        assert out.shape == x.shape and torch.isfinite(out).all()
        outputs.append(out)
        if preset:  # [2 ratio, total / 20, index / 20] at every one of the 20 iterations
            assert len(seen) == 20
            for k, cond in enumerate(seen, start=1):
                assert cond == pytest.approx([2 * physics.ratio, 1.0, k / 20])
        else:  # [ratio], once per forward pass, shared by all CPMBs
            assert seen == [pytest.approx([physics.ratio])]
    assert not torch.allclose(outputs[0], outputs[-1])


def test_coast_prior_sees_the_whole_image():
    """A change inside one block changes the reconstruction of its neighbour (whole-image
    deblocking); ISTA-Net+'s block-wise prior leaves the neighbour untouched."""
    physics = BlockCS.gaussian(0.25, seed=0)
    x = torch.rand(1, 1, 33, 66)
    x2 = x.clone()
    x2[..., 10:20, 10:20] = 0.0  # inside the left block only
    for model, crosses in ((create_model("coast", iterations=3), True), (create_model("ista-net-plus", phases=3), False)):
        _perturb(model).eval()
        with torch.no_grad():
            right = [model(physics.A(v), physics)[..., 33:] for v in (x, x2)]
        assert torch.equal(right[0], right[1]) != crosses


def test_coast_rejects_other_physics():
    physics = MRI(random_mask((33, 33), 4, 0.1), real_image=True)
    with pytest.raises(SpadeError, match="BlockCS"):
        create_model("coast", iterations=2)(physics.A(torch.rand(1, 1, 33, 33)), physics)


def test_r_coast_recursions_random_in_training_fixed_in_eval():
    model = create_model("coast", **R_COAST)
    seen = _record_conditioning(model)
    physics = BlockCS.gaussian(0.25, seed=0)
    y = physics.A(torch.rand(1, 1, 33, 33))
    model.train()
    draws = set()
    for _ in range(6):
        seen.clear()
        with torch.no_grad():
            _, aux = model(y, physics, return_aux=True)
        counts = model.sharing.last_counts
        assert len(counts) == 5 and all(1 <= c <= 4 for c in counts)
        total = sum(counts)
        assert len(aux["iterates"]) == total == len(seen)
        assert [c[1:] for c in seen] == [pytest.approx([total / 20, k / 20]) for k in range(1, total + 1)]
        draws.add(tuple(counts))
    assert len(draws) > 1
    model.eval()
    with torch.no_grad():
        _, aux = model(y, physics, return_aux=True)
    assert model.sharing.last_counts == [4] * 5 and len(aux["iterates"]) == 20
    untied = create_model("coast").train()
    untied(y, physics)
    assert untied.sharing.last_counts == [1] * 20


@pytest.mark.parametrize("preset", [{}, R_COAST], ids=["coast", "r-coast"])
def test_model_file_round_trip(preset, tmp_path):
    model = _perturb(create_model("coast", **preset)).eval()
    physics = BlockCS.gaussian(0.1, seed=4)
    save_model(tmp_path / "coast.spade", model, physics)
    loaded = load_model(tmp_path / "coast.spade")
    assert loaded.spec["family"] == "coast" and loaded.model.config == model.config
    assert torch.equal(loaded.physics.phi, physics.phi)
    x = torch.rand(1, 1, 33, 66)
    for p in (physics, BlockCS.gaussian(0.5, seed=5)):
        with torch.no_grad():
            assert torch.equal(loaded.model(p.A(x), p), model(p.A(x), p))


@pytest.mark.parametrize("preset", [{}, R_COAST], ids=["coast", "r-coast"])
def test_training_with_random_ratios_lowers_loss(preset):
    """Adam steps on real patches, a fresh Gaussian Phi of a random ratio per step, lower
    the training loss (measured on the same patches at every ratio, with the same
    recursion draws before and after)."""
    patches = PatchDataset(load_images("embedded"), 33, 2, seed=0)
    x = torch.stack([patches[i] for i in range(2)])
    model = create_model("coast", **preset).train()
    fixed = [BlockCS.gaussian(r, seed=100 + i) for i, r in enumerate(RATIOS)]

    def training_loss():
        torch.manual_seed(1)
        with torch.no_grad():
            return sum(float(torch.mean((model(p.A(x), p) - x) ** 2)) for p in fixed) / len(fixed)

    before = training_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    gen = torch.Generator().manual_seed(0)
    for step in range(4):
        physics = BlockCS.gaussian(RATIOS[int(torch.randint(len(RATIOS), (1,), generator=gen))], seed=step)
        loss = torch.mean((model(physics.A(x), physics) - x) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert training_loss() < 0.7 * before


def test_a_recursive_network_starts_from_its_untied_teacher():
    """Blocks 1, 4, 7 of 9 seed a 3 x 3 recursive ISTA-Net+; with one stage per teacher
    block and one recursion (modulation scales 1) the student computes the teacher exactly."""
    torch.manual_seed(0)
    teacher = create_model("ista-net-plus", phases=9, channels=8)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))  # blocks that differ from one another
    student = create_model("ista-net-plus", channels=8, sharing="recursive", stages=3, recursions=3)
    assert student.inherit_blocks(teacher) == [1, 4, 7]
    for s, k in enumerate([1, 4, 7]):
        for a, b in zip(student.sharing.blocks[s].parameters(), teacher.sharing.blocks[k].parameters()):
            assert torch.equal(a, b)
    same = create_model("ista-net-plus", channels=8, sharing="recursive", stages=9, recursions=1)
    assert same.inherit_blocks(teacher) == list(range(9))
    physics = BlockCS.gaussian(0.25, seed=0)
    y = physics.A(torch.rand(1, 1, 66, 66))
    with torch.no_grad():
        assert torch.allclose(same.eval()(y, physics), teacher.eval()(y, physics), atol=1e-6)
    with pytest.raises(SpadeError, match="do not fit"):
        create_model("ista-net-plus", channels=16, sharing="recursive", stages=3, recursions=3).inherit_blocks(teacher)
    with pytest.raises(SpadeError, match="cannot start from"):
        create_model("coast", iterations=2, channels=8).inherit_blocks(teacher)


def test_a_recursive_network_runs_in_double_precision():
    model = create_model("ista-net-plus", channels=4, sharing="recursive", stages=2, recursions=2).double().eval()
    physics = BlockCS.gaussian(0.25, seed=0).to(torch.float64)
    y = physics.A(torch.rand(1, 1, 33, 33, dtype=torch.float64))
    with torch.no_grad():
        assert model(y, physics).dtype == torch.float64
