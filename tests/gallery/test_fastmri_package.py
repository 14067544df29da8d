"""fastMRI's own ``fastmri.models.VarNet``, installed from its package and left unmodified
(the gallery's ``fastmri_varnet`` is a re-typed copy): pruned at 0.5 it keeps its output
shape, its real/imaginary channels and every U-Net's input and output, and costs less.
Skips where the ``fastmri`` package is not installed (its models need no torchvision)."""
from __future__ import annotations

import pytest
import torch

import spade

fastmri_models = pytest.importorskip("fastmri.models", reason="the fastmri package is not installed")

import fastmri  # noqa: E402


def test_fastmri_package_varnet_prunes_unmodified(tmp_path):
    torch.manual_seed(0)
    model = fastmri_models.VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=8, pools=2).eval()
    image = torch.randn(1, 4, 24, 24, 2)
    mask = torch.rand(1, 1, 1, 24, 1) < 0.4
    mask[..., 9:15, :] = True
    example = (fastmri.fft2c(image) * mask, mask, 6)
    small, record = spade.prune(model, example, ratio=0.5)
    with torch.no_grad():
        before, after = model(*example), small(*example)
    assert after.shape == before.shape == (1, 24, 24) and torch.isfinite(after).all()
    assert record.params_after < record.params_before and record.macs_after < record.macs_before
    for unet in [c.model.unet for c in small.cascades] + [small.sens_net.norm_unet.unet]:
        assert unet.down_sample_layers[0].layers[0].in_channels == 2  # real/imag in
        assert unet.up_conv[-1][1].out_channels == 2  # real/imag out
    assert small.cascades[0].model.unet.down_sample_layers[0].layers[0].out_channels == 4
    spade.save_pruned(tmp_path / "varnet.pt", small, record)
    fresh = fastmri_models.VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=8, pools=2)
    restored = spade.load_pruned(tmp_path / "varnet.pt", fresh, example)
    with torch.no_grad():
        assert torch.equal(restored.eval()(*example), after)
