"""Fine-tuning strategies: registry, plug-ins, combinations, ground-truth isolation, and
each strategy's loss decreasing on a small real problem (tiny ISTA-Net+, block CS,
embedded photographs)."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from finetune_helpers import crops, cs_physics, tiny_model
from spade.errors import SpadeError
from spade.evaluation import evaluate
from spade.finetune import (MEASUREMENT_DATA, PATCH_DATA, Strategy, available, build_strategies, finetune,
                            get_strategy, parse_spec)
from spade.finetune import strategies as strategies_module
from spade.finetune.losses import TransformGroup, pixel_loss
from spade.physics import build_physics


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest on a shared 2-core machine


def _term(history, name):
    return [s[name] for s in history.steps]


# --- registry and specs -------------------------------------------------------------------
def test_builtins_registered_and_unknown_named():
    assert {"supervised", "school", "self-supervised"} <= set(available())
    with pytest.raises(SpadeError, match=r"unknown strategy 'distil'.*registered are .*school"):
        get_strategy("distil")


def test_parse_spec_weights_and_errors():
    assert parse_spec("school:1,self-supervised:0.5") == [("school", 1.0), ("self-supervised", 0.5)]
    assert parse_spec("supervised") == [("supervised", 1.0)]
    assert parse_spec({"school": 2, "self-supervised": 0.25}) == [("school", 2.0), ("self-supervised", 0.25)]
    for bad, msg in [("school:0", "weight 0"), ("school:x", "weight 'x'"), ("school,school:2", "twice"), ("", "not a name")]:
        with pytest.raises(SpadeError, match=msg):
            parse_spec(bad)


def test_options_are_checked():
    (w, s), = build_strategies("supervised", {"supervised": {"metric": "ssim"}})
    assert s.metric == "ssim" and w == 1.0
    with pytest.raises(SpadeError, match=r"no option \['metrik'\].*allowed are \['metric'\]"):
        build_strategies("supervised", {"supervised": {"metrik": "l1"}})
    with pytest.raises(SpadeError, match="unknown loss 'l3'"):
        build_strategies("supervised", {"supervised": {"metric": "l3"}})
    with pytest.raises(SpadeError, match=r"options are given for \['school'\]"):
        build_strategies("supervised", {"school": {"iterates": 1.0}})
    with pytest.raises(SpadeError, match="unknown transformation"):
        build_strategies("self-supervised", {"self-supervised": {"transforms": ["zoom"]}})


# --- plug-ins -----------------------------------------------------------------------------
PLUGIN = textwrap.dedent('''
    """A user's strategy: measurement consistency plus total variation."""
    import torch
    from spade.finetune import Strategy


    class TotalVariation(Strategy):
        name = "tv"

        def __init__(self, weight: float = 0.01):
            self.weight = weight

        def loss(self, x_net, y, physics, model, ctx):
            mc = torch.mean((physics.A(x_net) - y) ** 2)
            tv = (x_net.diff(dim=-1).abs().mean() + x_net.diff(dim=-2).abs().mean())
            return mc + self.weight * tv
