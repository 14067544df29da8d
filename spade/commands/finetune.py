"""``spade finetune MODEL --strategy S --data SRC --out MODEL``: recover a pruned model.

Strategies: ``supervised`` (ground truth of the training images ``--data``), ``school``
(distillation from ``--teacher``, the unpruned model) and ``self-supervised``
(measurement consistency + equivariant imaging); these two never use ground truth.
``--data`` are training images, disjoint from the test images; ``--test-time`` says they
are the test images themselves (test-time adaptation: their measurements only, recorded in
the model file). Combinations by weight: ``--strategy school:1,self-supervised:0.5``.
Runs under ``torchrun --nproc-per-node N`` as well (DistributedDataParallel).
"""
from __future__ import annotations

import sys

from ..finetune import available
from ..finetune import distributed as dist
from ..finetune.config import DATA_MODES, OPTIMIZERS, SCHEDULES, TrainConfig
from ..finetune.losses import METRICS
from ..jobs import FinetuneJob, finetune_file
from .common import (add_device, add_force, add_json, add_progress, device, emit_json, help_description, nonneg_float,
                     positive_int,
                     writes_output)


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
    add_progress(p)
    add_device(p)
    add_json(p)


def add_arguments(p):
    p.description = help_description(__doc__)
    p.add_argument("model", help="the SPADE model file to fine-tune (e.g. a pruned model), or your own network as "
                                 "MODULE:FUNCTION[@FILE] (a function returning (model, (y, physics)), FILE its pruned "
                                 "copy); the result is then written like FILE and used as MODULE:FUNCTION@OUT")
    p.add_argument("--strategy", required=True,
                   help=f"NAME or NAME:WEIGHT,... (registered: {', '.join(available())})")
    p.add_argument("--teacher", help="the unpruned SPADE model file or MODULE:FUNCTION (school)")
    p.add_argument("--data", required=True,
                   help="training images, disjoint from the test images: a folder, a benchmark set or "
                        "'embedded'; sparse recovery: 'bernoulli-gaussian[:P]' (fresh codes)")
    p.add_argument("--test-time", action="store_true",
                   help="--data are the test images themselves: adapt to their measurements (school, "
                        "self-supervised; test-time adaptation, recorded in the model file)")
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


def train_config(args) -> TrainConfig:
    """The ``TrainConfig`` of the training options (see :func:`add_training_options`)."""
    return TrainConfig.from_mapping(
        {"steps": args.steps, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
         "optimizer": args.optimizer, "weight_decay": args.weight_decay, "schedule": args.schedule,
         "clip": args.clip, "patch": args.patch, "patches": args.patches, "noise_level": args.noise,
         "data_mode": args.data_mode, "checkpoint_every": args.checkpoint_every, "val_every": args.val_every,
         "patience": args.patience, "seed": args.seed, "regularizer": not args.no_regularizer},
        "training options")


def print_summary(summary: dict, as_json: bool) -> None:
    """Rank 0: the outcome of a fine-tuning or training run."""
    if not dist.is_main():
        return
    if as_json:
        emit_json(summary)
        return
    parts = [] if summary["best_psnr"] is None else [
        f"validation PSNR {summary['best_psnr']:.2f} dB (best, step {summary['best_step']})"]
    parts.append(f"{summary['strategy']} on {summary['data_used']} of {summary['data']} ({summary['finetune_data']})")
    if summary["first_loss"] is not None:  # one batch each: a trace of the run, not its score
        parts.append(f"loss (batch) {summary['first_loss']:.4g} -> {summary['final_loss']:.4g}")
    if summary.get("load_as"):
        parts.append(f"load it as {summary['load_as']}")
    print(f"wrote {summary['out']}: " + "; ".join(parts))


@writes_output(inputs=("model", "teacher"))
def run(args) -> int:
    dev = dist.setup(device(args.device))
    try:
        job = FinetuneJob(args.model, args.out, args.strategy, args.data, train_config(args), teacher=args.teacher,
                          val=args.val, holdout=args.holdout, protocol=args.protocol, loss=args.loss,
                          iterates=args.iterates,
                          transforms=tuple(t.strip() for t in args.transforms.split(",")) if args.transforms else (),
                          test_time=args.test_time)
        summary = finetune_file(job, dev, resume=args.resume, progress=not args.no_progress,
                                log=lambda m: print(m, file=sys.stderr if args.json else sys.stdout))
        print_summary(summary, args.json)
    finally:
        dist.teardown()
    return 0
