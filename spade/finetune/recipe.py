"""Training recipes (TOML): a model trained from scratch on the data layer.

```toml
[model]                 # family + constructor arguments (preset: a named configuration)
family = "ista-net-plus"
phases = 5
channels = 16

[physics]               # spade.physics.build_physics settings; ratio may be a list:
kind = "cs"             # a random ratio and a fresh Gaussian Phi every step (COAST)
ratio = 0.25

[data]
source = "embedded"     # training images: folder, benchmark set, embedded, embedded-mri;
                        # sparse recovery: "bernoulli-gaussian[:P]" (fresh codes, no validation)
holdout = 2             # images held out of source for validation (or val = SOURCE)
patch = 99              # patch side; patches: distinct patches per epoch; augment
protocol = "ista-cs"    # validation protocol (default by physics kind)

[train]                 # spade.finetune.TrainConfig keys, plus:
steps = 2000            # strategy = "supervised" (default), "NAME:W,..." or a table
lr = 1e-3               # options = {supervised = {metric = "l1"}}; teacher = "MODEL"
```

Every key is checked before anything runs; unknown keys and bad values are named with
the allowed ones.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import require
from ..fileio import read_bytes
from ..limits import check_settings, loads_toml
from ..models import create_model, get_family
from ..models.io import check_architecture
from ..physics import RandomBlockCS, build_physics
from .config import TrainConfig

SECTIONS = ("model", "physics", "data", "train")
DATA_KEYS = ("source", "val", "holdout", "protocol", "patch", "patches", "augment")
TRAIN_EXTRA = ("strategy", "options", "teacher")
RANDOM_CS_KEYS = ("kind", "ratio", "seed", "block_size", "noise_level")


def read_recipe(path: str | Path) -> dict:
    """Parse a TOML recipe; unreadable files and TOML errors become one-line errors."""
    path = Path(path)
    require(path.is_file(), f"recipe {path} does not exist")
    recipe = loads_toml(read_bytes(path), f"recipe {path}")
    unknown = sorted(set(recipe) - set(SECTIONS))
    require(not unknown, f"recipe {path} has unknown section(s) {unknown}: allowed are {list(SECTIONS)}")
    missing = [s for s in ("model", "physics", "data", "train") if not isinstance(recipe.get(s), dict)]
    require(not missing, f"recipe {path} misses section(s) {missing}")
    return recipe


def build_model(section: dict) -> torch.nn.Module:
    """``[model]``: family, optional preset, constructor arguments."""
    cfg = dict(section)
    require("family" in cfg, "[model] needs a 'family' (see 'spade models')")
    family = get_family(cfg.pop("family"))
    preset = cfg.pop("preset", None)
    if preset is not None:
        require(preset in family.presets, f"[model] preset '{preset}' is unknown for {family.name}: "
                                          f"choose one of {sorted(family.presets)}")
        cfg = {**family.presets[preset], **cfg}
    check_architecture(family.name, cfg, "[model]")
    return create_model(family.name, **cfg)


def build_train_physics(section: dict):
    """``[physics]``: an operator, or :class:`RandomBlockCS` when ``ratio`` is a list."""
    check_settings(section, "[physics]")
    if isinstance(section.get("ratio"), list):
        require(section.get("kind") == "cs", "a list of ratios is only meaningful for physics kind 'cs'")
        unknown = sorted(set(section) - set(RANDOM_CS_KEYS))
        require(not unknown, f"[physics] with a ratio list has no key {unknown}: allowed are {list(RANDOM_CS_KEYS)}")
        return RandomBlockCS(section["ratio"], section.get("block_size", 33), section.get("noise_level", 0.0),
                             section.get("seed", 0))
    return build_physics(section)


def split_sections(recipe: dict) -> tuple[dict, dict, dict]:
    """``(data, train settings for TrainConfig, strategy/options/teacher)``, keys checked."""
    data, train = dict(recipe["data"]), dict(recipe["train"])
    unknown = sorted(set(data) - set(DATA_KEYS))
    require(not unknown, f"[data] has no key {unknown}: allowed are {list(DATA_KEYS)}")
    require("source" in data, "[data] needs a 'source' of training images")
    require(not ("val" in data and "holdout" in data), "[data] gives both 'val' and 'holdout': choose one")
    holdout = data.get("holdout", 0)
    require(isinstance(holdout, int) and not isinstance(holdout, bool) and holdout >= 0,
            f"[data] holdout = {holdout!r} must be a whole number of images >= 0")
    extra = {k: train.pop(k) for k in TRAIN_EXTRA if k in train}
    settings = {k: data.pop(k) for k in ("patch", "patches", "augment") if k in data}
    settings.update(train)
    TrainConfig.from_mapping(settings, "[train]")  # validate before anything runs
    return data, settings, extra
