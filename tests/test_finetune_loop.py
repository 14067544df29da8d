"""The training loop: determinism, exact resume, NaN detection, early stopping, random CS
physics per step, any ``model(y, physics)`` (not only the zoo), distributed sharding."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from finetune_helpers import crops, cs_physics, tiny_model
from spade.errors import SpadeError
from spade.finetune import RandomBlockCS, Strategy, finetune
from spade.finetune import strategies as strategies_module
from spade.finetune.checkpoint import load_checkpoint
from spade.finetune.data import physics_at, shard
from spade.physics import build_physics

QUIET = {"progress": False, "log": lambda m: None}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest on a shared 2-core machine


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run(tmp_path=None, model_seed=0, **kw):
    torch.manual_seed(model_seed)
    model = tiny_model(sharing="recursive", stages=2, recursions=2)  # randomised recursions use the global RNG
    settings = {"steps": 6, "batch": 2, "patch": 33, "lr": 1e-3, "seed": 5, **kw}
    return finetune(model, cs_physics(), crops(3, 66), "supervised", **QUIET, **settings)


def test_same_seed_gives_bitwise_identical_weights():
    a, ha = _run()
    b, hb = _run()
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [s["loss"] for s in ha.steps] == [s["loss"] for s in hb.steps]
    c, _ = _run(seed=6)
    assert not all(torch.equal(wa[k], v) for k, v in _weights(c).items())


class Interrupt(Strategy):
    """Supervised L2 that raises after ``stop_after`` calls (a crash mid-run)."""

    name = "interrupt"
    uses_ground_truth = True
    stop_after = None
    calls = 0

    def loss(self, x_net, y, physics, model, ctx):
        Interrupt.calls += 1
        if Interrupt.stop_after is not None and Interrupt.calls > Interrupt.stop_after:
            raise KeyboardInterrupt
        return torch.mean((x_net - ctx.x) ** 2)


def test_resume_continues_exactly(tmp_path, monkeypatch):
    monkeypatch.setitem(strategies_module._BUILTIN, "interrupt", Interrupt)
    settings = {"steps": 8, "batch": 2, "patch": 33, "lr": 1e-3, "seed": 1, "checkpoint_every": 3}

    def model():
        torch.manual_seed(0)
        return tiny_model(sharing="recursive", stages=2, recursions=2)

    Interrupt.calls, Interrupt.stop_after = 0, None
    ref, ref_history = finetune(model(), cs_physics(), crops(3, 66), "interrupt", **QUIET, **settings)

    ckpt = tmp_path / "run.ckpt"
    Interrupt.calls, Interrupt.stop_after = 0, 7  # dies in step 8, after the checkpoint of step 6
    with pytest.raises(KeyboardInterrupt):
        finetune(model(), cs_physics(), crops(3, 66), "interrupt", checkpoint=ckpt, **QUIET, **settings)
    blob = load_checkpoint(ckpt)
    assert blob["step"] == 6
    assert all(int(s["step"]) == 6 for s in blob["optimizer"]["state"].values())

    with pytest.raises(SpadeError, match="resume it"):
        finetune(model(), cs_physics(), crops(3, 66), "interrupt", checkpoint=ckpt, **QUIET, **settings)
    with pytest.raises(SpadeError, match=r"belongs to another run \(settings"):
        finetune(model(), cs_physics(), crops(3, 66), "interrupt", checkpoint=ckpt, resume=True, **QUIET,
                 **{**settings, "lr": 2e-3})

    Interrupt.calls, Interrupt.stop_after = 0, None
    resumed, history = finetune(model(), cs_physics(), crops(3, 66), "interrupt", checkpoint=ckpt, resume=True,
                                **QUIET, **settings)
    assert history.resumed_from == 6 and Interrupt.calls == 2
    assert [s["step"] for s in history.steps] == list(range(1, 9))
    assert [s["loss"] for s in history.steps] == [s["loss"] for s in ref_history.steps]
    wr, wf = _weights(ref), _weights(resumed)
    assert all(torch.equal(wr[k], wf[k]) for k in wr)
    assert all(int(s["step"]) == 8 for s in load_checkpoint(ckpt)["optimizer"]["state"].values())


class Explode(Strategy):
    """Supervised L2 whose loss turns NaN from call ``at`` on."""

    name = "explode"
    uses_ground_truth = True
    at = 5
    calls = 0

    def loss(self, x_net, y, physics, model, ctx):
        Explode.calls += 1
        value = torch.mean((x_net - ctx.x) ** 2)
        return value * float("nan") if Explode.calls >= Explode.at else value


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(strategies_module._BUILTIN, "explode", Explode)
    Explode.calls = 0
    ckpt = tmp_path / "run.ckpt"
    torch.manual_seed(0)
    with pytest.raises(SpadeError, match=rf"stopped at step 5: loss nan.*last good checkpoint is {ckpt} \(step 4\)"):
        finetune(tiny_model(), cs_physics(), crops(2, 66), "explode", checkpoint=ckpt, steps=10, batch=2,
                 patch=33, checkpoint_every=2, **QUIET)
    blob = load_checkpoint(ckpt)
    assert blob["step"] == 4
    assert all(torch.isfinite(v).all() for v in blob["model"].values())


def test_validation_early_stopping_restores_best():
    torch.manual_seed(0)
    # a learning rate far too high: validation PSNR stops improving and the run stops early
    model, history = finetune(tiny_model(), cs_physics(), crops(3, 66), "supervised", val=crops(1, 66, offset=5),
                              steps=40, batch=2, patch=33, lr=0.5, val_every=2, patience=2, **QUIET)
    assert history.stopped.startswith("early stopping")
    assert len(history.steps) < 40
    best = max(v["psnr"] for v in history.validations)
    assert history.best_psnr == best
    from spade.evaluation import evaluate

    assert evaluate(model, cs_physics(), crops(1, 66, offset=5), "ista-cs").mean("psnr") == pytest.approx(best)


def test_validation_must_be_disjoint_and_needed():
    with pytest.raises(SpadeError, match="overlap"):
        finetune(tiny_model(), cs_physics(), crops(2, 66), "supervised", val=crops(1, 66), steps=1, patch=33, **QUIET)
    with pytest.raises(SpadeError, match="need validation images"):
        finetune(tiny_model(), cs_physics(), crops(2, 66), "supervised", steps=1, patch=33, patience=2, **QUIET)


def test_settings_are_validated():
    for bad, msg in [({"steps": 0}, "steps = 0 must be a whole number >= 1"),
                     ({"steps": 2, "epochs": 1}, "exactly one of steps and epochs"),
                     ({"steps": 2, "optimizer": "sgd"}, r"optimizer = 'sgd' is not one of \['adam', 'adamw'\]"),
                     ({"steps": 2, "lr": -1.0}, "lr = -1.0 must be a number > 0"),
                     ({"steps": 2, "batchsize": 3}, r"no key \['batchsize'\]: allowed are")]:
        with pytest.raises(SpadeError, match=msg):
            finetune(tiny_model(), cs_physics(), crops(1, 66), "supervised", **QUIET, **bad)


def test_random_cs_ratio_per_step():
    physics = RandomBlockCS([0.1, 0.25, 0.5], seed=0)
    ops = [physics_at(physics, step, seed=0) for step in range(20)]
    assert {round(op.ratio, 2) for op in ops} == {0.1, 0.25, 0.5}
    assert torch.equal(physics_at(physics, 3, seed=0).phi, ops[3].phi)  # reproducible per step
    same_ratio = [op.phi for op in ops if op.ratio == ops[3].ratio]
    assert len(same_ratio) > 1 and not torch.equal(same_ratio[0], same_ratio[1])  # a fresh Phi per step
    torch.manual_seed(0)
    _, history = finetune(tiny_model(), physics, crops(3, 66), "supervised", val=crops(1, 66, offset=5), steps=4,
                          batch=2, patch=33, lr=1e-3, **QUIET)
    assert len(history.validations) == 1 and history.validations[0]["psnr"] > 0
    with pytest.raises(SpadeError, match="needs data_mode 'patches'"):
        finetune(tiny_model(), physics, crops(1, 66), "self-supervised", steps=1, data_mode="measurements", **QUIET)


class TinyNet(nn.Module):
    """A model outside the zoo: starting point plus a residual CNN, one data-consistency
    gradient step; works for any physics."""

    def __init__(self, channels: int):
        super().__init__()
        self.step = nn.Parameter(torch.tensor(0.5))
        self.cnn = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, channels, 3, padding=1))

    def forward(self, y, physics, return_aux=False):
        x0 = physics.A_dagger(y)
        x1 = x0 - self.step * physics.A_adjoint(physics.A(x0) - y)
        x = x1 + self.cnn(x1)
        return (x, {"iterates": [x1, x]}) if return_aux else x


@pytest.mark.parametrize("settings, channels, data_mode, patch", [
    ({"kind": "sr", "scale": 2}, 1, "patches", 32),
    ({"kind": "sr", "scale": 3}, 1, "measurements", 0),
    ({"kind": "mri", "shape": [64, 64], "acceleration": 4}, 2, "measurements", 0),
    ({"kind": "mri", "shape": [64, 64], "acceleration": 4, "real_image": True}, 1, "patches", 64),
])
def test_any_model_any_physics(settings, channels, data_mode, patch):
    torch.manual_seed(0)
    physics = build_physics(settings)
    strategy = "supervised,self-supervised:0.5" if data_mode == "patches" else "self-supervised"
    protocol = "sr" if settings["kind"] == "sr" else "fastmri"
    _, history = finetune(TinyNet(channels), physics, crops(2, 64), strategy, steps=8, batch=2, patch=patch,
                          lr=3e-3, protocol=protocol, val=crops(1, 64, offset=4), data_mode=data_mode, **QUIET)
    totals = [s["loss"] for s in history.steps]
    assert sum(totals[-2:]) < sum(totals[:2]), totals


def test_shard_weights_reproduce_the_batch_mean():
    """DDP averages the processes' gradients; weighted share means must give the batch mean."""
    values = torch.rand(8, dtype=torch.float64)
    for n in (1, 2, 3, 5, 8):
        for world in (1, 2, 3):
            shares = [shard(n, r, world) for r in range(world)]
            covered = [i for part, w in shares if w > 0 for i in range(n)[part]]
            assert covered == list(range(n))
            averaged = sum(w * values[:n][part].mean() for part, w in shares) / world
            assert float(averaged) == pytest.approx(float(values[:n].mean()))
