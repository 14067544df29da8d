"""``spade finetune MODEL --strategy S --data SRC --out MODEL``: recover a pruned model.

Strategies: ``supervised`` (ground truth of the training split ``--data``), ``school``
(distillation from ``--teacher``, the unpruned model) and ``self-supervised``
(measurement consistency + equivariant imaging); these two use the measurements of
``--data`` themselves (the test images, the SPADE protocol), never their ground truth.
Combinations by weight: ``--strategy school:1,self-supervised:0.5``. Runs under
``torchrun --nproc-per-node N`` as well (DistributedDataParallel).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..data import load_images, split
from ..errors import require
from ..finetune import available, finetune, parse_spec
from ..finetune import distributed as dist
from ..finetune.config import DATA_MODES, OPTIMIZERS, SCHEDULES
from ..finetune.data import same_physics
from ..finetune.loop import image_channels
from ..finetune.losses import METRICS
from ..models.io import load_model, save_model
from .common import add_device, add_force, add_json, device, emit_json, nonneg_float, positive_int, writes_output

#: spec keys that save_model recomputes; the others (provenance) are carried over
COMPUTED_SPEC_KEYS = {"format", "version", "family", "config", "shapes", "widths", "physics"}


def add_training_options(p) -> None:
    """Length, optimisation, data and run options of ``spade finetune`` (the [train] keys of a recipe)."""
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=positive_int, help="optimisation steps")
    length.add_argument("--epochs", type=positive_int, help="passes over the data")
    p.add_argument("--batch", type=positive_int, default=4, help="global batch (default 4)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--weight-decay", type=nonneg_float, default=0.0)
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine")
    p.add_argument("--clip", type=nonneg_float, default=0.0, help="gradient-norm clipping (0: none)")
    p.add_argument("--patch", type=int, default=0, help="patch side for patch data (default by physics)")
    p.add_argument("--patches", type=int, default=0, help="distinct patches per epoch (default steps x batch)")
    p.add_argument("--noise", type=nonneg_float, default=None, help="measurement noise level (default: the physics')")
    p.add_argument("--data-mode", choices=DATA_MODES, default="auto",
                   help="patches of the training split, or the measurements of the images themselves "
                        "(auto: patches when a strategy uses ground truth)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (default steps/10)")
    p.add_argument("--val-every", type=int, default=0, help="steps between validations (default: at the end)")
    p.add_argument("--patience", type=int, default=0, help="validations without gain before stopping (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-regularizer", action="store_true", help="leave out the model's own training penalty")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    add_json(p)


def add_parser(sub, name):
    p = sub.add_parser(name, help="fine-tune a (pruned) model with a strategy",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", help="the SPADE model file to fine-tune (e.g. a pruned model)")
    p.add_argument("--strategy", required=True,
                   help=f"NAME or NAME:WEIGHT,... (registered: {', '.join(available())})")
    p.add_argument("--teacher", help="the unpruned SPADE model file (school)")
    p.add_argument("--data", required=True,
                   help="images: the training split (supervised) or the test images whose measurements "
                        "are used (school, self-supervised); a folder, a benchmark set or 'embedded'; "
                        "sparse recovery: 'bernoulli-gaussian[:P]' (fresh codes)")
    p.add_argument("--val", help="held-out validation images (disjoint from --data)")
    p.add_argument("--holdout", type=int, default=0, help="hold out N images of --data for validation")
    p.add_argument("--protocol", help="validation protocol (default: the model's)")
    p.add_argument("--loss", choices=METRICS, help="distance of supervised and school (default l2)")
    p.add_argument("--iterates", type=nonneg_float, help="school: weight of matching intermediate iterates")
    p.add_argument("--transforms", help="self-supervised: comma-separated subset of rotate,shift,flip")
    p.add_argument("--out", required=True, help="the fine-tuned model file to write")
    add_force(p)
    add_training_options(p)
    p.set_defaults(handler=run)


def training_settings(args) -> dict:
    return {"steps": args.steps, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
            "optimizer": args.optimizer, "weight_decay": args.weight_decay, "schedule": args.schedule,
            "clip": args.clip, "patch": args.patch, "patches": args.patches, "noise_level": args.noise,
            "data_mode": args.data_mode, "checkpoint_every": args.checkpoint_every, "val_every": args.val_every,
            "patience": args.patience, "seed": args.seed, "regularizer": not args.no_regularizer}


def strategy_options(args, names: list[str]) -> dict:
    """Per-strategy options from --loss / --iterates / --transforms."""
    options: dict[str, dict] = {}
    if args.loss:
        targets = [n for n in ("supervised", "school") if n in names]
        require(targets, "--loss applies to supervised and school, which the strategy does not use")
        for n in targets:
            options.setdefault(n, {})["metric"] = args.loss
    if args.iterates is not None:
        require("school" in names, "--iterates applies to school, which the strategy does not use")
        options.setdefault("school", {})["iterates"] = args.iterates
    if args.transforms:
        require("self-supervised" in names, "--transforms applies to self-supervised, which the strategy does not use")
        options.setdefault("self-supervised", {})["transforms"] = [t.strip() for t in args.transforms.split(",")]
    return options


def load_teacher(path, physics, dev):
    """The teacher model of ``path``; its physics must be the student's."""
    teacher = load_model(path, dev)
    require(teacher.physics is not None and same_physics(teacher.physics.cpu(), physics.cpu()),
            f"teacher {path} was built for other physics than the model "
            f"({teacher.physics.settings() if teacher.physics is not None else None} vs {physics.settings()}): "
            "give the unpruned model of the same operator")
    return teacher.model


