"""Third-party networks written in their authors' idiom, pruned unmodified: each prunes at
0.5, runs on its own example input with the same output shapes, costs fewer MACs, gives
finite outputs with its interface (image / physics) channels intact, is exact at ratio
0, and reloads onto a fresh instance of its own class."""
from __future__ import annotations

import copy

import pytest
import torch

import spade
from spade.errors import SpadeError

import coast_official
import deepinv_unrolled
import fastmri_varnet
import ista_official
import modl  # noqa: F401  (imported by name on the command line)


def _shapes(output):
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (list, tuple)):
        return [_shapes(o) for o in output]
    return {k: _shapes(v) for k, v in output.items()}


def _first(output):
    while not isinstance(output, torch.Tensor):
        output = output[0]
    return output


def check_pruned(model, example, small, record):
    """The common invariants of a pruned third-party model."""
    with torch.no_grad():
        before, after = model(*example), small(*example)
    assert _shapes(after) == _shapes(before)
    assert torch.isfinite(_first(after)).all()
    assert record.macs_after < record.macs_before and record.params_after < record.params_before


@pytest.fixture(scope="module")
def official_ista(bench_data):
    folder = bench_data / "ista_net_plus" / "cs25"
    torch.manual_seed(0)
    return ista_official.load_official(folder), ista_official.official_inputs(folder, 25)


@pytest.mark.bench_data
def test_official_ista_net_plus_with_raw_parameters_prunes_runs_and_reloads(official_ista, tmp_path):
    model, example = official_ista
    state = {k: v.clone() for k, v in model.state_dict().items()}
    small, record = spade.prune(model, example, ratio=0.5)
    check_pruned(model, example, small, record)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the original is untouched
    for block in small.fcs:  # the user's own attributes hold the pruned raw weights
        assert type(block.conv1_forward) is torch.nn.Parameter and block.conv1_forward.shape == (16, 32, 3, 3)
        assert block.conv_D.shape[1] == 1 and block.conv_G.shape[0] == 1  # the image channel stays
    assert not hasattr(small, "_spade_functional")
    assert record.groups["fcs.0.conv1_forward"] == [32, 16]
    assert "fcs.0.conv2_backward+fcs.0.conv_D" in record.interfaces  # the symmetry loss is an output
    spade.prune.save_pruned(tmp_path / "ista.pt", small, record)
    fresh = ista_official.ISTANetplus(9)
    restored = spade.prune.load_pruned(tmp_path / "ista.pt", fresh, example)
    assert torch.equal(restored.eval()(*example)[0], small(*example)[0])
    assert fresh.fcs[0].conv1_forward.shape == (32, 32, 3, 3)


@pytest.mark.bench_data
def test_official_ista_net_plus_reconstruction_only_prunes_the_transform_too(official_ista):
    model, example = official_ista
    small, record = spade.prune(model, lambda m: m(*example)[0], ratio=0.5)
    assert small.fcs[0].conv_D.shape == (16, 1, 3, 3) and not record.interfaces.get("fcs.0.conv2_backward+fcs.0.conv_D")


@pytest.fixture(scope="module")
def varnet():
    torch.manual_seed(0)
    model = fastmri_varnet.VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=8, pools=2).eval()
    return model, fastmri_varnet.example_inputs()


def test_fastmri_varnet_prunes_unmodified(varnet, tmp_path):
    model, example = varnet
    small, record = spade.prune(model, example, ratio=0.5)
    check_pruned(model, example, small, record)
    for unet in [c.model.unet for c in small.cascades] + [small.sens_net.norm_unet.unet]:
        assert unet.down_sample_layers[0].layers[0].in_channels == 2  # real/imag in
        assert unet.up_conv[-1][1].out_channels == 2  # real/imag out
        assert unet.down_sample_layers[0].layers[0].out_channels == unet.down_sample_layers[0].layers[0].weight.shape[0]
    first = small.cascades[0].model.unet
    assert first.down_sample_layers[0].layers[0].out_channels == 4
    assert first.up_conv[0].layers[0].in_channels == 16  # the skip concatenation after pad: 8 + 8
    assert list(record.interfaces) == [
        "cascades.0.model.unet.up_conv.1.1+cascades.1.model.unet.up_conv.1.1+sens_net.norm_unet.unet.up_conv.1.1"]
    spade.prune.save_pruned(tmp_path / "varnet.pt", small, record)
    restored = spade.prune.load_pruned(tmp_path / "varnet.pt", fastmri_varnet.VarNet(2, 4, 2, 8, 2), example)
    assert torch.equal(restored.eval()(*example), small(*example))


