"""Fine-tune a model file with a strategy (supervised, school, self-supervised, ...)."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..data import load_images, split
from ..errors import require
from ..finetune import distributed as dist
from ..finetune import finetune, parse_spec
from ..finetune.config import TrainConfig
from ..finetune.data import same_physics
from ..finetune.loop import image_channels
from ..finetune.strategies import build_strategies, kept_iterations
from ..models.adapter import is_factory, reconstruction_net, split_source
from ..models.io import load_model, save_model
from ..models.validation import validation_record
from ..prune import load_own, write_pruned

#: spec keys that save_model recomputes; the others (provenance) are carried over
COMPUTED_SPEC_KEYS = {"format", "version", "family", "config", "shapes", "widths", "physics"}


def strategy_options(names: list[str], loss: str | None = None, iterates: float | None = None,
                     transforms=()) -> dict[str, dict]:
    """The strategies' own options from the job's ``loss`` (supervised, school),
    ``iterates`` (school) and ``transforms`` (self-supervised), for strategies ``names``."""
    options: dict[str, dict] = {}
    if loss:
        targets = [n for n in ("supervised", "school") if n in names]
        require(targets, "the loss option applies to supervised and school, which the strategy does not use")
        for n in targets:
            options.setdefault(n, {})["metric"] = loss
    if iterates is not None:
        require("school" in names, "the iterates option applies to school, which the strategy does not use")
        options.setdefault("school", {})["iterates"] = iterates
    if transforms:
        require("self-supervised" in names,
                "the transforms option applies to self-supervised, which the strategy does not use")
        options.setdefault("self-supervised", {})["transforms"] = list(transforms)
    return options


@dataclass(frozen=True)
class FinetuneJob:
    """Fine-tune ``model`` into ``out``.

    ``model`` / ``teacher``: SPADE model files, or a user's network ``MODULE:FUNCTION[@FILE]``
    (see :mod:`spade.models.adapter`; the output is then written like FILE, as weights +
    pruning history, and used as ``MODULE:FUNCTION@OUT``).
    ``data``: the training images (a folder, a benchmark set, 'embedded'; sparse
    recovery: 'bernoulli-gaussian[:P]'), disjoint from the test images unless
    ``test_time`` says they are the test images themselves (test-time adaptation:
    measurements only, recorded as ``finetune_data = "test"``). ``loss`` / ``iterates`` /
    ``transforms``: options of supervised+school / school / self-supervised.
    """

    model: str
    out: str
    strategy: str
    data: str
    train: TrainConfig
    teacher: str | None = None
    val: str | None = None
    holdout: int = 0
    protocol: str | None = None
    loss: str | None = None
    iterates: float | None = None
    transforms: tuple[str, ...] = field(default_factory=tuple)
    test_time: bool = False

    def __post_init__(self):
        build_strategies(self.strategy, self.options)  # names, weights and options, checked by the strategies
        self.train.validate("training settings")
        require(not (self.val and self.holdout), "give val or holdout, not both")
        require(isinstance(self.holdout, int) and self.holdout >= 0, f"holdout = {self.holdout!r}: give a whole "
                                                                     "number of images >= 0")
        given = split_source(self.model)[1] if is_factory(self.model) else self.model
        require(given is None or Path(self.out).resolve() != Path(given).resolve(), "the output must differ from "
                                                                                    "the input model file")

    @property
    def names(self) -> list[str]:
        return [n for n, _ in parse_spec(self.strategy)]

    @property
    def options(self) -> dict[str, dict]:
        """Per-strategy options, e.g. ``{"school": {"iterates": 0.5}}``."""
        return strategy_options(self.names, self.loss, self.iterates, self.transforms)

    @property
    def checkpoint(self) -> Path:
        return Path(self.out).with_name(Path(self.out).name + ".ckpt")


def load_teacher(path, physics, device):
    """The teacher model of ``path`` (a model file or MODULE:FUNCTION[@FILE]); its physics
    must be the student's."""
    if is_factory(path):
        teacher = load_own(path, device)
        teacher.require_physics(f"the teacher {path}")
        teacher.model = reconstruction_net(teacher.model)
    else:
        teacher = load_model(path, device)
    require(teacher.physics is not None and same_physics(teacher.physics.cpu(), physics.cpu()),
            f"teacher {path} was built for other physics than the model "
            f"({teacher.physics.settings() if teacher.physics is not None else None} vs {physics.settings()}): "
            "give the unpruned model of the same operator")
    return teacher.model


