"""The pruner's extension points: criteria as torch-pruning Importance objects, depth
declared by the model (not by the registry), one MAC counter, a leaf registry."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

import spade
from spade.errors import SpadeError
from spade.macs import MacCounter
from spade.models import create_model
from spade.models.registry import families, register
from spade.physics import BlockCS
from spade.prune.graph import Graph


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class PreferHighIndex(tp.importance.Importance):
    """A user's criterion: channel i scores i (so the lowest indices go first)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, group):
        self.calls += 1
        n = len(group[0].idxs)
        return torch.arange(n, dtype=torch.float32)


def test_user_importance_object_drives_channel_choice():
    torch.manual_seed(0)
    net = TwoConvs()
    with torch.no_grad():  # make l1 prefer the *low* indices, the opposite of the user's criterion
        net.a.weight.mul_(torch.linspace(10, 0.1, 8).view(8, 1, 1, 1))
    x = torch.randn(1, 1, 8, 8)
    scorer = PreferHighIndex()
    small, record = spade.prune(net, x, ratio=0.5, importance=scorer)
    assert scorer.calls >= 1 and record.settings["criterion"] == "PreferHighIndex"
    assert torch.equal(small.a.weight, net.a.weight[4:])  # channels 0..3 (lowest score) removed
    by_l1, _ = spade.prune(net, x, ratio=0.5, importance="l1")
    assert torch.equal(by_l1.a.weight, net.a.weight[:4])  # the alias still works, and differs


def test_importance_object_of_the_wrong_shape_is_one_line():
    class Broken(tp.importance.Importance):
        def __call__(self, group):
            return torch.ones(3)

    with pytest.raises(SpadeError, match="must return one score per channel"):
        spade.prune(TwoConvs(), torch.randn(1, 1, 8, 8), ratio=0.5, importance=Broken())
    with pytest.raises(SpadeError, match="Importance object"):
        spade.prune(TwoConvs(), torch.randn(1, 1, 8, 8), ratio=0.5, importance="l7")


def test_taylor_importance_object_needs_data_like_its_alias():
    with pytest.raises(SpadeError, match="TaylorImportance' criterion ranks channels on data"):
        spade.prune(TwoConvs(), torch.randn(1, 1, 8, 8), ratio=0.5, importance=tp.importance.TaylorImportance())


class DeclaredDepth(nn.Module):
    """A third-party network that declares its own depth pruning (no registry, no list
    detection): units are the entries of ``steps``; removing rebuilds it."""

    def __init__(self, steps=4):
        super().__init__()
        self.steps = nn.ModuleList(TwoConvs() for _ in range(steps))

    def forward(self, x):
        for s in self.steps:
            x = x + s(x)
        return x

    def depth_units(self):
        return "step", len(self.steps), False

    def without_units(self, removed):
        new = DeclaredDepth(len(self.steps) - len(removed))
        kept = [s for i, s in enumerate(self.steps) if i not in removed]
        for target, source in zip(new.steps, kept):
            target.load_state_dict(source.state_dict())
        return new


def test_depth_from_what_the_model_declares():
    torch.manual_seed(0)
    net = DeclaredDepth().eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        net.steps[2].b.weight.mul_(0)  # step 2 does nothing: removing it costs nothing
        net.steps[2].b.bias.zero_()
    data = [(x, (net(x) + 0.01 * torch.randn(1, 1, 8, 8)).detach())]
    small, record = spade.prune(net, x, ratio=0.0, depth=1, data=data)
    assert record.depth["unit"] == "step" and record.depth["removed"] == [2] and len(small.steps) == 3
    assert torch.allclose(small(x), net(x), atol=1e-6)


def test_zoo_depth_uses_the_declared_key():
    model = create_model("coast", iterations=3, channels=4, blocks=1, sharing="tied")
    assert model.depth_units() == ("iteration", 3, True)
    assert model.without_units([2]).config["iterations"] == 2
    assert all(f.depth_key or name == "deq-mri" for name, f in families().items())
    with pytest.raises(SpadeError, match="no unrolled iterations"):
        create_model("deq-mri", width=4, blocks=1).depth_units()


def test_trace_kwargs_are_declared_not_guessed():
    physics = BlockCS.gaussian(0.25)
    model = create_model("ista-net-plus", phases=2, channels=4)
    y = physics.A(torch.rand(1, 1, 33, 33))
    graph = Graph(model, (y, physics))  # the symmetry branch (return_aux) is traced
    assert any(g.key and "conv1_backward" in g.name for g in graph.groups)


def test_one_mac_counter_for_the_pruner_and_the_profiler():
    from spade.profile import forward_cost
    net, x = TwoConvs(), torch.randn(1, 1, 8, 8)
    assert spade.prune.count_macs(net, x) == forward_cost(lambda: net(x))["macs"] == 2 * 8 * 9 * 64
    with MacCounter() as counter:
        net(x)
    assert counter.macs == 2 * 8 * 9 * 64


def test_registry_warns_on_a_duplicate_name():
    name = "test-duplicate-family"
    try:
        register(name, physics=("cs",), protocol="ista-cs")(type("A", (nn.Module,), {}))
        with pytest.warns(UserWarning, match="registered again"):
            register(name, physics=("cs",), protocol="ista-cs")(type("B", (nn.Module,), {}))
    finally:
        from spade.models import registry
        registry._FAMILIES.pop(name, None)


def test_readme_criterion_example_runs():
    import re

    from finetune_helpers import REPO
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    example = next(b for b in blocks if "class OutputEnergy" in b)
    exec(compile(example, "README criterion", "exec"), {})


def test_readme_third_party_example_runs(tmp_path, monkeypatch):
    import re

    from finetune_helpers import REPO
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    example = next(b for b in blocks if "class RawPrior" in b)
    scope: dict = {}
    exec(compile(example, "README third-party", "exec"), scope)
    assert scope["record"].params_after < scope["record"].params_before and (tmp_path / "unrolled.pt").is_file()
    steps = scope["history"].steps
    assert len(steps) == 4 and all(s["loss"] == s["loss"] for s in steps)
