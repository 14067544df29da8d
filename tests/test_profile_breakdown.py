"""``spade profile --breakdown``: every operator lands in the right part, parts add up."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spade.cli import main
from spade.models import load_model
from spade.profile.breakdown import conv_label, part_of, profile_parts, scopes
from tiny_nets import CHANNELS, one_thread, tiny  # noqa: F401  (fixtures)

FAST = ["--threads", "1", "--side", "33", "--rounds", "2", "--min-run-time", "0.001"]


def test_parts_are_attributed_by_scope_and_operator(tiny):
    loaded = load_model(tiny["base"])
    model, physics = loaded.model.eval(), loaded.physics
    y = physics.A(torch.rand(1, 1, 66, 66))

    def run():
        with torch.inference_mode():
            return model(y, physics)

    with scopes(model, physics):
        assert "A" in vars(physics)  # the physics' methods are wrapped while profiling
        parts, total = profile_parts(run, calls=2)
    assert "A" not in vars(physics) and not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    c = CHANNELS
    assert {f"conv 1->{c} 3x3", f"conv {c}->{c} 3x3", f"conv {c}->1 3x3"} <= set(parts)
    assert parts["physics"] > 0 and parts["glue"] > 0  # Phi products; thresholds, step, residual adds
    assert sum(parts.values()) == pytest.approx(total, rel=1e-6)  # self times partition the call


def test_unscoped_operators_go_by_their_outermost_name():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x)).permute(0, 2, 3, 1).contiguous() + 1

    net = Net()
    x = torch.rand(1, 2, 8, 8)
    with scopes(net, None):
        parts, _ = profile_parts(lambda: net(x), calls=1)
    assert set(parts) >= {conv_label(net.conv), "glue", "layout", "python"}
    assert "physics" not in parts and part_of(type("E", (), {"name": "x", "cpu_parent": None})()) is None


def test_cli_breakdown_json_and_text(tiny, capsys):
    assert main(["profile", str(tiny["base"]), str(tiny["half"]), "--breakdown", "--json", *FAST]) == 0
    out = json.loads(capsys.readouterr().out)
    base, half = out["models"]
    assert (base["role"], half["role"]) == ("unpruned", "pruned")
    assert f"conv {CHANNELS}->{CHANNELS} 3x3" in base["convs"]
    assert f"conv {CHANNELS // 2}->{CHANNELS // 2} 3x3" in half["convs"]
    for e in (base, half):
        assert e["parts_sum_ms"] == pytest.approx(e["conv_ms"] + e["physics_ms"] + e["glue_ms"] + e["layout_ms"]
                                                  + e["python_ms"] + e["other_ms"])
        assert e["agreement"] == pytest.approx(e["parts_sum_ms"] / e["measured_ms"])
        assert e["ceiling_priors_free"] >= e["ceiling_convs_free"] > 1
    assert main(["profile", str(tiny["base"]), "--breakdown", *FAST]) == 0
    text = capsys.readouterr().out
    assert "sum / measured" in text and "ceiling: convs free" in text


def test_cli_breakdown_rejects_other_backends(tiny, capsys):
    assert main(["profile", str(tiny["base"]), "--breakdown", "--backend", "onnxruntime", *FAST]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "eager" in err
