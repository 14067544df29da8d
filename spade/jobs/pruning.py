"""Prune a model file: the pruned architecture and weights, the physics intact."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data import example_pair, load_images
from ..errors import require
from ..limits import check_count
from ..finetune.loop import image_channels
from ..macs import MACS_COUNTER
from ..models.adapter import is_factory, split_source
from ..models.io import load_model, save_model
from ..prune import history_of, load_own, prune, write_pruned
from ..prune.api import check_settings
from ..prune.calls import tensors_of
from ..prune.data import measurement_batches
from .latency_budget import LatencyTarget, PlannedPrune, plan_and_prune

#: spec keys that save_model recomputes; the others (provenance) are carried over
COMPUTED_SPEC_KEYS = ("format", "version", "family", "config", "shapes", "widths", "physics", "pruning")


@dataclass(frozen=True)
class PruneJob:
    """:func:`spade.prune.prune` settings plus the files: ``model`` in, ``out`` written;
    ``data``: images measured with the model's physics (data criteria, depth pruning,
    reconstruction), ``samples`` of them, centre-cropped to ``crop`` pixels;
    ``reconstruct``: re-fit the pruned layers on them (None: when ``data`` is given);
    ``depth_refit``: re-fit the iteration after each removed one (None: as ``reconstruct``)."""

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
    crop: int | None = None
    reconstruct: bool | None = None
    depth_refit: bool | None = None
    ridge: float = 1e-3
    protect: tuple[str, ...] = field(default_factory=tuple)
    seed: int = 0
    latency: LatencyTarget | None = None  #: prune to a latency budget instead of ``ratio``

    def __post_init__(self):
        check_settings(self.ratio, self.importance, self.scope, self.steps, self.round_to, self.depth, data=self.data,
                       reconstruct=self.refits)
        require(not self.depth_refit or self.data is not None, "re-fitting the iteration after a removed one "
                                                                 "needs calibration data: give --data")
        require(isinstance(self.ridge, (int, float)) and self.ridge > 0, f"ridge = {self.ridge!r}: give a number > 0, "
                                                                           "e.g. 1e-3")
        if self.crop is not None:
            check_count(self.crop, "MAX_IMAGE_SIDE", "crop", minimum=8)
        require(self.latency is None or (self.ratio == 0 and self.depth is None),
                "a latency target chooses the widths (and, with --data, the depth) itself: drop --ratio and --depth")
        check_count(self.samples, "MAX_SAMPLES", "samples")

    @property
    def refits(self) -> bool:
        """Whether the pruned layers are re-fitted (default: when calibration data are given)."""
        return self.data is not None if self.reconstruct is None else bool(self.reconstruct)

    @property
    def refits_depth(self) -> bool:
        """Whether the iteration after each removed one is re-fitted (default: as :attr:`refits`)."""
        return self.refits if self.depth_refit is None else bool(self.depth_refit)


def _planned(plan: PlannedPrune, model, pruned, physics, y, groups: dict[str, list[int]]) -> dict:
    """The spec entries of a latency-planned prune: the plan with both models timed
    (``latency_plan``) and, as ``ratio``, the share of the prunable channels it removed over
    every group ``[before, after]`` (a plan's counterpart of a uniform ratio)."""
    before = sum(b for b, _ in groups.values())
    share = round(1 - sum(a for _, a in groups.values()) / before, 4) if before else 0.0
    return {"latency_plan": plan.measured(model, pruned, physics, y), "ratio": share}


def _batches(job: PruneJob, model, physics, spec: dict, device) -> list | None:
    """``job.samples`` images of ``job.data`` (centre-cropped to ``job.crop``) measured
    with ``physics`` under the model's protocol, or None without data."""
    if job.data is None:
        return None
    images = load_images(job.data, image_channels(model))
    if job.crop:
        images = [im.centre_crop(job.crop) for im in images]
    protocol = spec.get("protocol") or physics.protocols[0]
    return measurement_batches(physics, images, protocol, job.samples, job.seed, device)


def _pruned(job: PruneJob, model, example, physics, y, batches) -> tuple:
    """``(pruned, record, PlannedPrune or None)``: ``job.ratio``/``job.depth``, or the
    depth and widths a latency plan chooses (:func:`plan_and_prune`)."""
    def prune_to(depth, widths, refit_depth):
        return prune(model, example, ratio=job.ratio, importance=job.importance, scope=job.scope, steps=job.steps,
                     round_to=job.round_to, depth=depth, protect=list(job.protect), data=batches, seed=job.seed,
                     reconstruct=job.refits, ridge=job.ridge, widths=widths, refit_depth=refit_depth)
    if job.latency is None:
        return (*prune_to(job.depth, None, job.refits_depth), None)
    return plan_and_prune(job.latency, model, physics, y, job.importance, batches, job.seed, prune_to,
                          job.refits_depth)


def prune_file(job: PruneJob, device: str | torch.device = "cpu") -> dict:
    """Prune ``job.model`` (a SPADE model file, or MODULE:FUNCTION[@FILE]) into ``job.out``;
    returns the pruning record as JSON (no history)."""
    if is_factory(job.model):
        return _prune_own_model(job, device)
    loaded = load_model(job.model, device)
    physics = loaded.physics
    require(physics is not None, f"model file {job.model} stores no physics to trace the model with")
    x, y = example_pair(physics, batch=1, device=device)
    batches = _batches(job, loaded.model, physics, loaded.spec, device)
    pruned, record, plan = _pruned(job, loaded.model, (y, physics), physics, y, batches)
    extras = {k: v for k, v in loaded.spec.items() if k not in COMPUTED_SPEC_KEYS}
    entry = {**record.spec_entry(), "data": job.data, "crop": job.crop, "macs_image": list(x.shape),
             "macs_counter": MACS_COUNTER}
    if plan is not None:
        entry.update(_planned(plan, loaded.model, pruned, physics, y, record.groups))
    if loaded.spec.get("pruning"):
        entry["previous"] = loaded.spec["pruning"]
    save_model(job.out, pruned, physics, pruning=entry, **extras)
    summary = {"model": job.model, "out": job.out, **record.to_json(), "macs_image": list(x.shape),
               "macs_counter": MACS_COUNTER}
    summary.pop("history")
    if plan is not None:
        summary["latency_plan"] = entry["latency_plan"]
    return summary


def _prune_own_model(job: PruneJob, device) -> dict:
    """A user's network from MODULE:FUNCTION[@FILE]: pruned on its own example, saved as
    weights + pruning history (reload with ``spade.load_pruned(path, fresh_model, example)``
    or name it ``MODULE:FUNCTION@OUT``). Data, reconstruction and latency targets measure
    images with the physics of a ``(y, physics)`` example."""
    own = load_own(job.model, device)
    factory, _ = split_source(job.model)
    physics = own.physics
    wants = [w for w, given in (("--data", job.data is not None), ("--reconstruct", job.refits),
                                ("a latency target", job.latency is not None)) if given]
    if wants:
        own.require_physics(wants[0])
    batches = _batches(job, own.model, physics, own.spec, device)
    y = own.example[0] if physics is not None else None
    pruned, record, plan = _pruned(job, own.model, own.example, physics, y, batches)
    first = next(iter(tensors_of(own.example)), None)
    shape = [] if first is None else list(first.shape)
    entry = {**record.spec_entry(), "data": job.data, "crop": job.crop, "macs_image": shape,
             "macs_counter": MACS_COUNTER}
    if plan is not None:
        entry.update(_planned(plan, own.model, pruned, physics, y, record.groups))
    if own.spec.get("pruning"):
        entry["previous"] = own.spec["pruning"]
    info = {"source": factory, "pruning": entry,
            **{k: own.spec[k] for k in ("protocol",) if own.spec.get(k)}}
    write_pruned(job.out, pruned, history_of(record, own.spec.get("history")), info)
    summary = {"model": job.model, "out": job.out, "load_as": f"{factory}@{job.out}", **record.to_json(),
               "macs_counter": MACS_COUNTER, "macs_image": shape}
    summary.pop("history")
    if plan is not None:
        summary["latency_plan"] = entry["latency_plan"]
    return summary
