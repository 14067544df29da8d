"""The training recipes of ``recipes/train/`` and the demo's (``spade/recipes/demo-*.toml``,
shipped in the package): every one parses and validates without training, the demo recipes
need no benchmark data, and they train end to end (a few steps; the
full demo recipes, which must beat their starting point, are ``slow``)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from finetune_helpers import REPO
from spade.cli import main
from spade.data import load_images, split
from spade.data.sources import BENCHMARK_SETS
from spade.evaluation import evaluate
from spade.finetune.recipe import build_model, build_train_physics, read_recipe, split_sections
from spade.models import get_family
from spade.models.io import load_model

DEMOS = sorted((REPO / "spade" / "recipes").glob("demo-*.toml"))
RECIPES = sorted((REPO / "recipes" / "train").glob("*.toml")) + DEMOS
EMBEDDED = ("embedded", "embedded-train", "embedded-test", "embedded-mri")


def test_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"demo-mri", "demo-mri-recursive", "demo-sr", "demo-sr-recursive"} <= names
    assert {"cs25-ista-net-plus", "cs25-ista-net-plus-recursive", "cs25-coast", "cs25-coast-recursive"} <= names


def _needs_bench_data(recipe: dict) -> bool:
    sources = [recipe["data"].get(k) for k in ("source", "val")]
    return "$SPADE_BENCH_DATA/" in repr(recipe) or any(str(s).lower() in BENCHMARK_SETS for s in sources if s)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates(path, monkeypatch, request):
    """Every section is checked as ``spade train`` checks it, short of training."""
    monkeypatch.chdir(REPO)  # any other relative path in a recipe is relative to the current folder
    recipe = read_recipe(path)
    data, settings, extra = split_sections(recipe)
    if _needs_bench_data(recipe):
        request.getfixturevalue("bench_data")  # skips without the data (fails where it is required)
    physics = build_train_physics(recipe["physics"]).references()[0]
    model = build_model(recipe["model"])
    assert physics.kind in get_family(model.family).physics
    assert settings["steps"] >= 1 and settings.get("seed") == 0
    if path in DEMOS:
        assert data["source"] in EMBEDDED and data.get("val", "embedded") in EMBEDDED
        assert "teacher" not in extra and not _needs_bench_data(recipe)


def _short(path: Path, tmp_path: Path, steps: int) -> Path:
    text = re.sub(r"(?m)^steps = \d+$", f"steps = {steps}", path.read_text())
    assert f"steps = {steps}" in text
    short = tmp_path / path.name
    short.write_text(text)
    return short


@pytest.mark.parametrize("path", DEMOS, ids=[p.stem for p in DEMOS])
def test_demo_recipe_trains(path, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(_short(path, tmp_path, 2)), "--out", str(out), "--no-progress"]) == 0
    loaded = load_model(out / "model.spade")
    training = loaded.spec["training"]
    assert training["steps"] == 2 and training["data_used"] == "patches measured on the fly" and training["val_psnr"] > 0
    assert loaded.model.family == read_recipe(path)["model"]["family"]


@pytest.mark.slow
@pytest.mark.parametrize("path", DEMOS, ids=[p.stem for p in DEMOS])
def test_demo_recipe_beats_starting_point(path, tmp_path):
    """The full demo recipe on its held-out images: the untied networks at least 0.5 dB
    above the starting point, the recursive ones above it (a half-minute CPU budget; the
    MRI demo also crosses from photographs to MR images)."""
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--no-progress"]) == 0
    loaded = load_model(out / "model.spade")
    data = read_recipe(path)["data"]
    if "val" in data:
        images = load_images(data["val"])
    else:
        images = split(load_images(data["source"]), data["holdout"], loaded.spec["training"]["recipe"]["train"]["seed"])[1]
    assert [img.name for img in images] == loaded.spec["training"]["val_images"]
    scores = evaluate(loaded.model, loaded.physics, images, loaded.spec["protocol"])
    margin = 0.0 if "recursive" in path.stem else 0.5
    assert scores.mean("psnr") > scores.mean("init_psnr") + margin, scores.summary()
