"""Reconstruction at prune time: closed-form re-fit of the pruned layers (library and CLI)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

import spade
from spade.cli import main
from spade.data import embedded_photos, example_pair
from spade.errors import SpadeError
from spade.models import create_model, load_model, save_model
from spade.physics import BlockCS
from spade.prune import reconstruct
from spade.prune.reconstruct import kept_channels


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cs():
    torch.manual_seed(0)
    physics = BlockCS.gaussian(0.25)
    _, y = example_pair(physics, side=33)
    batches = []
    for i in range(3):
        x = torch.rand(1, 1, 66, 66)
        batches.append(((physics.simulate(x, seed=i), physics), x))
    return physics, y, batches


def output_error(a, b, batches):
    with torch.no_grad():
        return sum(float(torch.mean((a(*inputs) - b(*inputs)) ** 2)) for inputs, _ in batches)


def test_reconstruction_brings_pruned_ista_closer_to_unpruned(cs):
    physics, y, batches = cs
    torch.manual_seed(1)
    model = create_model("ista-net-plus", phases=2, channels=16).eval()
    plain, rec0 = spade.prune(model, (y, physics), ratio=0.5, data=batches)
    refit, rec1 = spade.prune(model, (y, physics), ratio=0.5, data=batches, reconstruct=True)
    assert rec0.reconstruct is None
    layers = rec1.reconstruct["layers"]
    assert len(layers) == 12 and rec1.reconstruct["samples"] == 3  # 6 convolutions x 2 phases
    assert all(after <= before + 1e-9 for before, after in layers.values())
    assert layers["sharing.blocks.0.conv_G"][1] < 0.9 * layers["sharing.blocks.0.conv_G"][0]
    assert output_error(refit, model, batches) < 0.7 * output_error(plain, model, batches)
    assert [p.shape for p in refit.parameters()] == [p.shape for p in plain.parameters()]
    assert rec1.spec_entry()["reconstruct"]["ridge"] == 1e-3


def test_one_pass_reference_outputs_fit_as_the_layer_by_layer_capture(cs, monkeypatch):
    """The unpruned outputs captured in one pass per batch (the default) and, past the
    memory cap, layer by layer give the same re-fit, on a prior called once per phase."""
    physics, y, batches = cs
    torch.manual_seed(1)
    model = create_model("ista-net-plus", phases=3, channels=16).eval()
    cached, rec0 = spade.prune(model, (y, physics), ratio=0.5, data=batches, reconstruct=True)
    monkeypatch.setattr(reconstruct, "CACHE_BYTES", 0)
    calls_before = []
    monkeypatch.setattr(reconstruct.calls, "capture", _counting(reconstruct.calls.capture, calls_before))
    direct, rec1 = spade.prune(model, (y, physics), ratio=0.5, data=batches, reconstruct=True)
    assert sum(1 for want in calls_before if want == "out") == 18 * len(batches)  # the fallback ran
    assert rec0.reconstruct["layers"].keys() == rec1.reconstruct["layers"].keys()
    for name, errors in rec0.reconstruct["layers"].items():
        assert errors == pytest.approx(rec1.reconstruct["layers"][name], rel=1e-6, abs=1e-12)
    for a, b in zip(cached.parameters(), direct.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _counting(fn, seen):
    def wrapped(model, module, example, calls_needed=1, want="out", **kw):
        seen.append(want)
        return fn(model, module, example, calls_needed, want, **kw)
    return wrapped


class Chain(nn.Module):
    """conv (3 -> 8) -> conv (8 -> 2), linear: the output is a linear function of conv a's channels."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 2, 3, padding=1, bias=False)

    def forward(self, x):
        return self.b(self.a(x))


def test_exact_recovery_when_removed_channels_are_combinations_of_kept_ones():
    torch.manual_seed(0)
    net = Chain().eval()
    with torch.no_grad():  # channels 4..7 = 0.1 x channels 0..3: small, so l1 removes them
        net.a.weight[4:] = 0.1 * net.a.weight[:4]
        net.a.bias[4:] = 0.1 * net.a.bias[:4]
        net.b.weight[:, 4:] *= 0.1
    batches = [(torch.randn(2, 3, 12, 12), None) for _ in range(2)]
    example = torch.randn(1, 3, 12, 12)
    plain, _ = spade.prune(net, example, ratio=0.5, data=batches)
    refit, record = spade.prune(net, example, ratio=0.5, data=batches, reconstruct=True, ridge=1e-9)
    assert refit.a.out_channels == 4
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        want, got, before = net(x), refit(x), plain(x)
    assert float((before - want).abs().max()) > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert record.reconstruct["layers"]["b"][1] < 1e-8