''')


def make_plugin(root):
    """A throwaway installed distribution ``spade-tv`` declaring the entry point."""
    (root / "spade_tv.py").write_text(PLUGIN)
    info = root / "spade_tv-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spade-tv\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[spade.strategies]\ntv = spade_tv:TotalVariation\n")
    return root


def test_plugin_entry_point_found_and_trains(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(make_plugin(tmp_path)))
    monkeypatch.delitem(sys.modules, "spade_tv", raising=False)
    assert "tv" in available()
    cls = get_strategy("tv")
    assert issubclass(cls, Strategy) and cls.__module__ == "spade_tv"
    torch.manual_seed(0)
    _, history = finetune(tiny_model(), cs_physics(), crops(2), "tv", options={"tv": {"weight": 0.001}},
                          steps=12, batch=2, lr=3e-3, test_time=True, progress=False, log=lambda m: None)
    losses = _term(history, "tv")
    assert history.data_used == MEASUREMENT_DATA
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3])


def test_broken_plugin_is_reported(tmp_path, monkeypatch):
    root = make_plugin(tmp_path)
    (root / "spade_tv-0.1.dist-info" / "entry_points.txt").write_text("[spade.strategies]\ntv = spade_tv:Missing\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "spade_tv", raising=False)
    with pytest.raises(SpadeError, match=r"strategy plug-in 'tv' \(spade_tv:Missing\) cannot be loaded"):
        get_strategy("tv")


# --- the ground truth is out of reach of strategies that do not declare it -------------
class Probe(Strategy):
    """Records what it was given; its loss is measurement consistency."""

    name = "probe"
    seen: list = []

    def loss(self, x_net, y, physics, model, ctx):
        Probe.seen.append(ctx.x)
        return torch.mean((physics.A(x_net) - y) ** 2)


class ProbeGT(Probe):
    name = "probe-gt"
    uses_ground_truth = True


@pytest.mark.parametrize("mode", ["patches", "measurements"])
def test_ground_truth_withheld(monkeypatch, mode):
    monkeypatch.setitem(strategies_module._BUILTIN, "probe", Probe)
    monkeypatch.setitem(strategies_module._BUILTIN, "probe-gt", ProbeGT)
    Probe.seen = []
    finetune(tiny_model(), cs_physics(), crops(2), "probe", steps=2, batch=2, data_mode=mode, patch=66,
             progress=False, log=lambda m: None)
    assert len(Probe.seen) == 2 and all(x is None for x in Probe.seen)
    Probe.seen = []
    finetune(tiny_model(), cs_physics(), crops(2), "probe,probe-gt", steps=1, batch=2, data_mode="patches",
             patch=33, progress=False, log=lambda m: None)
    assert Probe.seen[0] is None and Probe.seen[1] is not None and Probe.seen[1].shape == (2, 1, 33, 33)
    with pytest.raises(SpadeError, match="needs ground truth, which measurement data do not carry"):
        finetune(tiny_model(), cs_physics(), crops(2), "probe-gt", steps=1, data_mode="measurements",
                 progress=False, log=lambda m: None)


# --- each strategy lowers its loss ---------------------------------------------------------
@pytest.mark.parametrize("metric, factor", [("l1", 0.8), ("l2", 0.8), ("ssim", 0.97)])
def test_supervised_loss_decreases(metric, factor):
    torch.manual_seed(0)
    # patches == batch: the same two patches every step, so the losses are comparable
    _, history = finetune(tiny_model(), cs_physics(), crops(3, 99), "supervised",
                          options={"supervised": {"metric": metric}}, steps=15, batch=2, patches=2, patch=66,
                          lr=3e-3, progress=False, log=lambda m: None)
    losses = _term(history, "supervised")
    assert history.data_used == PATCH_DATA
    assert sum(losses[-3:]) < factor * sum(losses[:3]), losses


def test_school_loss_decreases_with_depth_mismatch():
    torch.manual_seed(1)
    teacher = tiny_model(phases=3)
    student = tiny_model(phases=2)
    _, history = finetune(student, cs_physics(), crops(2), "school", teacher=teacher,
                          options={"school": {"iterates": 0.5}}, steps=15, batch=2, lr=3e-3, test_time=True, progress=False,
                          log=lambda m: None)
    losses = _term(history, "school")
    assert history.data_used == MEASUREMENT_DATA
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses
    assert all(not p.requires_grad for p in teacher.parameters())


def test_school_iterates_matched_by_relative_position():
    (_, school), = build_strategies("school", {"school": {"iterates": 1.0}})
    x = torch.zeros(1, 1, 4, 4)
    teacher_its = [torch.full_like(x, float(j)) for j in range(1, 10)]  # 9 teacher iterates, values 1..9

    class Teacher(torch.nn.Module):
        def forward(self, y, physics, return_aux=False):
            return (teacher_its[-1], {"iterates": teacher_its}) if return_aux else teacher_its[-1]

    from spade.finetune import Context

    # 3 student iterates equal to teacher iterates 3, 6, 9: a zero loss means they were paired so
    student = [torch.full_like(x, 3.0), torch.full_like(x, 6.0), torch.full_like(x, 9.0)]
    loss = school.loss(student[-1], None, None, None, Context(aux={"iterates": student}, teacher=Teacher()))
    assert float(loss) == 0.0
    student[0] = torch.full_like(x, 4.0)
    loss = school.loss(student[-1], None, None, None, Context(aux={"iterates": student}, teacher=Teacher()))
    assert float(loss) == pytest.approx(1.0 / 3)


def test_self_supervised_loss_decreases_and_reconstruction_improves():
    torch.manual_seed(2)
    model, images, physics = tiny_model(), crops(2), cs_physics()
    before = evaluate(model, physics, images, "ista-cs").mean("psnr")
    _, history = finetune(model, physics, images, "self-supervised", steps=20, batch=2, lr=1e-2, test_time=True,
                          progress=False, log=lambda m: None)
    losses = _term(history, "self-supervised")
    assert history.data_used == MEASUREMENT_DATA and history.finetune_data == "test"
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3]), losses
    # measurements only, yet the reconstruction of the (never seen) ground truth improves
    assert evaluate(model, physics, images, "ista-cs").mean("psnr") > before + 0.5


def test_combination_weights_every_term():
    torch.manual_seed(3)
    _, history = finetune(tiny_model(), cs_physics(), crops(2), "school:1,self-supervised:0.5",
                          teacher=tiny_model(phases=3), steps=12, batch=2, lr=3e-3, test_time=True, progress=False,
                          log=lambda m: None)
    assert history.samples == 12 * 2 and history.seconds > 0 and history.summary()["samples_per_second"] > 0
    first = history.steps[0]
    assert first["loss"] == pytest.approx(first["school"] + 0.5 * first["self-supervised"] + first["regularizer"],
                                          rel=1e-5)
    totals = [s["loss"] for s in history.steps]
    assert sum(totals[-3:]) < 0.8 * sum(totals[:3]), totals


def test_school_needs_teacher_and_teacher_needs_school():
    with pytest.raises(SpadeError, match=r"\['school'\] needs a teacher"):
        finetune(tiny_model(), cs_physics(), crops(1), "school", steps=1, progress=False)
    with pytest.raises(SpadeError, match="no strategy uses one"):
        finetune(tiny_model(), cs_physics(), crops(1), "self-supervised", teacher=tiny_model(), steps=1, progress=False)


# --- equivariant imaging keeps images measurable --------------------------------------------
@pytest.mark.parametrize("settings, shape", [
    ({"kind": "cs", "ratio": 0.1}, (2, 1, 66, 99)),
    ({"kind": "sr", "scale": 3}, (2, 3, 48, 36)),
    ({"kind": "mri", "shape": [32, 32], "acceleration": 4}, (2, 2, 32, 32)),
    ({"kind": "mri", "shape": [32, 48], "acceleration": 4, "real_image": True}, (2, 1, 32, 48)),
])
def test_transforms_keep_images_measurable(settings, shape):
    physics = build_physics(settings)
    group = TransformGroup()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape)
    for _ in range(30):
        t = group.sample(x.shape, gen)
        tx = t(x)
        physics.A(tx)  # raises if the shape no longer fits the operator
        assert sorted(tx.shape[-2:]) == sorted(x.shape[-2:])
        assert torch.allclose(tx.sum(), x.sum())  # a permutation of the pixels


def test_pixel_loss_values():
    a, b = torch.zeros(1, 1, 16, 16), torch.full((1, 1, 16, 16), 0.5)
    assert float(pixel_loss(a, b, "l1")) == pytest.approx(0.5)
    assert float(pixel_loss(a, b, "l2")) == pytest.approx(0.25)
    assert float(pixel_loss(b, b, "ssim")) == pytest.approx(0.0, abs=1e-6)


def test_mc_and_ei_are_separate_losses_that_self_supervised_sums():
    """MC vanishes for a reconstruction consistent with y; EI vanishes for a model that
    returns exactly the transformed image; the strategy is their weighted sum."""
    from spade.finetune import Context
    from spade.finetune.losses import EILoss, MCLoss
    physics, model = cs_physics(), tiny_model().requires_grad_(False)
    x = torch.rand(1, 1, 66, 66)
    y = physics.A(x)
    assert float(MCLoss()(x, y, physics)) == pytest.approx(0.0, abs=1e-10)
    assert float(MCLoss()(x + 0.1, y, physics)) > 1e-4

    transformed = TransformGroup(["flip"]).sample(x.shape, torch.Generator().manual_seed(0))(x)
    exact = lambda y_, physics_: transformed  # noqa: E731 - f(A T x) = T x for the T drawn with seed 0
    ei = EILoss(["flip"])
    assert float(ei(x, y, physics, exact, torch.Generator().manual_seed(0))) == 0.0
    assert float(ei(x, y, physics, model, torch.Generator().manual_seed(0))) > 0

    (_, ss), = build_strategies("self-supervised", {"self-supervised": {"mc_weight": 2.0, "ei_weight": 0.5}})
    x_net = model(y, physics)
    total = ss.loss(x_net, y, physics, model, Context(generator=torch.Generator().manual_seed(1)))
    parts = 2.0 * MCLoss()(x_net, y, physics) + 0.5 * EILoss()(x_net, y, physics, model, torch.Generator().manual_seed(1))
    assert float(total) == pytest.approx(float(parts), rel=1e-6)
