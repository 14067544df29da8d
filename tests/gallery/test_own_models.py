"""A user's network named as ``MODULE:FUNCTION`` (a function returning ``(model,
example_inputs)``) wherever a model file is taken: ``spade prune`` writes weights + pruning
history, used as ``MODULE:FUNCTION@FILE`` by ``spade finetune``, ``spade evaluate``,
``spade profile``, ``spade prune`` again and pipeline recipes (``function = ...``); the
commands that need a ``(y, physics)`` call, or a model file, say so in one line."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import spade
from spade.cli import main
from spade.models.adapter import importable_from
from spade.prune import load_own

import deepinv_unrolled
import modl
from finetune_helpers import crops, write_images

PGD = "deepinv_unrolled:build"


def _ok(argv, capsys) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_prune_finetune_evaluate_profile_report_from_the_command_line(tmp_path, capsys):
    pruned, tuned, run = tmp_path / "p.pt", tmp_path / "t.pt", tmp_path / "run"
    out = _ok(["prune", PGD, "--ratio", "0.5", "--out", str(pruned)], capsys)
    assert f"load it as {PGD}@{pruned}" in out
    out = _ok(["finetune", f"{PGD}@{pruned}", "--strategy", "school", "--teacher", PGD, "--data", "embedded",
               "--steps", "4", "--batch", "2", "--patch", "33", "--out", str(tuned), "--no-progress", "--json"], capsys)
    summary = json.loads(out)
    assert summary["load_as"] == f"{PGD}@{tuned}" and summary["strategy"] == "school"
    # the fine-tuned file reloads onto a fresh instance like the pruned one, with new weights
    model, example = deepinv_unrolled.build()
    small, again = spade.load_pruned(pruned, model, example), spade.load_pruned(tuned, model, example)
    assert again.prior.in_conv.out_channels == 8 == small.prior.in_conv.out_channels
    assert not torch.equal(again.prior.in_conv.weight, small.prior.in_conv.weight)
    own = load_own(f"{PGD}@{tuned}")
    assert own.spec["finetuning"]["strategy"] == "school" and own.spec["pruning"]["ratio"] == 0.5
    assert torch.equal(own.model(*example), again(*example))
    _ok(["evaluate", f"{PGD}@{tuned}", "--data", "set11", "--out", str(run)], capsys)
    _ok(["profile", PGD, f"{PGD}@{pruned}", f"{PGD}@{tuned}", "--rounds", "2", "--min-run-time", "0.05",
         "--threads", "1", "--out", str(run)], capsys)
    _ok(["report", str(run)], capsys)
    table = pd.read_csv(run / "report" / "results.csv").set_index("model")
    assert table.loc["t", "role"] == "pruned" and table.loc["t", "strategy"] == "school"
    assert table.loc["t", "psnr"] > 0 and table.loc["t", "params"] < table.loc[PGD, "params"]
    assert table.loc["p", "speedup_vs_unpruned"] > 0


def test_profile_times_any_example_and_a_pruned_file_prunes_again(tmp_path, capsys):
    """MoDL takes ``(x0, csm, mask)``: timed on its first input, the others bound in;
    its pruned file is pruned further (the history of both prunings replays)."""
    first, second = tmp_path / "m1.pt", tmp_path / "m2.pt"
    _ok(["prune", "modl:build", "--ratio", "0.5", "--out", str(first)], capsys)
    _ok(["prune", f"modl:build@{first}", "--ratio", "0.5", "--out", str(second)], capsys)
    model, example = modl.build()
    twice = spade.load_pruned(second, model, example)
    assert twice.dw.nw[0].out_channels == 4 and twice.dw.nw[-2].out_channels == 2  # 16 -> 8 -> 4; physics kept
    assert load_own(f"modl:build@{second}").spec["pruning"]["previous"]["ratio"] == 0.5
    result = json.loads(_ok(["profile", "modl:build", f"modl:build@{second}", "--rounds", "2", "--min-run-time",
                             "0.05", "--threads", "1", "--json"], capsys))
    rows = {e["name"]: e for e in result["models"]}
    assert rows["m2"]["role"] == "pruned" and rows["m2"]["input_shape"] == [2, 2, 32, 32]
    assert rows["m2"]["macs"] < rows["modl:build"]["macs"] and rows["m2"]["status"] == "ok"


def test_pruning_data_and_reconstruction_use_the_physics_of_a_y_physics_example(tmp_path, capsys):
    out = json.loads(_ok(["prune", PGD, "--ratio", "0.5", "--data", "embedded", "--samples", "2",
                          "--crop", "66", "--out", str(tmp_path / "r.pt"), "--json"], capsys))
    assert out["reconstruct"]["layers"] and out["data_samples"] == 0
    err = _refused(["prune", "modl:build", "--ratio", "0.5", "--data", "embedded", "--out", str(tmp_path / "x.pt")],
                   capsys)
    assert "--data needs the model called as model(y, physics)" in err and "(Tensor, Tensor, Tensor)" in err
    assert not (tmp_path / "x.pt").exists()


def test_commands_that_cannot_take_it_say_so_in_one_line(tmp_path, capsys):
    pruned = tmp_path / "m.pt"
    _ok(["prune", "modl:build", "--ratio", "0.5", "--out", str(pruned)], capsys)
    needs = "needs the model called as model(y, physics) with a SPADE physics"
    assert needs in _refused(["evaluate", "modl:build", "--data", "embedded-mri"], capsys)
    assert needs in _refused(["finetune", f"modl:build@{pruned}", "--strategy", "supervised", "--data", "embedded",
                              "--steps", "1", "--out", str(tmp_path / "t.pt")], capsys)
    assert "timed on the example input" in _refused(["profile", "modl:build", "--side", "64"], capsys)
    assert "--breakdown splits" in _refused(["profile", "modl:build", "--breakdown"], capsys)
    assert "needs a SPADE model file" in _refused(["export", "modl:build", "--onnx", str(tmp_path / "m.onnx")],
                                                  capsys)
    assert f"was pruned from modl:build, not {PGD}" in _refused(["evaluate", f"{PGD}@{pruned}", "--data", "set11"],
                                                                capsys)
    assert "is not MODULE:FUNCTION" in _refused(["profile", "modl:build@"], capsys)


RECIPE = """
title = "own network"
[data]
test = "{test}"
train = "{train}"
[[models]]
name = "mine"
function = "tinynets:build"
[prune]
ratios = [0.5]
[finetune]
strategies = ["supervised", "school", "self-supervised"]
steps = 2
batch = 2
patch = 33
[profile]
rounds = 1
min_run_time = 0.01
"""

TINYNETS = '''
import torch
from torch import nn

import spade
from spade.data import example_pair
from spade.physics import BlockCS


class Unrolled(nn.Module):
    def __init__(self, iterations=2, nf=8):
        super().__init__()
        self.priors = nn.ModuleList(nn.Sequential(nn.Conv2d(1, nf, 3, padding=1), nn.ReLU(),
                                                  nn.Conv2d(nf, 1, 3, padding=1)) for _ in range(iterations))
        self.step = nn.Parameter(torch.full((iterations,), 0.5))

    def forward(self, y, A, At):
        x = At(y)
        for k, prior in enumerate(self.priors):
            x = x - self.step[k] * At(A(x) - y)
            x = x + prior(x)
        return x


def build():
    torch.manual_seed(0)
    physics = BlockCS.gaussian(0.25)
    _, y = example_pair(physics, side=66)
    return spade.Adapter(Unrolled(), lambda m, y, physics: m(y, physics.A, physics.A_adjoint)), (y, physics)
'''


def test_a_recipe_prunes_fine_tunes_evaluates_and_profiles_a_function(tmp_path, capsys):
    (tmp_path / "tinynets.py").write_text(TINYNETS)  # found in the recipe's folder
    write_images(tmp_path / "train", crops(3, offset=0))
    write_images(tmp_path / "test", crops(2, offset=5))
    (tmp_path / "recipe.toml").write_text(RECIPE.format(test=tmp_path / "test", train=tmp_path / "train"))
    _ok(["run", str(tmp_path / "recipe.toml"), "--out", str(tmp_path / "out"), "--no-progress"], capsys)
    models = tmp_path / "out" / "models"
    assert {p.name for p in models.iterdir()} == {"mine-r50.pt", "mine-r50-supervised.pt", "mine-r50-school.pt",
                                                  "mine-r50-self-supervised.pt"}
    with importable_from(tmp_path):
        school = load_own(f"tinynets:build@{models / 'mine-r50-school.pt'}")
    assert school.model.model.priors[0][0].out_channels == 4 and school.spec["finetuning"]["strategy"] == "school"
    table = pd.read_csv(tmp_path / "out" / "report" / "results.csv").set_index("model")
    assert set(table.index) == {"mine", "mine-r50", "mine-r50-supervised", "mine-r50-school",
                                "mine-r50-self-supervised"}
    assert (table.loc["mine-r50-school", "finetune_data"] == f"train:{tmp_path / 'train'}"
            and table.loc["mine-r50", "role"] == "pruned" and table.loc["mine", "role"] == "unpruned")
    assert table["psnr"].notna().all() and table.loc["mine-r50", "speedup_vs_unpruned"] > 0


def test_progressive_recipe_prunes_the_recovered_file_again_and_resumes(tmp_path, capsys):
    (tmp_path / "tinynets.py").write_text(TINYNETS)
    write_images(tmp_path / "train", crops(3, offset=0))
    write_images(tmp_path / "test", crops(2, offset=5))
    recipe = RECIPE.format(test=tmp_path / "test", train=tmp_path / "train").replace(
        "ratios = [0.5]", "ratios = [0.25, 0.5]\nprogressive = true").replace(
        '["supervised", "school", "self-supervised"]', '["school"]')
    (tmp_path / "recipe.toml").write_text(recipe)
    argv = ["run", str(tmp_path / "recipe.toml"), "--out", str(tmp_path / "out"), "--no-progress"]
    _ok(argv, capsys)
    with importable_from(tmp_path):
        half = load_own(f"tinynets:build@{tmp_path / 'out' / 'models' / 'mine-r50.pt'}")
    assert half.model.model.priors[0][0].out_channels == 4  # 8 -> 6 (0.25), recovered, -> 4 (a third of 6)
    assert half.spec["pruning"]["previous"]["ratio"] == 0.25 and half.spec["history"]["previous"]["channels"]
    assert "out/results exists, kept" in _ok(argv + ["--resume"], capsys)


@pytest.mark.parametrize("old, new, message", [
    ('function = "tinynets:build"', 'file = "tinynets:build"', "is not a file: a function of yours goes in function"),
    ('function = "tinynets:build"', 'function = "tinynets:build@x.pt"', "name the function only"),
    ('function = "tinynets:build"', 'function = "tinynets:missing"', "tinynets has no function 'missing'"),
    ("min_run_time = 0.01", "min_run_time = 0.01\nside = 66", "timed on the example input their function returns"),
])
def test_recipe_functions_are_checked_before_anything_runs(tmp_path, capsys, old, new, message):
    (tmp_path / "tinynets.py").write_text(TINYNETS)
    write_images(tmp_path / "train", crops(3, offset=0))
    write_images(tmp_path / "test", crops(2, offset=5))
    (tmp_path / "recipe.toml").write_text(RECIPE.format(test=tmp_path / "test", train=tmp_path / "train")
                                          .replace(old, new))
    assert message in _refused(["run", str(tmp_path / "recipe.toml"), "--out", str(tmp_path / "out")], capsys)
    assert not (tmp_path / "out").exists()
