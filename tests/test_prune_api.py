"""spade.prune on SPADE models: invariants, sharing modes, scopes, rounding, errors."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import spade
from spade.data import example_pair
from spade.errors import SpadeError
from spade.models import create_model
from spade.physics import BlockCS
from spade.prune import Graph


@pytest.fixture(scope="module")
def cs():
    physics = BlockCS.gaussian(0.25)
    _, y = example_pair(physics, side=33)
    return physics, y


def ista(sharing="untied", phases=3, **kw):
    extra = {"stages": 2, "recursions": 2} if sharing == "recursive" else {}
    return create_model("ista-net-plus", phases=phases, sharing=sharing, **extra, **kw).eval()


def widths(model, layer):
    return [m.out_channels for n, m in model.named_modules() if n.endswith(layer)]


def test_package_is_callable_and_module():
    assert callable(spade.prune) and spade.prune.prune is not None


@pytest.mark.parametrize("sharing", ["untied", "tied", "recursive"])
def test_ratio_zero_gives_identical_outputs(cs, sharing):
    physics, y = cs
    model = ista(sharing)
    small, record = spade.prune(model, (y, physics), ratio=0.0)
    assert torch.equal(small(y, physics), model(y, physics))
    assert record.params_after == record.params_before and record.history == []


def zero_channels(model, example, count):
    """Set every weight of channels 0..count-1 of each prunable group to zero."""
    graph = Graph(model, example)
    with torch.no_grad():
        for group in graph.groups:
            if group.interface:
                continue
            for item in graph.full_group(group):
                sel = [i for i, r in zip(item.idxs, item.root_idxs) if r < count]
                layer = item.dep.target.module
                if not isinstance(layer, (nn.Conv2d, nn.Linear)):
                    continue
                if graph.dg.is_out_channel_pruning_fn(item.dep.handler):
                    layer.weight[sel] = 0
                    if layer.bias is not None:
                        layer.bias[sel] = 0
                else:
                    layer.weight[:, sel] = 0


@pytest.mark.parametrize("sharing", ["untied", "tied", "recursive"])
def test_removing_all_zero_channels_keeps_outputs(cs, sharing):
    physics, y = cs
    model = ista(sharing)
    zero_channels(model, (y, physics), 16)
    small, record = spade.prune(model, (y, physics), ratio=0.5)
    assert record.params_after < record.params_before / 3
    assert torch.allclose(small(y, physics), model(y, physics), atol=1e-6)
    _, aux = small(y, physics, return_aux=True)  # the symmetry branch runs (a mean over fewer channels)
    assert torch.isfinite(aux["regularizer"])


@pytest.mark.parametrize("sharing", ["untied", "tied", "recursive"])
@pytest.mark.parametrize("scope", ["uniform", "global"])
def test_sharing_modes_shrink_every_call(cs, sharing, scope):
    physics, y = cs
    model = ista(sharing)
    small, record = spade.prune(model, (y, physics), ratio=0.5, scope=scope)
    assert small(y, physics).shape == (1, 1, 33, 33)
    blocks = small.sharing.blocks
    assert len(blocks) == len(model.sharing.blocks)
    for b in blocks:  # image interfaces intact, internal transforms consistent
        assert b.conv_D.in_channels == 1 and b.conv_G.out_channels == 1
        assert b.conv_D.out_channels == b.conv2_backward.out_channels == b.conv1_forward.in_channels
        assert b.conv2_forward.out_channels == b.conv1_backward.in_channels
    if sharing == "recursive":
        heads = small.sharing.modulation.heads
        assert heads[0][-1].out_features == blocks[0].conv2_forward.out_channels
        assert heads[1][-1].out_features == blocks[0].conv2_backward.out_channels
    if scope == "uniform":
        assert all(w == [32, 16] for w in record.groups.values() if w[0] == 32)
    total = [sum(w[i] for w in record.groups.values() if w[0] > 1) for i in (0, 1)]
    assert abs(total[1] / total[0] - 0.5) < 0.05
    small(y, physics, return_aux=True)


def test_untied_uniform_prunes_each_iteration_by_the_same_fraction(cs):
    physics, y = cs
    small, record = spade.prune(ista(), (y, physics), ratio=0.25)
    assert widths(small, "conv1_forward") == [24, 24, 24]
    assert record.interfaces and all("conv_G" in k for k in record.interfaces)


def test_round_to_and_steps(cs):
    physics, y = cs
    small, _ = spade.prune(ista(), (y, physics), ratio=0.6, round_to=8)
    assert set(widths(small, "conv1_forward")) == {16}  # 12.8 -> 13 -> nearest multiple of 8
    stepped, record = spade.prune(ista(), (y, physics), ratio=0.5, steps=3)
    assert set(widths(stepped, "conv1_forward")) == {16} and record.settings["steps"] == 3


def test_protect_by_name_and_by_flag(cs):
    physics, y = cs
    model = ista()
    model.sharing.blocks[2].spade_protect = True
    small, record = spade.prune(model, (y, physics), ratio=0.5, protect=["sharing.blocks.0"])
    assert widths(small, "conv1_forward") == [32, 16, 32]
    assert any("protected" in r for r in record.interfaces.values())
    assert record.settings["protect"] == ["sharing.blocks.0"]


def test_record_is_json(cs):
    physics, y = cs
    _, record = spade.prune(ista(), (y, physics), ratio=0.5)
    text = json.dumps(record.to_json())
    assert "widths_before" in text and record.macs_after < record.macs_before
    assert record.widths_before["sharing.blocks.0.conv1_forward"] == [32, 32]
    assert record.widths_after["sharing.blocks.0.conv1_forward"] == [16, 16]
    assert json.dumps(record.spec_entry())


@pytest.mark.parametrize("kwargs, message", [
    ({"ratio": -0.1}, "outside"), ({"ratio": 1.0}, "outside"), ({"ratio": 1.5}, "outside"),
    ({"ratio": "half"}, "outside"), ({"importance": "l3"}, "unknown importance"),
    ({"scope": "local"}, "unknown scope"), ({"steps": 0}, "steps"), ({"round_to": 0}, "round_to"),
    ({"importance": "taylor"}, "needs data|ranks channels on data"), ({"protect": ["nope"]}, "cannot protect"),
    ({"depth": 0}, "depth"),
])
def test_bad_settings_are_clear_errors(cs, kwargs, message):
    physics, y = cs
    args = {"ratio": 0.5, **kwargs}
    with pytest.raises(SpadeError, match=message):
        spade.prune(ista(), (y, physics), **args)


def test_bad_example_input():
    with pytest.raises(SpadeError, match="give a tensor"):
        spade.prune(nn.Conv2d(1, 4, 3), 3.0)


class OnlyInterfaces(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return x - self.conv(x)


def test_unprunable_model_is_a_clear_error():
    with pytest.raises(SpadeError, match="nothing to prune in OnlyInterfaces"):
        spade.prune(OnlyInterfaces(), torch.randn(1, 2, 8, 8), ratio=0.5)
    small, record = spade.prune(OnlyInterfaces(), torch.randn(1, 2, 8, 8), ratio=0.0)
    assert record.params_after == record.params_before
