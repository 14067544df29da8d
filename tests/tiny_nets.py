"""Tiny ISTA-Net+ model files (and their fixtures) for the profile, report and export tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from spade.models import create_model, save_model
from spade.models.io import sync_layer_attributes
from spade.physics import BlockCS

PHASES, CHANNELS = 2, 8


def halve_widths(model: nn.Module) -> nn.Module:
    """Structured prune of an untied ISTA-Net+: keep the first half of every phase's
    feature channels (the image channels stay)."""
    for phase in model.sharing.blocks:
        k = phase.conv_D.out_channels // 2
        phase.conv_D.weight = nn.Parameter(phase.conv_D.weight[:k].clone())
        for name in ("conv1_forward", "conv2_forward", "conv1_backward", "conv2_backward"):
            conv = getattr(phase, name)
            conv.weight = nn.Parameter(conv.weight[:k, :k].clone())
        phase.conv_G.weight = nn.Parameter(phase.conv_G.weight[:, :k].clone())
    sync_layer_attributes(model)
    return model


def tiny_models(folder: Path) -> dict[str, Path]:
    """Unpruned, width-halved and recursive tiny CS models (same physics), saved in ``folder``."""
    torch.manual_seed(0)
    physics = BlockCS.gaussian(0.25)
    paths = {k: folder / f"{k}.spade" for k in ("base", "half", "rec")}
    base = create_model("ista-net-plus", phases=PHASES, channels=CHANNELS)
    save_model(paths["base"], base, physics, protocol="ista-cs")
    half = halve_widths(create_model("ista-net-plus", phases=PHASES, channels=CHANNELS))
    half.load_state_dict(halve_widths(base).state_dict())
    save_model(paths["half"], half, physics, protocol="ista-cs", pruning={"ratio": 0.5, "importance": "first-k"})
    rec = create_model("ista-net-plus", channels=CHANNELS, sharing="recursive", stages=2, recursions=1)
    save_model(paths["rec"], rec, physics, protocol="ista-cs")
    return paths


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops: a second thread only adds synchronisation on a busy machine."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """:func:`tiny_models` saved in a temporary folder."""
    return tiny_models(tmp_path_factory.mktemp("tiny"))
