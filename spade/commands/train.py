"""``spade train RECIPE.toml [--out DIR] [--resume]``: train a model from scratch.

The recipe (see :mod:`spade.finetune.recipe`) names the model, the physics, the data and
the optimisation; the run writes ``DIR/model.spade`` (with a ``training`` section in its
spec that names the validation images, so a held-out test split can be rebuilt),
``DIR/history.json`` and, while it runs, ``DIR/checkpoint.pt`` for ``--resume``.
Runs under ``torchrun --nproc-per-node N`` as well (DistributedDataParallel).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..finetune import distributed as dist
from ..errors import require
from ..jobs import TrainJob, train_recipe
from .common import add_device, add_force, add_json, add_progress, device, help_description, writes_output
from .finetune import print_summary


def add_arguments(p):
    p.description = help_description(__doc__)
    p.add_argument("recipe", help="the TOML recipe ([model], [physics], [data], [train])")
    p.add_argument("--out", help="output folder (default: runs/RECIPE-NAME)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run from DIR/checkpoint.pt")
    add_progress(p)
    add_force(p)
    add_device(p)
    add_json(p)
    p.set_defaults(handler=run)


def out_dir(args) -> Path:
    return Path(args.out or Path("runs") / Path(args.recipe).stem)


@writes_output(folder=out_dir)
def run(args) -> int:
    job = TrainJob(args.recipe, str(out_dir(args)))
    model = out_dir(args) / "model.spade"
    require(args.resume or args.force or not model.exists(),
            f"{model} exists: add --force to train again over it, or choose another --out")
    dev = dist.setup(device(args.device))
    try:
        summary = train_recipe(job, dev, resume=args.resume, progress=not args.no_progress,
                               log=lambda m: print(m, file=sys.stderr if args.json else sys.stdout))
        print_summary(summary, args.json)
    finally:
        dist.teardown()
    return 0
