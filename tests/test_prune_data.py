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


def _unit_error(model, unit, reference, ref_unit, batches):
    """Relative squared error of ``unit``'s output against ``ref_unit``'s, over the batches."""
    num = den = 0.0
    for (inputs, _) in batches:
        outs = []
        for net, block in ((model, unit), (reference, ref_unit)):
            seen = []
            handle = block.register_forward_hook(lambda _m, _a, out: seen.append(out[0].detach()))
            with torch.no_grad():
                net(*inputs)
            handle.remove()
            outs.append(seen[0])
        num += float(((outs[0] - outs[1]) ** 2).sum())
        den += float((outs[1] ** 2).sum())
    return num / den


def test_depth_refit_fits_the_unit_after_a_removed_one_to_the_unit_it_follows(setup):
    physics, y, batches = setup
    torch.manual_seed(0)
    model = ista("untied", phases=4)
    plain, _ = spade.prune(model, (y, physics), ratio=0.0, depth=[1], data=batches)
    fitted, record = spade.prune(model, (y, physics), ratio=0.0, depth=[1], data=batches, reconstruct=True)
    assert record.depth["removed"] == [1] and list(record.depth["refit"]["units"]) == ["1 (was 2)"]
    before, after = record.depth["refit"]["units"]["1 (was 2)"]
    # the recorded errors are what the units really do: block 1 of the pruned model against block 2 of the unpruned
    assert _unit_error(plain, plain.sharing.blocks[1], model, model.sharing.blocks[2], batches) == pytest.approx(before)
    assert _unit_error(fitted, fitted.sharing.blocks[1], model, model.sharing.blocks[2], batches) == \
        pytest.approx(after, rel=1e-4)
    assert after < 0.9 * before
    for j in (0, 2):  # only the unit after the removed one was re-fitted
        assert all(torch.equal(a, b) for a, b in zip(plain.sharing.blocks[j].parameters(),
                                                     fitted.sharing.blocks[j].parameters()))
    assert record.depth["psnr_after"] is not None
    assert all(p.requires_grad for p in fitted.parameters())  # the re-fit leaves the model trainable


def test_depth_refit_skips_shared_blocks_with_a_reason(setup):
    physics, y, batches = setup
    _, record = spade.prune(ista("recursive"), (y, physics), ratio=0.0, depth=[0], data=batches, reconstruct=True)
    assert record.depth["refit"]["units"] == {} and "not modules of their own" in record.depth["refit"]["skipped"]


def test_listed_units_are_removed_without_ranking(setup):
    physics, y, _ = setup
    small, record = spade.prune(ista("untied", phases=4), (y, physics), ratio=0.0, depth=[3, 0])
    assert record.depth["removed"] == [0, 3] and small.config["phases"] == 2 and record.depth["psnr_drop"] == {}
    with pytest.raises(SpadeError, match="indices in 0..3"):
        spade.prune(ista("untied", phases=4), (y, physics), ratio=0.0, depth=[4])
