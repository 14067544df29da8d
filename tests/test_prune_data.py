"""Data-driven criteria (taylor, hessian) and depth pruning on SPADE models."""
from __future__ import annotations

import pytest
import torch

import spade
from spade.data import example_pair
from spade.errors import SpadeError
from spade.models import create_model, load_model, save_model
from spade.physics import BlockCS


@pytest.fixture(scope="module")
def setup():
    physics = BlockCS.gaussian(0.25)
    _, y = example_pair(physics, side=33)
    batches = [((yy, physics), x) for x, yy in (example_pair(physics, side=33, seed=s + 1) for s in range(2))]
    return physics, y, batches


def ista(sharing="untied", phases=4):
    extra = {"stages": 3, "recursions": 2} if sharing == "recursive" else {}
    return create_model("ista-net-plus", phases=phases, sharing=sharing, **extra).eval()


def kept(model):
    return [m.out_channels for n, m in model.named_modules() if n.endswith("conv1_forward")]


@pytest.mark.parametrize("criterion", ["taylor", "hessian"])
def test_data_criteria_use_the_data_and_are_recorded(setup, criterion, tmp_path):
    physics, y, batches = setup
    model = ista()
    small, record = spade.prune(model, (y, physics), ratio=0.5, importance=criterion, data=batches)
    assert record.data_samples == 2 and record.settings["criterion"] == criterion
    assert kept(small) == [16] * 4 and small(y, physics).shape == (1, 1, 33, 33)
    l1, _ = spade.prune(model, (y, physics), ratio=0.5)
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(small.modules(), l1.modules())
               if isinstance(a, torch.nn.Conv2d))
    assert all(p.grad is None for p in small.parameters()) and all(p.grad is None for p in model.parameters())
    save_model(tmp_path / "m.pt", small, physics, pruning=record.spec_entry())
    assert load_model(tmp_path / "m.pt").spec["pruning"]["criterion"] == criterion


def test_depth_untied_rebuilds_through_the_registry(setup):
    physics, y, batches = setup
    model = ista("untied", phases=4)
    small, record = spade.prune(model, (y, physics), ratio=0.0, depth=2, data=batches)
    assert small.config["phases"] == 2 and len(small.sharing.blocks) == 2
    removed = record.depth["removed"]
    kept_blocks = [i for i in range(4) if i not in removed]
    assert len(removed) == 2 and len(record.depth["psnr_drop"]) == 4
    for new, old in zip(small.sharing.blocks, kept_blocks):
        assert torch.equal(new.conv_D.weight, model.sharing.blocks[old].conv_D.weight)
    drops = record.depth["psnr_drop"]
    assert max(drops[str(i)] for i in removed) <= min(drops[str(i)] for i in kept_blocks)


def test_depth_and_width_together_and_saved(setup, tmp_path):
    physics, y, batches = setup
    small, record = spade.prune(ista("recursive"), (y, physics), ratio=0.5, depth=1, data=batches, round_to=8)
    assert small.config["stages"] == 2 and record.depth["unit"] == "stage"
    assert kept(small) == [16, 16]
    save_model(tmp_path / "r.pt", small, physics, pruning=record.spec_entry())
    loaded = load_model(tmp_path / "r.pt")
    assert torch.equal(loaded.model(y, physics), small.eval()(y, physics))


def test_depth_tied_needs_no_data(setup):
    physics, y, _ = setup
    small, record = spade.prune(ista("tied", phases=5), (y, physics), ratio=0.0, depth=2)
    assert small.config["phases"] == 3 and record.depth["removed"] == [3, 4]
    with pytest.raises(SpadeError, match="depth 5 is out of range"):
        spade.prune(ista("tied", phases=5), (y, physics), ratio=0.0, depth=5)
    with pytest.raises(SpadeError, match="on data"):
        spade.prune(ista("untied"), (y, physics), ratio=0.0, depth=1)
