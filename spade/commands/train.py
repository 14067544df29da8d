"""``spade train RECIPE.toml [--out DIR] [--resume]``: train a model from scratch.

The recipe (see :mod:`spade.finetune.recipe`) names the model, the physics, the data and
the optimisation; the run writes ``DIR/model.spade`` (with a ``training`` section in its
spec that names the validation images, so a held-out test split can be rebuilt),
``DIR/history.json`` and, while it runs, ``DIR/checkpoint.pt`` for ``--resume``.
Runs under ``torchrun --nproc-per-node N`` as well (DistributedDataParallel).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..data import load_images, split
from ..errors import require
from ..fileio import write_text
from ..finetune import distributed as dist
from ..finetune import finetune
from ..finetune.data import reference_physics
from ..finetune.loop import image_channels
from ..finetune.recipe import build_model, build_train_physics, read_recipe, split_sections
from ..models import get_family
from .common import add_device, add_force, add_json, device, writes_output
from .finetune import finish, load_teacher


def add_parser(sub, name):
    p = sub.add_parser(name, help="train a model from scratch with a TOML recipe",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("recipe", help="the TOML recipe ([model], [physics], [data], [train])")
    p.add_argument("--out", help="output folder (default: runs/RECIPE-NAME)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run from DIR/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_force(p)
    add_device(p)
    add_json(p)
    p.set_defaults(handler=run)


def out_dir(args) -> Path:
    return Path(args.out or Path("runs") / Path(args.recipe).stem)


@writes_output(folder=out_dir)
def run(args) -> int:
    recipe = read_recipe(args.recipe)
    data, settings, extra = split_sections(recipe)
    dev = dist.setup(device(args.device))
    try:
        out = out_dir(args)
        require(args.resume or args.force or not (out / "model.spade").exists(),
                f"{out / 'model.spade'} exists: add --force to train again over it, or choose another --out")
        physics = build_train_physics(recipe["physics"])
        reference = reference_physics(physics)[0]
        torch.manual_seed(settings.get("seed", 0))
        model = build_model(recipe["model"])
        family = get_family(model.family)
        require(reference.kind in family.physics,
                f"model '{family.name}' serves physics {list(family.physics)}, not '{reference.kind}'")
        teacher = load_teacher(extra["teacher"], reference, dev) if "teacher" in extra else None
        if reference.kind == "sparse":  # synthetic codes; the engine rejects validation data
            require(not data.get("holdout") and "val" not in data, "sparse recovery trains on synthetic codes and "
                    "has no validation images: drop [data] holdout/val and score with 'spade evaluate'")
            images, val = data["source"], None
        else:
            images = load_images(data["source"], image_channels(model))
            val = load_images(data["val"], image_channels(model)) if "val" in data else None
        if data.get("holdout"):
            images, val = split(images, data["holdout"], settings.get("seed", 0))
        model, history = finetune(model, physics, images, extra.get("strategy", "supervised"), teacher=teacher,
                                  options=extra.get("options"), val=val, protocol=data.get("protocol"),
                                  checkpoint=out / "checkpoint.pt", resume=args.resume, device=dev,
                                  progress=not args.no_progress, data_name=data["source"],
                                  val_name=data.get("val", data["source"]),
                                  log=lambda m: print(m, file=sys.stderr if args.json else sys.stdout), **settings)
        summary = history.summary()
        summary.update({"out": str(out / "model.spade"), "recipe": str(args.recipe), "data": data["source"]})
        training = {"steps": summary["steps_run"], "strategy": summary["strategy"], "loss": summary["final_loss"],
                    "val_psnr": summary["best_psnr"], "data_used": summary["data_used"], "data": data["source"],
                    "stopped": summary["stopped"], "recipe": recipe,
                    "val_images": [img.name for img in val or []]}
        if dist.is_main():
            write_text(out / "history.json", json.dumps(history.to_json(), indent=1))
        finish(out / "model.spade", out / "checkpoint.pt", model, reference, {"protocol": history.protocol,
               "training": training}, summary, args.json)
    finally:
        dist.teardown()
    return 0
