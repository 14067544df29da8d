"""Bring your own model: a third-party unrolled network, pruned from an example input."""
from __future__ import annotations

import pytest
import torch

import spade
from spade.errors import SpadeError

from byo_model import VarNetLite, example_inputs


@pytest.fixture(scope="module")
def pruned():
    torch.manual_seed(0)
    net = VarNetLite().eval()
    inputs = example_inputs()
    small, record = spade.prune(net, inputs, ratio=0.5)
    return net, inputs, small, record


def test_interfaces_found_and_priors_pruned(pruned):
    net, inputs, small, record = pruned
    for cascade in small.cascades:
        prior = cascade.prior
        assert prior.down1.layers[0].in_channels == 2 and prior.out.out_channels == 2
        assert prior.down1.layers[0].out_channels == 4 and prior.bottom.layers[3].out_channels == 16
        assert prior.dec2.layers[0].in_channels == 16  # skip concatenation: 8 + 8
    assert small.sens_net.unet.out.out_channels == 2 and small.sens_net.unet.down1.layers[0].in_channels == 2
    assert small.cascades[0].dc_weight.shape == (1,)
    assert [k for k in record.interfaces] == [
        "cascades.0.prior.out+cascades.1.prior.out+cascades.2.prior.out+sens_net.unet.out"]
    assert record.params_after < 0.3 * record.params_before and record.macs_after < 0.5 * record.macs_before
    out = small(*inputs)
    assert out.shape == net(*inputs).shape and torch.isfinite(out).all()


def test_protect_the_sensitivity_network(pruned):
    net, inputs, _, _ = pruned
    small, record = spade.prune(net, inputs, ratio=0.5, protect=["sens_net"])
    assert small.sens_net.unet.down1.layers[0].out_channels == 4
    assert small.cascades[0].prior.down1.layers[0].out_channels == 4
    assert sum(p.numel() for p in small.sens_net.parameters()) == sum(p.numel() for p in net.sens_net.parameters())


def test_save_and_reapply_history(pruned, tmp_path):
    net, inputs, small, record = pruned
    spade.prune.save_pruned(tmp_path / "small.pt", small, record)
    fresh = VarNetLite()
    restored = spade.prune.load_pruned(tmp_path / "small.pt", fresh, inputs)
    assert torch.equal(restored.eval()(*inputs), small.eval()(*inputs))
    assert sum(p.numel() for p in fresh.parameters()) == record.params_before  # the fresh instance is untouched
    with pytest.raises(SpadeError, match="does not fit"):
        spade.prune.load_pruned(tmp_path / "small.pt", VarNetLite(chans=4), inputs)


def test_depth_pruning_removes_cascades_ranked_on_data(tmp_path):
    torch.manual_seed(0)
    net = VarNetLite().eval()
    inputs = example_inputs()
    target = net(*inputs).detach() * 1.1
    data = [(example_inputs(seed=s), (net(*example_inputs(seed=s)) * 1.1).detach()) for s in range(2)]
    with pytest.raises(SpadeError, match="ranks the entry of cascadess on data"):
        spade.prune(net, inputs, ratio=0.0, depth=1)
    small, record = spade.prune(net, inputs, ratio=0.5, depth=1, data=data)
    assert len(small.cascades) == 2 and record.depth["unit"] == "entry of cascades"
    assert len(record.depth["psnr_drop"]) == 3 and len(record.depth["removed"]) == 1
    assert small(*inputs).shape == target.shape
    spade.prune.save_pruned(tmp_path / "deep.pt", small, record)
    restored = spade.prune.load_pruned(tmp_path / "deep.pt", VarNetLite(), inputs)
    assert torch.equal(restored.eval()(*inputs), small.eval()(*inputs))


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # --- the README's bring-your-own example, verbatim ---
    import torch
    from torch import nn

    import spade

    class Denoiser(nn.Module):
        def __init__(self, width=32):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(2, width, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(width, 2, 3, padding=1))

        def forward(self, x):
            return x - self.body(x)

    class UnrolledMRI(nn.Module):
        """x <- D(x); x <- data consistency in k-space, K times."""

        def __init__(self, iterations=4):
            super().__init__()
            self.denoisers = nn.ModuleList(Denoiser() for _ in range(iterations))

        def forward(self, kspace, mask):  # kspace (B, H, W) complex, mask (H, W) bool
            x = torch.view_as_real(torch.fft.ifft2(kspace, norm="ortho")).permute(0, 3, 1, 2)
            for denoise in self.denoisers:
                z = torch.view_as_complex(denoise(x).permute(0, 2, 3, 1).contiguous())
                k = torch.where(mask, kspace, torch.fft.fft2(z, norm="ortho"))
                x = torch.view_as_real(torch.fft.ifft2(k, norm="ortho")).permute(0, 3, 1, 2)
            return x

    net = UnrolledMRI()
    mask = torch.rand(64, 64) < 0.3
    kspace = torch.fft.fft2(torch.randn(1, 64, 64, dtype=torch.complex64)) * mask

    small, record = spade.prune(net, (kspace, mask), ratio=0.5)
    print(record.params_before, "->", record.params_after, "parameters")
    print(record.interfaces)  # the layers that keep their width, and why
    spade.prune.save_pruned("unrolled_mri_pruned.pt", small, record)
    again = spade.prune.load_pruned("unrolled_mri_pruned.pt", UnrolledMRI(), (kspace, mask))
    # --- end of the README example ---
    assert torch.equal(again(kspace, mask), small(kspace, mask))
    assert small.denoisers[0].body[0].out_channels == 16 and small.denoisers[0].body[4].out_channels == 2


def test_depth_refit_on_a_list_of_cascades(tmp_path):
    torch.manual_seed(0)
    net = VarNetLite().eval()
    inputs = example_inputs()
    data = [(example_inputs(seed=s), net(*example_inputs(seed=s)).detach()) for s in range(2)]
    small, record = spade.prune(net, inputs, ratio=0.0, depth=[0], data=data, reconstruct=True)
    before, after = record.depth["refit"]["units"]["0 (was 1)"]
    assert after < before and len(small.cascades) == 2
    spade.prune.save_pruned(tmp_path / "deep.pt", small, record)
    restored = spade.prune.load_pruned(tmp_path / "deep.pt", VarNetLite(), inputs)
    assert torch.equal(restored.eval()(*inputs), small.eval()(*inputs))