def test_coast_hard_coded_scale_view_is_rolled_back_with_one_line():
    torch.manual_seed(0)
    model, example = coast_official.COAST(3).eval(), coast_official.example_inputs()
    small, record = spade.prune(model, example, ratio=0.5)
    check_pruned(model, example, small, record)
    scaled = [k for k, v in record.interfaces.items() if "rolled back" in v]
    assert len(scaled) == 1 and "res_scale_linear" in scaled[0] and "view(-1, 32" not in record.interfaces[scaled[0]]
    assert "[-1, 32, 1, 1]" in record.interfaces[scaled[0]] and "\n" not in record.interfaces[scaled[0]]
    assert small.res_scale_linear.out_features == 32 and small.fcs[0].head_conv.out_channels == 32
    assert small.fcs[0].ResidualBlocks[0].conv1.out_channels == 16
    assert small.fcs[1].ResidualBlocks[0].res_scale is small.res_scale_linear  # still one shared layer


def test_graph_analysis_has_a_time_limit(varnet):
    model, example = varnet
    with pytest.raises(SpadeError, match=r"took longer than 0.01 s \(.*\): protect="):
        spade.prune(model, example, ratio=0.5, time_limit=0.01)


@pytest.fixture(scope="module")
def pgd():
    from spade.data import example_pair
    from spade.physics import BlockCS
    torch.manual_seed(0)
    physics = BlockCS.gaussian(0.25)
    _, y = example_pair(physics, side=66)
    return deepinv_unrolled.UnrolledPGD(deepinv_unrolled.GatedDnCNN()).eval(), (y, physics)


def test_deepinverse_style_shared_prior_shrinks_once(pgd):
    model, example = pgd
    small, record = spade.prune(model, example, ratio=0.5)
    check_pruned(model, example, small, record)
    prior = small.prior
    assert prior.in_conv.in_channels == 1 and prior.out_conv.out_channels == 1
    assert prior.in_conv.out_channels == 8 and prior.conv_list[0].in_channels == 8
    assert prior.gate.out_channels == 16 and prior.out_conv.in_channels == 8  # chunk halves pruned alike
    assert small.stepsize.shape == (4,)


def test_adapter_fine_tunes_profiles_and_reloads_a_third_party_model(pgd, tmp_path):
    from finetune_helpers import crops
    from spade.finetune import finetune
    from spade.profile import forward_cost
    model, example = pgd
    call = lambda m, y, physics: m(y, physics)  # noqa: E731  (how the user's class is called)
    small, record = spade.prune(spade.Adapter(model, call), example, ratio=0.5)
    assert set(k for k, _ in small.named_parameters()) == {f"model.{k}" for k, _ in model.named_parameters()}
    physics = example[1]
    quiet = {"progress": False, "log": lambda m: None, "steps": 8, "batch": 2, "patch": 33, "lr": 1e-3, "seed": 0}
    tuned = spade.prune(spade.Adapter(model, call), example, ratio=0.5)[0]  # each strategy: test_gallery_invariants
    _, history = finetune(tuned, physics, crops(3, 66), "supervised", **quiet)
    losses = [s["loss"] for s in history.steps]
    assert sum(losses[-2:]) < sum(losses[:2])
    assert forward_cost(lambda: small(*example))["macs"] == record.macs_after < record.macs_before
    spade.save_pruned(tmp_path / "pgd.pt", small, record)
    restored = spade.load_pruned(tmp_path / "pgd.pt", spade.Adapter(deepinv_unrolled.UnrolledPGD(
        deepinv_unrolled.GatedDnCNN()), call), example)
    assert torch.equal(restored.eval()(*example), small.eval()(*example))


def test_cli_prunes_a_model_given_as_module_function(tmp_path, capsys):
    import json

    from spade.cli import main
    out = tmp_path / "pgd.pt"
    assert main(["prune", "deepinv_unrolled:build", "--ratio", "0.5", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params_after"] < report["params_before"] and out.is_file()
    model, example = deepinv_unrolled.build()
    restored = spade.load_pruned(out, model, example)
    assert restored.prior.in_conv.out_channels == 8 and restored(*example).shape == model(*example).shape
    for argv, message in ((["nowhere_module:build"], "cannot import 'nowhere_module'"),
                          (["deepinv_unrolled:nothing"], "has no function 'nothing'"),
                          (["modl:build", "--data", "embedded"], "--data needs the model called as model(y, physics)")):
        assert main(["prune", *argv[:1], "--ratio", "0.5", "--out", str(tmp_path / "x.pt"), *argv[1:]]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


@pytest.mark.bench_data
def test_official_ista_net_plus_pruning_dead_channels_is_exact(official_ista):
    model, example = official_ista
    model = copy.deepcopy(model)
    with torch.no_grad():
        for b in model.fcs:  # channels 0..3 of every prunable group: no weight makes or reads them
            for w in (b.conv1_forward, b.conv2_forward, b.conv1_backward):
                w[:4] = 0
            for w in (b.conv2_forward, b.conv1_backward, b.conv2_backward):
                w[:, :4] = 0
    small, record = spade.prune(model, example, ratio=0.125)
    assert record.groups["fcs.0.conv1_forward"] == [32, 28] and record.groups["fcs.0.conv2_forward"] == [32, 28]
    with torch.no_grad():
        assert torch.allclose(small(*example)[0], model(*example)[0], atol=1e-5)
