"""The training engine: fine-tuning of pruned models and training from scratch.

:func:`finetune` optimises any ``model(y, physics)`` (with ``return_aux=True`` giving
``(x, {"iterates", "regularizer"})``) under a weighted sum of strategies
(:mod:`spade.finetune.strategies`) plus the model's own regularizer. Per step: one batch
(:mod:`spade.finetune.data`), one student forward shared by the strategies, backward,
gradient clipping, an Adam/AdamW step, a scheduler step. Validation on held-out images
(:func:`spade.evaluation.evaluate`, mean PSNR) drives early stopping; the best validated
weights are returned. Checkpoints hold everything needed to continue bit for bit; a loss
or gradient that is not finite stops the run, keeping the last good checkpoint.

Under ``torchrun`` the student is wrapped in ``DistributedDataParallel`` (see
:mod:`spade.finetune.distributed`); rank 0 alone writes checkpoints.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data import CodeDataset, Image, PatchDataset, channel_mode, check_disjoint, code_probability, load_images
from ..errors import SpadeError, require
from ..evaluation import PROTOCOLS, evaluate
from ..metrics import psnr
from ..physics import LinearPhysics, RandomBlockCS, SparseRecovery
from ..progress import bar as progress_bar
from . import distributed as dist
from .checkpoint import fingerprint_differences, load_checkpoint, save_checkpoint, set_rng_state
from .config import TrainConfig
from .data import MeasurementSet, PatchStream, physics_at, sample_seed
from .strategies import Context, Strategy, build_strategies

#: how a run uses its images (``History.data_used``): random patches with their ground
#: truth, or the whole images' measurements only (ground truth discarded)
PATCH_DATA = "patches measured on the fly"
MEASUREMENT_DATA = "whole images measured once"
#: ``History.finetune_data`` of a test-time adaptation run (else ``train:<source>``)
TEST_TIME = "test"


@dataclass
class History:
    """What a run did: per-step losses, validations, where its data came from, how it ended."""

    strategy: str
    data_used: str
    data: str
    protocol: str
    total_steps: int
    resumed_from: int = 0
    steps: list[dict] = field(default_factory=list)  #: {"step", "loss", "lr", per-term losses}
    validations: list[dict] = field(default_factory=list)  #: {"step", "psnr"}
    best_step: int | None = None
    best_psnr: float | None = None
    stopped: str = ""
    finetune_data: str = ""  #: ``train:<source>``, or ``test`` for test-time adaptation
    seconds: float = 0.0  #: wall time of the training steps (validation and checkpoints excluded)
    samples: int = 0  #: training samples seen (global batch x steps)

    @property
    def samples_per_second(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None

    @property
    def final_loss(self) -> float | None:
        return self.steps[-1]["loss"] if self.steps else None

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """The history without per-step records (for model specs and ``--json``)."""
        out = {k: v for k, v in self.to_json().items() if k != "steps"}
        out["steps_run"] = self.steps[-1]["step"] if self.steps else self.resumed_from
        out["first_loss"] = self.steps[0]["loss"] if self.steps else None
        out["final_loss"] = self.final_loss
        out["samples_per_second"] = self.samples_per_second
        return out


class Objective(nn.Module):
    """Weighted strategies on one student forward (the module DDP wraps)."""

    def __init__(self, model: nn.Module, terms: list[tuple[float, Strategy]], regularizer: bool):
        super().__init__()
        self.model = model
        self.terms = terms
        self.regularizer = regularizer

    def forward(self, y, x, physics, key=None, generator=None, teacher=None):
        x_net, aux = self.model(y, physics, return_aux=True)
        parts = {}
        total = x_net.new_zeros(())
        for weight, strategy in self.terms:
            ctx = Context(x=x if strategy.uses_ground_truth else None, aux=aux, teacher=teacher,
                          key=key, generator=generator)
            value = strategy.loss(x_net, y, physics, self.model, ctx)
            parts[strategy.name] = value
            total = total + weight * value
        if self.regularizer and aux.get("regularizer") is not None:
            parts["regularizer"] = aux["regularizer"]
            total = total + aux["regularizer"]
        return total, parts, x_net


def image_channels(model: nn.Module) -> str:
    """``"rgb"`` for models configured with 3 image channels, else ``"y"``."""
    return channel_mode(getattr(model, "config", {}).get("image_channels", 1))


def _images(source, model, what: str, name: str | None) -> tuple[list[Image], str]:
    if source is None:
        return [], ""
    if isinstance(source, (str, Path)):
        return load_images(source, image_channels(model)), name or str(source)
    images = list(source)
    require(all(isinstance(i, Image) for i in images), f"{what} must be a source name/folder or a list of spade.data.Image")
    return images, name or "the given images"


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(cfg: TrainConfig, optimizer, total: int):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=cfg.min_lr)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size or max(1, total // 3), gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _data_stream(mode: str, images: list[Image], codes: float | None, name: str, physics, protocol: str,
                 cfg: TrainConfig, device):
    """``(stream, where the data are used, a line describing them)`` for a data mode;
    ``codes``: the nonzero probability of the training codes of sparse recovery (else None)."""
    if mode == "patches":
        ref = physics.references()[0]
        length = cfg.patches or (cfg.steps * cfg.batch if cfg.steps else 1024)
        if codes is not None:
            stream = PatchStream(CodeDataset(ref.n, length, codes, cfg.seed), cfg.batch, cfg.seed, cfg.noise_level)
            return stream, PATCH_DATA, (f"{length} Bernoulli-Gaussian codes (p = {codes}) measured on the fly "
                                            "(noise seeded per code)")
        size = ref.check_patch(cfg.patch or ref.default_patch())
        dataset = PatchDataset(images, size, length, augment=cfg.augment, seed=cfg.seed)
        stream = PatchStream(dataset, cfg.batch, cfg.seed, cfg.noise_level)
        return stream, PATCH_DATA, (f"{len(images)} images of {name}, {length} random {size}x{size} patches "
                                        "measured on the fly (noise seeded per patch)")
    stream = MeasurementSet(images, physics, protocol, cfg.batch, cfg.seed, cfg.noise_level, device)
    return stream, MEASUREMENT_DATA, (f"{len(images)} images of {name} measured once (noise seeds "
                                       f"{cfg.seed}..{cfg.seed + len(images) - 1}), {stream.steps_per_epoch} "
                                       "batch(es) per epoch; ground truth discarded after measuring")


@dataclass
class _Data:
    """What a run trains on, resolved and checked (see :func:`_resolve_data`)."""

    stream: Any
    used: str  #: PATCH_DATA or MEASUREMENT_DATA
    detail: str  #: a line describing the data
    name: str
    protocol: str
    mode: str
    n_images: int
    val: list[Image]
    val_name: str


def _resolve_data(model, physics, data, val, terms, cfg: TrainConfig, protocol, data_name, val_name,
                  test_time: bool, device) -> _Data:
    """The data mode (patches or whole-image measurements), the validation protocol and
    the streams, after every check on how the strategies may use the data."""
    uses_gt = [s.name for _, s in terms if s.uses_ground_truth]
    refs = physics.references()
    sparse = isinstance(refs[0], SparseRecovery)
    require(not (test_time and uses_gt), f"strategy {uses_gt} needs ground truth: test-time adaptation may use "
                                         "the test measurements only (school, self-supervised)")
    mode = cfg.data_mode if cfg.data_mode != "auto" else ("measurements" if test_time and not sparse else "patches")
    require(mode == "patches" or not uses_gt,
            f"strategy {uses_gt} needs ground truth, which measurement data do not carry: use data_mode 'patches'")
    require(mode == "patches" or not isinstance(physics, RandomBlockCS),
            "a list of CS ratios (random physics per step) needs data_mode 'patches'")
    protocol = protocol or refs[0].protocols[0]
    require(protocol in PROTOCOLS, f"unknown protocol '{protocol}': choose one of {sorted(PROTOCOLS)}")
    if sparse:
        require(mode == "patches", "sparse recovery trains on fresh codes: use data_mode 'patches' (or 'auto')")
        require(val is None and cfg.val_every == 0 and cfg.patience == 0,
                "sparse recovery has no validation images: drop val/holdout/val_every/patience and score the "
                "model with 'spade evaluate MODEL --protocol nmse'")
        images, codes, data_name = [], code_probability(data), data_name or str(data)
    else:
        (images, data_name), codes = _images(data, model, "data", data_name), None
        require(len(images) > 0, "no training data: give images (a folder, a benchmark set or 'embedded')")
    val_images, val_name = _images(val, model, "val", val_name)
    if val_images:
        check_disjoint(images, val_images)
    require(val_images or (cfg.val_every == 0 and cfg.patience == 0),
            "val_every and patience need validation images (val / holdout)")
    stream, used, detail = _data_stream(mode, images, codes, data_name, physics, protocol, cfg, device)
    return _Data(stream, used, detail, data_name, protocol, mode, len(images), val_images, val_name)


class _Run:
    """The state of one training run: optimisation, checkpoints, validation, history."""

    def __init__(self, model, objective, cfg: TrainConfig, history: History, data: _Data, physics, ckpt,
                 fingerprint: dict, device, log):
        self.model, self.objective, self.cfg, self.history, self.data = model, objective, cfg, history, data
        self.physics, self.ckpt, self.fingerprint, self.device, self.log = physics, ckpt, fingerprint, device, log
        self.params = [p for p in model.parameters() if p.requires_grad]
        require(len(self.params) > 0, "the model has no trainable parameters")
        self.optimizer = _optimizer(cfg, self.params)
        self.scheduler = _scheduler(cfg, self.optimizer, history.total_steps)
        self.main = dist.rank() == 0
        self.best_state, self.bad, self.last_saved = None, 0, None

    def restore(self, resume: bool) -> int:
        """The step to start from: 0, or the checkpoint's (seeding the run when new)."""
        ckpt, history = self.ckpt, self.history
        if ckpt is None or not ckpt.exists():
            torch.manual_seed(self.cfg.seed)
            return 0
        require(resume, f"checkpoint {ckpt} of an unfinished run exists: resume it (--resume) or delete it")
        blob = load_checkpoint(ckpt)
        diff = fingerprint_differences(blob["run"]["fingerprint"], self.fingerprint)
        require(not diff, f"checkpoint {ckpt} belongs to another run ({'; '.join(diff)[:300]})")
        self.model.load_state_dict(blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        set_rng_state(blob["rng"])
        run = blob["run"]
        history.steps, history.validations = run["history"]["steps"], run["history"]["validations"]
        history.best_step, history.best_psnr, self.bad = run["best_step"], run["best_psnr"], run["bad_validations"]
        history.seconds, history.samples = run.get("seconds", 0.0), run.get("samples", 0)
        history.resumed_from = self.last_saved = blob["step"]
        self.best_state = blob["best"]["state"]
        if self.main:
            self.log(f"resuming from step {blob['step']} of {history.total_steps} ({ckpt})")
        return blob["step"]

    def save(self, step: int) -> None:
        h = self.history
        if self.ckpt is not None and self.main:
            run = {"fingerprint": self.fingerprint, "history": {"steps": h.steps, "validations": h.validations},
                   "best_step": h.best_step, "best_psnr": h.best_psnr, "bad_validations": self.bad,
                   "seconds": h.seconds, "samples": h.samples}
            save_checkpoint(self.ckpt, step, self.model, self.optimizer, self.scheduler, self.best_state, run)
        dist.barrier()
        self.last_saved = step

    def validate(self, step: int) -> None:
        """Mean validation PSNR over the reference operators; keeps the best weights."""
        mean = torch.zeros(())
        if self.main:
            scores = [evaluate(self.model, p, self.data.val, self.data.protocol, noise_level=self.cfg.noise_level,
                               seed=self.cfg.seed, device=self.device, progress=False).mean("psnr") for p in self.physics.references()]
            mean = torch.tensor(sum(scores) / len(scores), dtype=torch.float64)
        score = float(dist.from_main(mean.to(self.device)))
        self.model.train()
        h = self.history
        h.validations.append({"step": step, "psnr": score})
        if h.best_psnr is None or score > h.best_psnr:
            h.best_psnr, h.best_step, self.bad = score, step, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad += 1

    def step(self, step: int, teacher) -> dict:
        """One optimisation step (``step`` counts from 0); returns the progress-bar fields."""
        began = time.perf_counter()
        cfg, world = self.cfg, dist.world_size()
        step_physics = physics_at(self.physics, step, cfg.seed).to(self.device)
        batch = self.data.stream.batch(step, step_physics, dist.rank(), world, self.device)
        generator = torch.Generator().manual_seed(sample_seed(cfg.seed, step))
        loss, parts, x_net = self.objective(batch.y, batch.x, step_physics, key=batch.key, generator=generator,
                                            teacher=teacher)
        self.optimizer.zero_grad(set_to_none=True)
        (loss * batch.weight).backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip if cfg.clip > 0 else math.inf)
        values = torch.stack([loss.detach(), *(v.detach() for v in parts.values())]).double() * batch.weight
        values = dist.sum_over_processes(values) / world
        if not (bool(torch.isfinite(values).all()) and bool(torch.isfinite(norm))):
            where = (f"the last good checkpoint is {self.ckpt} (step {self.last_saved})"
                     if self.last_saved and self.ckpt else "no checkpoint was written")
            raise SpadeError(f"training stopped at step {step + 1}: loss {float(values[0]):.4g}, gradient norm "
                             f"{float(norm):.4g} (not finite); {where}: lower the learning rate or clip gradients")
        self.optimizer.step()
        self.scheduler.step()
        h = self.history
        h.seconds += time.perf_counter() - began
        h.samples += cfg.batch
        record = {"step": step + 1, "loss": float(values[0]), "lr": self.optimizer.param_groups[0]["lr"]}
        record.update({name: float(v) for name, v in zip(parts, values[1:])})
        h.steps.append(record)
        shown = {"loss": f"{record['loss']:.4g}", "samples/s": f"{h.samples_per_second:.1f}"}
        if batch.x is not None:
            shown["psnr"] = f"{psnr(x_net, batch.x, data_range=1.0):.2f}"
        return shown

    def finish(self, step: int) -> None:
        """Close the history; restore the best validated weights."""
        h = self.history
        h.stopped = h.stopped or f"completed {step} steps"
        if h.samples_per_second:
            h.stopped += f" ({h.seconds:.0f} s of training, {h.samples_per_second:.1f} samples/s)"
        if self.best_state is not None and h.best_step != step:
            self.model.load_state_dict(self.best_state)
            h.stopped += f"; restored the weights of step {h.best_step} (best validation PSNR)"
        if self.main:
            self.log(h.stopped)


