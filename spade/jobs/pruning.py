"""Prune a model file: the pruned architecture and weights, the physics intact."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data import example_pair, load_images
from ..errors import require
from ..evaluation import DEFAULT_PROTOCOL
from ..finetune.loop import image_channels
from ..models.io import load_model, save_model
from ..prune import prune
from ..prune.api import check_settings
from ..prune.data import measurement_batches
from .latency_budget import LatencyTarget, planned_widths

#: how the MACs in the pruning record are counted
MACS_COUNTER = ("torch.utils.flop_counter FLOPs / 2 for one inference call on the example input: convolutions "
                "and matrix products, the physics' own included; FFTs and element-wise ops not counted")

#: spec keys that save_model recomputes; the others (provenance) are carried over
COMPUTED_SPEC_KEYS = ("format", "version", "family", "config", "shapes", "widths", "physics", "pruning")


@dataclass(frozen=True)
class PruneJob:
    """:func:`spade.prune.prune` settings plus the files: ``model`` in, ``out`` written;
    ``data``: images measured with the model's physics (data criteria, depth pruning)."""

    model: str
    out: str
    ratio: float
    importance: str = "l1"
    scope: str = "uniform"
    steps: int = 1
    round_to: int | None = None
    depth: int | None = None
    data: str | None = None
    samples: int = 4
    protect: tuple[str, ...] = field(default_factory=tuple)
    seed: int = 0
    latency: LatencyTarget | None = None  #: prune to a latency budget instead of ``ratio``

    def __post_init__(self):
        check_settings(self.ratio, self.importance, self.scope, self.steps, self.round_to, self.depth, data=self.data)
        require(self.latency is None or (self.ratio == 0 and self.depth is None),
                "a latency target chooses the widths itself: drop --ratio and --depth")
        require(isinstance(self.samples, int) and self.samples >= 1, f"samples = {self.samples!r}: give a whole "
                                                                     "number >= 1")


def prune_file(job: PruneJob, device: str | torch.device = "cpu") -> dict:
    """Prune ``job.model`` into ``job.out``; returns the pruning record as JSON (no history)."""
    loaded = load_model(job.model, device)
    physics = loaded.physics
    require(physics is not None, f"model file {job.model} stores no physics to trace the model with")
    x, y = example_pair(physics, batch=1, device=device)
    batches = None
    if job.data is not None:
        protocol = loaded.spec.get("protocol") or DEFAULT_PROTOCOL[physics.kind]
        batches = measurement_batches(physics, load_images(job.data, image_channels(loaded.model)), protocol,
                                      job.samples, job.seed, device)
    plan = None if job.latency is None else planned_widths(job.latency, loaded.model, physics, y, job.importance,
                                                           batches, job.seed)
    pruned, record = prune(loaded.model, (y, physics), ratio=job.ratio, importance=job.importance, scope=job.scope,
                           steps=job.steps, round_to=job.round_to, depth=job.depth, protect=list(job.protect),
                           data=batches, seed=job.seed, widths=None if plan is None else plan.widths)
    extras = {k: v for k, v in loaded.spec.items() if k not in COMPUTED_SPEC_KEYS}
    entry = {**record.spec_entry(), "data": job.data, "macs_image": list(x.shape), "macs_counter": MACS_COUNTER}
    if plan is not None:
        entry["latency_plan"] = plan.measured(loaded.model, pruned, physics, y)
    if loaded.spec.get("pruning"):
        entry["previous"] = loaded.spec["pruning"]
    save_model(job.out, pruned, physics, pruning=entry, **extras)
    summary = {"model": job.model, "out": job.out, **record.to_json(), "macs_image": list(x.shape),
               "macs_counter": MACS_COUNTER}
    summary.pop("history")
    if plan is not None:
        summary["latency_plan"] = entry["latency_plan"]
    return summary