def write_result(out: Path, checkpoint: Path, model, physics, spec_extra: dict, own=None) -> None:
    """Rank 0: write the model file (a user's network: weights + its source's pruning
    history), then drop the checkpoint it supersedes."""
    if dist.is_main():
        if own is None:
            save_model(out, model, physics, **spec_extra)
        else:
            info = {"source": split_source(own.source)[0], "pruning": own.spec.get("pruning"), **spec_extra}
            write_pruned(out, model, own.spec.get("history") or {}, info)
        checkpoint.unlink(missing_ok=True)


def _pair_iterations(options: dict, pruning: dict | None) -> dict:
    """School on the iterates of a model that lost whole iterations: each kept iteration is
    matched with the teacher iteration it replaces (the depth entry of its pruning record)."""
    school = options.get("school", {})
    depth = (pruning or {}).get("depth")
    if not school.get("iterates") or not depth or depth.get("unit") != "iteration" or "previous" in pruning:
        return options
    return {**options, "school": {**school, "teacher_iterates": kept_iterations(depth)}}


def finetune_file(job: FinetuneJob, device: str | torch.device = "cpu", resume: bool = False,
                  progress: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Run ``job`` (resuming from its checkpoint with ``resume``); returns the run's summary.

    Under ``torchrun`` call it between :func:`spade.finetune.distributed.setup` and
    ``teardown``; rank 0 writes the file.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    own = is_factory(job.model)
    if own:
        loaded = load_own(job.model, device)
        loaded.require_physics("spade finetune")
        user_model, loaded.model = loaded.model, reconstruction_net(loaded.model)
    else:
        loaded = load_model(job.model, device)
        require(loaded.physics is not None, f"model file {job.model} stores no physics to fine-tune with")
    teacher = load_teacher(job.teacher, loaded.physics, device) if job.teacher else None
    sparse = loaded.physics.kind == "sparse"  # synthetic codes (the engine rejects validation data)
    channels = image_channels(loaded.model)
    images = job.data if sparse else load_images(job.data, channels)
    val = (job.val if sparse else load_images(job.val, channels)) if job.val else None
    if job.holdout:
        require(not sparse, "sparse recovery trains on synthetic codes: there are no images to hold out")
        images, val = split(images, job.holdout, job.train.seed)
    options = _pair_iterations(job.options, loaded.spec.get("pruning"))
    model, history = finetune(loaded.model, loaded.physics, images, job.strategy, teacher=teacher,
                              options=options, val=val, protocol=job.protocol or loaded.spec.get("protocol"),
                              checkpoint=job.checkpoint, resume=resume, device=device, progress=progress,
                              data_name=job.data, val_name=job.val or (job.data if job.holdout else None),
                              test_time=job.test_time, log=log, **asdict(job.train))
    summary = history.summary()
    summary.update({"out": job.out, "model": job.model, "teacher": job.teacher, "data": job.data,
                    "options": options})
    if own:
        summary["load_as"] = f"{split_source(job.model)[0]}@{job.out}"
        extra = {}
    else:
        extra = {k: v for k, v in loaded.spec.items() if k not in COMPUTED_SPEC_KEYS}
    extra["protocol"] = history.protocol
    extra["finetuning"] = {**summary, "settings": asdict(job.train),
                           **validation_record(job.val or job.data, val)}
    write_result(Path(job.out), job.checkpoint, user_model if own else model, loaded.physics, extra,
                 loaded if own else None)
    return summary