def finetune(model: nn.Module, physics: LinearPhysics | RandomBlockCS, data, strategy="supervised", *,
             teacher: nn.Module | None = None, options: dict[str, dict] | None = None, val=None,
             protocol: str | None = None, checkpoint: str | Path | None = None, resume: bool = False,
             device: str | torch.device = "cpu", progress: bool = True, log: Callable[[str], None] | None = None,
             data_name: str | None = None, val_name: str | None = None, test_time: bool = False,
             **settings) -> tuple[nn.Module, History]:
    """Train ``model`` in place; returns ``(model, history)``. Also trains from scratch.

    Args:
        model: any ``nn.Module`` called as ``model(y, physics[, return_aux=True])``.
        physics: the operator, or a :class:`RandomBlockCS` (new ratio and Phi every step).
        data: images (a source name / folder for :func:`spade.data.load_images`, or a list
            of :class:`spade.data.Image`): training images, measured as random patches
            (or, with ``data_mode="measurements"``, whole). Sparse recovery trains on
            fresh codes: ``"bernoulli-gaussian[:P]"``.
        strategy: ``"supervised"``, ``"school:1,self-supervised:0.5"``, ``{"school": 1}``.
        teacher: frozen network for strategies that use one (``school``).
        options: per-strategy options, e.g. ``{"supervised": {"metric": "ssim"}}``.
        val: held-out validation images (source or list), disjoint from ``data``;
            validation scores mean PSNR under ``protocol`` (default by physics kind).
        checkpoint: file for checkpoints (every ``checkpoint_every`` steps); ``resume``
            continues from it. Without ``resume`` an existing checkpoint is an error.
        data_name, val_name: how logs and the history name the data (default: the source).
        test_time: ``data`` are the very images the model will be scored on (test-time
            adaptation): their measurements are used (whole, by default), never their
            ground truth, and the history records ``finetune_data = "test"``; otherwise
            ``"train:<data_name>"``.
        settings: :class:`TrainConfig` fields (``steps``/``epochs``, ``lr``, ``batch``...).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    cfg = TrainConfig.from_mapping(settings, "training settings")
    terms = build_strategies(strategy, options)
    spec_text = strategy if isinstance(strategy, str) else ",".join(f"{k}:{v}" for k, v in dict(strategy).items())
    device = torch.device(device)
    needs_teacher = [s.name for _, s in terms if s.uses_teacher]
    require(not needs_teacher or teacher is not None, f"strategy {needs_teacher} needs a teacher model (--teacher)")
    require(teacher is None or needs_teacher, "a teacher is given but no strategy uses one (add 'school')")
    data = _resolve_data(model, physics, data, val, terms, cfg, protocol, data_name, val_name, test_time, device)
    total = cfg.steps or cfg.epochs * data.stream.steps_per_epoch
    history = History(spec_text, data.used, data.name, data.protocol, total,
                      finetune_data=TEST_TIME if test_time else f"train:{data.name}")

    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)
    objective: nn.Module = Objective(model, terms, cfg.regularizer)
    if dist.world_size() > 1:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)
    fingerprint = json.loads(json.dumps({"settings": cfg.fingerprint(), "strategy": spec_text, "options": options or {},
                                         "data": data.name, "n_images": data.n_images, "mode": data.mode,
                                         "shapes": {k: list(v.shape) for k, v in model.state_dict().items()}}))
    run = _Run(model, objective, cfg, history, data, physics, Path(checkpoint) if checkpoint else None, fingerprint,
               device, log)
    start = run.restore(resume)
    if run.main:
        log(f"strategy: {spec_text}; data: {data.used} — {data.detail}")
        if data.val:
            log(f"validation: {len(data.val)} held-out images of {data.val_name} ({data.protocol})")

    every = cfg.checkpoint_every or max(1, total // 10)
    bar = progress_bar(total=total, initial=start, show=progress and run.main, desc=spec_text, leave=True)
    step = start
    try:
        while step < total:
            shown = run.step(step, teacher)
            step += 1
            if data.val and (step == total or (cfg.val_every and step % cfg.val_every == 0)):
                run.validate(step)
            if history.validations:
                shown["val"] = f"{history.validations[-1]['psnr']:.2f}"
            bar.set_postfix(shown, refresh=False)
            bar.update(1)
            if cfg.patience and run.bad >= cfg.patience:
                history.stopped = (f"early stopping at step {step}: no validation gain in {run.bad} validations "
                                   f"(best {history.best_psnr:.2f} dB at step {history.best_step})")
                break
            if step % every == 0 or step == total:
                run.save(step)
    finally:
        bar.close()
    run.finish(step)
    return model.eval(), history