def test_kept_channels_follow_the_pruning_history():
    torch.manual_seed(0)
    net = Chain().eval()
    example = torch.randn(1, 3, 12, 12)
    pruned, record = spade.prune(net, example, ratio=0.5)
    kept = kept_channels(net, example, record.history)
    out_a, in_a = kept["a"]
    assert in_a.tolist() == [0, 1, 2] and len(out_a) == 4
    torch.testing.assert_close(pruned.a.weight, net.a.weight[out_a])
    torch.testing.assert_close(pruned.b.weight, net.b.weight[:, kept["b"][1]])


def test_reconstruction_needs_data(cs):
    physics, y, _ = cs
    with pytest.raises(SpadeError, match="calibration measurements: give data"):
        spade.prune(create_model("ista-net-plus", phases=1, channels=8), (y, physics), ratio=0.5, reconstruct=True)


# --- command line -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("reconstruct_cli")
    torch.manual_seed(0)
    save_model(root / "ista.pt", create_model("ista-net-plus", phases=2, channels=16), BlockCS.gaussian(0.25),
               protocol="ista-cs")
    images = root / "images"
    images.mkdir()
    for photo in embedded_photos()[:2]:
        PILImage.fromarray(np.ascontiguousarray(photo.pixels[:60, :60])).save(images / f"{photo.name}.png")
    return root


@pytest.mark.parametrize("flag", [[], ["--reconstruct"], ["--no-reconstruct"]])
def test_cli_reconstruct_is_on_with_data_and_recorded(files, capsys, flag):
    out = files / f"p{len(flag)}{''.join(flag)}.pt"
    assert main(["prune", str(files / "ista.pt"), "--ratio", "0.5", "--data", str(files / "images"), "--samples", "2",
                 "--out", str(out), "--json", *flag]) == 0
    report = json.loads(capsys.readouterr().out)
    spec = load_model(out).spec["pruning"]
    if flag == ["--no-reconstruct"]:
        assert report["reconstruct"] is None and spec["reconstruct"] is None
    else:
        assert spec["reconstruct"]["samples"] == 2 and len(spec["reconstruct"]["layers"]) == 12
        assert spec["reconstruct"] == report["reconstruct"]


def test_cli_reconstruct_without_data_is_a_one_line_error(files, capsys):
    out = files / "nodata.pt"
    assert main(["prune", str(files / "ista.pt"), "--ratio", "0.5", "--reconstruct", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "give data (--data" in err and len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("flag", [[], ["--no-depth-refit"]])
def test_cli_depth_refit_follows_reconstruct_unless_switched_off(files, capsys, flag):
    """``--no-depth-refit``: the pruned layers are re-fitted, the phase after the removed
    one is left as the unpruned model has it."""
    out = files / f"d{len(flag)}.pt"
    assert main(["prune", str(files / "ista.pt"), "--ratio", "0.5", "--depth", "1", "--data", str(files / "images"),
                 "--samples", "2", "--out", str(out), "--json", *flag]) == 0
    capsys.readouterr()
    spec = load_model(out).spec["pruning"]
    assert spec["reconstruct"]["layers"] and spec["depth"]["removed"]
    assert (spec["depth"]["refit"] is not None) == (not flag)


def test_cli_depth_refit_without_data_is_a_one_line_error(files, capsys):
    out = files / "nodata-depth.pt"
    assert main(["prune", str(files / "ista.pt"), "--ratio", "0.5", "--depth", "1", "--depth-refit",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "give --data" in err and len(err.splitlines()) == 1 and not out.exists()


def test_cli_text_output_names_the_reconstruction(files, capsys):
    assert main(["prune", str(files / "ista.pt"), "--ratio", "0.5", "--data", str(files / "images"), "--samples", "1",
                 "--ridge", "0.01", "--out", str(files / "text.pt")]) == 0
    assert "reconstructed 12 layer(s) on 1 calibration sample(s)" in capsys.readouterr().out


def test_cli_crop_shrinks_the_calibration_images(files, capsys, monkeypatch):
    from spade.prune import reconstruct as module

    seen = []
    real = module.reconstruct

    def spy(pruned, reference, example, history, batches, ridge=1e-3):
        seen.extend(inputs[0].shape for inputs, _ in batches)
        return real(pruned, reference, example, history, batches, ridge)

    monkeypatch.setattr("spade.prune.api.refit", spy)
    out = files / "crop.pt"
    assert main(["prune", str(files / "ista.pt"), "--ratio", "0.5", "--data", str(files / "images"), "--samples", "2",
                 "--crop", "33", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert load_model(out).spec["pruning"]["crop"] == 33
    assert seen and all(tuple(s[-2:]) == (2, 2) for s in seen)  # 33 px + the protocol's extra block: 2 x 2 blocks