def finish(out: Path, checkpoint: Path, model, physics, spec_extra: dict, summary: dict, as_json: bool) -> None:
    """Rank 0: write the model file, drop the checkpoint, print the outcome."""
    if not dist.is_main():
        return
    save_model(out, model, physics, **spec_extra)
    checkpoint.unlink(missing_ok=True)
    if as_json:
        emit_json(summary)
        return
    val = f", validation PSNR {summary['best_psnr']:.2f} dB (step {summary['best_step']})" if summary["best_psnr"] else ""
    print(f"wrote {out}: {summary['strategy']} on the {summary['data_used']} ({summary['data']}), "
          f"loss {summary['first_loss']:.4g} -> {summary['final_loss']:.4g}{val}")


@writes_output(inputs=("model", "teacher"))
def run(args) -> int:
    dev = dist.setup(device(args.device))
    try:
        out = Path(args.out)
        loaded = load_model(args.model, dev)
        require(loaded.physics is not None, f"model file {args.model} stores no physics to fine-tune with")
        names = [n for n, _ in parse_spec(args.strategy)]
        options = strategy_options(args, names)
        teacher = load_teacher(args.teacher, loaded.physics, dev) if args.teacher else None
        sparse = loaded.physics.kind == "sparse"  # synthetic codes (the engine rejects validation data)
        images = args.data if sparse else load_images(args.data, image_channels(loaded.model))
        val = (args.val if sparse else load_images(args.val, image_channels(loaded.model))) if args.val else None
        if args.holdout:
            require(val is None, "give --val or --holdout, not both")
            require(not sparse, "sparse recovery trains on synthetic codes: there are no images to hold out")
            images, val = split(images, args.holdout, args.seed)
        protocol = args.protocol or loaded.spec.get("protocol")
        checkpoint = out.with_name(out.name + ".ckpt")
        model, history = finetune(loaded.model, loaded.physics, images, args.strategy, teacher=teacher,
                                  options=options, val=val, protocol=protocol, checkpoint=checkpoint,
                                  resume=args.resume, device=dev, progress=not args.no_progress,
                                  data_name=args.data, val_name=args.val or (args.data if args.holdout else None),
                                  log=lambda m: print(m, file=sys.stderr if args.json else sys.stdout),
                                  **training_settings(args))
        summary = history.summary()
        summary.update({"out": str(out), "model": args.model, "teacher": args.teacher, "data": args.data,
                        "options": options})
        extra = {k: v for k, v in loaded.spec.items() if k not in COMPUTED_SPEC_KEYS}
        extra["protocol"] = history.protocol
        extra["finetuning"] = {**summary, "settings": training_settings(args)}
        finish(out, checkpoint, model, loaded.physics, extra, summary, args.json)
    finally:
        dist.teardown()
    return 0
