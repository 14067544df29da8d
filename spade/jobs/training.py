"""Train a model from scratch with a training recipe (:mod:`spade.finetune.recipe`)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..data import load_images, split
from ..errors import require
from ..fileio import write_text
from ..finetune import distributed as dist
from ..finetune import finetune
from ..finetune.loop import image_channels
from ..finetune.recipe import build_model, build_train_physics, read_recipe, split_sections
from ..models import get_family
from ..models.validation import validation_record
from .finetuning import load_teacher, write_result


@dataclass(frozen=True)
class TrainJob:
    """``recipe`` trained into ``out``: ``out/model.spade``, ``out/history.json`` and,
    while it runs, ``out/checkpoint.pt``. The recipe is read and checked when the job
    is built."""

    recipe: str
    out: str
    parsed: dict = field(init=False, repr=False, compare=False)  #: the recipe's sections
    sections: tuple = field(init=False, repr=False, compare=False)  #: (data, settings, extra)

    def __post_init__(self):
        object.__setattr__(self, "parsed", read_recipe(self.recipe))
        object.__setattr__(self, "sections", split_sections(self.parsed))

    @property
    def model_file(self) -> Path:
        return Path(self.out) / "model.spade"

    @property
    def checkpoint(self) -> Path:
        return Path(self.out) / "checkpoint.pt"


def train_recipe(job: TrainJob, device: str | torch.device = "cpu", resume: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> dict:
    """Train; returns the run's summary (rank 0 writes the files)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    recipe = job.parsed
    data, settings, extra = job.sections
    physics = build_train_physics(recipe["physics"])
    reference = physics.references()[0]
    torch.manual_seed(settings.get("seed", 0))
    model = build_model(recipe["model"])
    family = get_family(model.family)
    require(reference.kind in family.physics,
            f"model '{family.name}' serves physics {list(family.physics)}, not '{reference.kind}'")
    teacher = load_teacher(extra["teacher"], reference, device) if "teacher" in extra else None
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
                              checkpoint=job.checkpoint, resume=resume, device=device, progress=progress,
                              data_name=data["source"], val_name=data.get("val", data["source"]), log=log,
                              **settings)
    summary = history.summary()
    summary.update({"out": str(job.model_file), "recipe": str(job.recipe), "data": data["source"]})
    training = {"steps": summary["steps_run"], "strategy": summary["strategy"], "loss": summary["final_loss"],
                "val_psnr": summary["best_psnr"], "data_used": summary["data_used"], "data": data["source"],
                "stopped": summary["stopped"], "recipe": recipe,
                **validation_record(data.get("val", data["source"]), val)}
    if dist.is_main():
        write_text(Path(job.out) / "history.json", json.dumps(history.to_json(), indent=1))
    write_result(job.model_file, job.checkpoint, model, reference, {"protocol": history.protocol,
                                                                    "training": training})
    return summary
