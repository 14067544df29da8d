"""Every gallery network, unmodified, under the same checks: pruned at 0.25 / 0.5 / 0.75 it
keeps its input and output shapes and its physics channels, costs less, leaves the
original untouched and reloads onto a fresh instance of its class; ratio 0 changes nothing; removing channels whose weights are all zero
changes nothing; and, called from ``(y, physics)`` through an ``Adapter``, the pruned copy
fine-tunes with each strategy (supervised, school, self-supervised) with a falling loss."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from torch import nn

import spade
from spade.data import example_pair
from spade.finetune import finetune
from spade.physics import BlockCS
from spade.prune import Graph

import coast_official
import deepinv_unrolled
import deq
import fastmri_varnet
import ista_official
import modl
import usrnet
from finetune_helpers import crops

STRATEGIES = ("supervised", "school", "self-supervised")


@dataclass
class Case:
    build: Callable[[], tuple]  #: ``(model, example_inputs)`` in the authors' own call
    kept: Callable[[nn.Module], None]  #: asserts the physics channels of a pruned copy
    call: Callable  #: ``call(model, y, physics)`` for the Adapter
    physics: Callable[[], nn.Module]
    side: int  #: training crops (and patches)
    patch: int
    lr: float = 1e-3
    bench: bool = False


def _ista_folder():
    from spade.data.sources import benchmark_root
    return benchmark_root() / "ista_net_plus" / "cs25"


def _ista_build():
    torch.manual_seed(0)
    folder = _ista_folder()
    return ista_official.load_official(folder), ista_official.official_inputs(folder, 25)


def _ista_kept(small):
    for block in small.fcs:
        assert block.conv_D.shape[1] == 1 and block.conv_G.shape[0] == 1


def _varnet_build():
    torch.manual_seed(0)
    return fastmri_varnet.VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=8, pools=2).eval(), \
        fastmri_varnet.example_inputs()


def _varnet_kept(small):
    for unet in [c.model.unet for c in small.cascades] + [small.sens_net.norm_unet.unet]:
        assert unet.down_sample_layers[0].layers[0].in_channels == 2 and unet.up_conv[-1][1].out_channels == 2


def _coast_build():
    torch.manual_seed(0)
    return coast_official.COAST(3).eval(), coast_official.example_inputs()


def _coast_kept(small):
    assert small.res_scale_linear.in_features == 1
    for block in small.fcs:
        assert block.head_conv.in_channels == 1 and block.tail_conv.out_channels == 1


def _pgd_kept(small):
    assert small.prior.in_conv.in_channels == 1 and small.prior.out_conv.out_channels == 1


def _modl_kept(small):
    assert small.dw.nw[0].in_channels == 2 and small.dw.nw[-2].out_channels == 2 and small.dw.nw[-1].num_features == 2


def _deq_kept(small):
    layers = small.f.nonlinear_op.dncnn
    assert layers[0].in_channels == 1 and layers[-1].out_channels == 1


def _usrnet_kept(small):
    assert small.p.m_head.in_channels == 2 and small.p.m_tail.out_channels == 1  # image + noise map in, image out
    assert small.h.mlp[0].in_channels == 2 and small.h.mlp[4].out_channels == 4  # (sigma, sf) -> alpha, beta per step


CASES = {
    "ista-official": Case(_ista_build, _ista_kept, ista_official.call,
                          lambda: ista_official.physics(_ista_folder(), 25), 66, 33, bench=True),
    "fastmri-varnet": Case(_varnet_build, _varnet_kept, fastmri_varnet.call, fastmri_varnet.physics, 32, 32),
    "coast": Case(_coast_build, _coast_kept, coast_official.call, lambda: BlockCS.gaussian(0.25), 66, 33),
    "deepinv-pgd": Case(deepinv_unrolled.build, _pgd_kept, lambda m, y, physics: m(y, physics),
                        lambda: BlockCS.gaussian(0.25), 66, 33),
    "modl": Case(modl.build, _modl_kept, modl.call, modl.physics, 32, 32),
    "deq": Case(deq.build, _deq_kept, deq.call, deq.physics, 66, 33),
    "usrnet": Case(usrnet.build, _usrnet_kept, usrnet.call, usrnet.physics, 32, 32),
}


def _params(case: Case):
    return [pytest.param(case, marks=pytest.mark.bench_data) if case.bench else case]


def cases(*names):
    names = names or tuple(CASES)
    return pytest.mark.parametrize("case", [p for n in names for p in _params(CASES[n])], ids=list(names))


@pytest.fixture
def built(case, request):
    if case.bench:
        request.getfixturevalue("bench_data")
    return case.build()


def _tensor(output):
    while not isinstance(output, torch.Tensor):
        output = output[0]
    return output


def _shapes(output):
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    return [_shapes(o) for o in output]


@cases()
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_prunes_keeping_shapes_and_physics_channels(case, built, ratio, tmp_path):
    model, example = built
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        before = model(*example)
    small, record = spade.prune(model, example, ratio=ratio)
    with torch.no_grad():
        after = small(*example)
    assert _shapes(after) == _shapes(before) and torch.isfinite(_tensor(after)).all()
    assert record.params_after < record.params_before and record.macs_after < record.macs_before
    assert any(after < before for before, after in record.groups.values())
    case.kept(small)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the original is untouched
    with torch.no_grad():
        assert torch.equal(_tensor(model(*example)), _tensor(before))
    if ratio == 0.5:  # saved as weights + history, reloaded onto a fresh instance of the user's class
        spade.save_pruned(tmp_path / "small.pt", small, record)
        restored = spade.load_pruned(tmp_path / "small.pt", case.build()[0], example)
        with torch.no_grad():
            assert torch.equal(_tensor(restored.eval()(*example)), _tensor(after))


@cases()
def test_ratio_zero_changes_nothing(case, built):
    model, example = built
    small, record = spade.prune(model, example, ratio=0.0)
    with torch.no_grad():
        assert torch.equal(_tensor(small(*example)), _tensor(model(*example)))
    assert record.history == [] and record.params_after == record.params_before


def silence(model, example, share: float) -> int:
    """Zero the first ``share`` of the channels of every prunable group in every layer that
    makes or reads them (weights, biases, norm scales and means); returns how many groups."""
    graph = Graph(model, example)
    groups = [g for g in graph.groups if g.interface is None]
    with torch.no_grad():
        for group in groups:
            fn = graph.dg.get_pruner_of_module(group.root).prune_out_channels
            for item in graph.dg.get_pruning_group(group.root, fn, list(range(round(group.width * share)))):
                layer, idx = item.dep.target.module, item.idxs
                out = graph.dg.is_out_channel_pruning_fn(item.dep.handler)
                if isinstance(layer, nn.modules.conv._ConvNd):
                    assert layer.groups == 1
                    out_axis = 1 if layer.transposed else 0
                    layer.weight.index_fill_(out_axis if out else 1 - out_axis, torch.tensor(idx), 0.0)
                    if out and layer.bias is not None:
                        layer.bias[idx] = 0
                elif isinstance(layer, nn.Linear):
                    layer.weight.index_fill_(0 if out else 1, torch.tensor(idx), 0.0)
                    if out and layer.bias is not None:
                        layer.bias[idx] = 0
                elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.weight[idx], layer.bias[idx], layer.running_mean[idx] = 0, 0, 0
    graph.release()
    return len(groups)


@cases()
def test_removing_all_zero_channels_is_exact(case, built):
    model, example = built
    dead = copy.deepcopy(model)
    assert silence(dead, example, 0.25) > 0
    with torch.no_grad():
        reference = _tensor(dead(*example))
        assert not torch.allclose(reference, _tensor(model(*example)), atol=1e-4)  # the zeros are not a no-op
    small, record = spade.prune(dead, example, ratio=0.25)
    assert record.params_after < record.params_before
    with torch.no_grad():
        out = _tensor(small(*example))
    assert torch.allclose(out, reference, atol=1e-5 * max(1.0, float(reference.abs().max())))


@cases()
def test_pruned_copy_fine_tunes_with_each_strategy(case, built):
    model, _ = built
    physics = case.physics()
    _, y = example_pair(physics, batch=2, side=case.side)
    adapted = spade.Adapter(model, case.call)
    teacher = spade.Adapter(copy.deepcopy(model), case.call).eval()
    small, record = spade.prune(adapted, (y, physics), ratio=0.5)
    assert small(y, physics).shape == adapted(y, physics).shape
    quiet = {"progress": False, "log": lambda m: None, "steps": 10, "batch": 2, "patch": case.patch,
             "lr": case.lr, "seed": 0}
    for strategy in STRATEGIES:
        tuned = copy.deepcopy(small)
        _, history = finetune(tuned, physics, crops(2, case.patch), strategy,
                              teacher=teacher if strategy == "school" else None, **quiet)
        losses = [s["loss"] for s in history.steps]
        assert all(torch.isfinite(torch.tensor(losses))), (strategy, losses)
        assert sum(losses[-3:]) < sum(losses[:3]), (strategy, losses)
