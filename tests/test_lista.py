"""LISTA: shapes in every sharing mode, ISTA initialisation, recursions, the hidden width, files, training."""
from __future__ import annotations

import json

import pytest
import torch
import torch_pruning as tp
from torch import nn

from spade.errors import SpadeError
from spade.evaluation import evaluate_sparse
from spade.models import count_parameters, create_model, families, load_model, save_model
from spade.physics import bernoulli_gaussian, build_physics, ista

SMALL = {"m": 50, "n": 100, "hidden": 50}


@pytest.fixture(scope="module")
def physics():
    return build_physics({"kind": "sparse"})


@pytest.fixture(scope="module")
def small_physics():
    return build_physics({"kind": "sparse", "m": 50, "n": 100})


def _pair(physics, batch=8, seed=0):
    x = bernoulli_gaussian(batch, physics.n, seed=seed)
    return x, physics.simulate(x, seed=seed)


@pytest.mark.parametrize("preset", ["untied", "tied", "recursive"])
def test_shapes_and_parameter_counts(physics, preset):
    model = create_model("lista", **families()["lista"].presets[preset])
    x, y = _pair(physics)
    out, aux = model(y, physics, return_aux=True)
    assert out.shape == x.shape
    assert len(aux["iterates"]) == 16 if preset != "recursive" else sum(model.sharing.last_counts)
    layer = 3 * 250 * 500  # W, U, V with hidden = m
    expected = {"untied": 16 * layer + 16, "tied": layer + 16,
                "recursive": 4 * layer + 16 + (2 * 250 + 250) + (250 * 250 + 250)}
    assert count_parameters(model) == expected[preset]


@pytest.mark.parametrize("preset", ["untied", "tied", "recursive"])
def test_untrained_lista_is_ista(physics, preset):
    model = create_model("lista", **families()["lista"].presets[preset]).eval()
    x, y = _pair(physics, 16)
    with torch.no_grad():
        out = model(y, physics)
    reference = ista(y, physics, lam=0.1, iterations=16)
    assert float((out - reference).norm() / reference.norm()) < 1e-4
    assert bool(model.initialised)


def test_loaded_model_is_not_reinitialised(small_physics, tmp_path):
    model = create_model("lista", layers=4, **SMALL)
    x, y = _pair(small_physics)
    model(y, small_physics)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    expected = model(y, small_physics)
    save_model(tmp_path / "lista.spade", model, small_physics)
    loaded = load_model(tmp_path / "lista.spade")
    assert loaded.physics.settings() == small_physics.settings()
    assert torch.equal(loaded.model(y, loaded.physics), expected)


def test_randomized_recursions(small_physics):
    model = create_model("lista", sharing="recursive", stages=2, recursions=4, **SMALL)
    x, y = _pair(small_physics)
    seen = set()
    for _ in range(10):
        _, aux = model(y, small_physics, return_aux=True)
        counts = model.sharing.last_counts
        assert all(1 <= c <= 4 for c in counts) and len(aux["iterates"]) == sum(counts)
        seen.add(tuple(counts))
    assert len(seen) > 1
    model.eval()
    _, aux = model(y, small_physics, return_aux=True)
    assert model.sharing.last_counts == [4, 4] and len(aux["iterates"]) == 8


@pytest.mark.filterwarnings("ignore:Unwrapped parameters detected")
def test_hidden_width_is_prunable(small_physics, tmp_path):
    """The hidden width h of S = I - U V is the only width a pruner may remove; a model
    with fewer hidden channels runs and reloads from its file."""
    model = create_model("lista", layers=4, sharing="recursive", stages=2, recursions=2, **SMALL).eval()
    x, y = _pair(small_physics)
    model(y, small_physics)
    protected = [m for name, m in model.named_modules() if name.endswith(("encoder", "synthesis"))]
    pruner = tp.pruner.MetaPruner(model, example_inputs=(y, small_physics), importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=protected, forward_fn=lambda m, inp: m(*inp))
    pruner.step()
    widths = {name: m.out_features for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.endswith("analysis")}
    assert set(widths.values()) == {25}
    out = model(y, small_physics)
    assert out.shape == x.shape
    save_model(tmp_path / "pruned.spade", model, small_physics)
    loaded = load_model(tmp_path / "pruned.spade")
    assert torch.equal(loaded.model(y, small_physics), out)


def test_wrong_physics_and_settings(physics):
    model = create_model("lista", **SMALL)
    x, y = _pair(physics)
    with pytest.raises(SpadeError, match="maps 50 measurements to 100"):
        model(y, physics)
    with pytest.raises(SpadeError, match="lam"):
        create_model("lista", lam=0)
    with pytest.raises(SpadeError, match="unknown sharing mode"):
        create_model("lista", sharing="shared")


@pytest.mark.parametrize("preset", ["untied", "tied", "recursive"])
def test_training_beats_ista(small_physics, preset):
    """A short Adam run on synthetic codes lowers LISTA's test NMSE well below ISTA with
    the same number of iterations (its starting point)."""
    torch.manual_seed(0)
    cfg = {"sharing": preset, "stages": 2, "recursions": 4} if preset != "untied" else {}
    model = create_model("lista", layers=8, **SMALL, **cfg)
    before = evaluate_sparse(model, small_physics, 500, seed=1, ista_iterations=8).per_image[0]
    assert abs(before["nmse_db"] - before["ista_nmse_db"]) < 1e-3
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(100):
        x = bernoulli_gaussian(64, 100, seed=100 + step)
        y = small_physics.simulate(x, seed=step)
        loss = torch.mean((model(y, small_physics) - x) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = evaluate_sparse(model, small_physics, 500, seed=1, ista_iterations=8).per_image[0]
    assert after["nmse_db"] < after["ista_nmse_db"] - 1.5
    assert after["nmse_db"] < after["init_nmse_db"]


def test_evaluate_command_scores_nmse(tmp_path, capsys):
    from spade.cli import main
    from spade.models import create_model, save_model
    from spade.physics import build_physics

    physics = build_physics({"kind": "sparse", "m": 20, "n": 40})
    model = create_model("lista", layers=16, m=20, n=40, hidden=20)
    model(physics.A(torch.zeros(1, physics.n)), physics)  # initialised from the matrix (ISTA)
    save_model(tmp_path / "lista.spade", model, physics)
    assert main(["evaluate", str(tmp_path / "lista.spade"), "--samples", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the untrained network is exactly ISTA, which the protocol scores too
    assert out["protocol"] == "nmse" and abs(out["nmse_db"] - out["ista_nmse_db"]) < 1e-3
    assert {"init_nmse_db", "per_image"} <= set(out)
