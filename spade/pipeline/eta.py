"""How long the rest of a pipeline run should take: sizes from the recipe, seconds measured.

A run is a list of :class:`Unit` s — training runs and fine-tuning runs (so many steps),
prunes, the evaluation and timing of the models, the report. :class:`Estimator` turns
what remains into seconds with rates that are *measured*, never assumed:

* **probes** before anything runs: one forward + backward pass of every model the recipe
  trains or starts from, on a batch of its training patches (a warm-up pass, then the
  faster of two timed passes). A training step costs about a probe; the ratio of a measured
  step to its probe, once a run has finished, corrects the others;
* **finished stages**: seconds per step of each training run, per fine-tuning run of a
  strategy (the ratio to its model's training step carries over to the other models),
  per prune;
* the **timing stage** is sized by the ``[profile]`` settings (paired rounds x candidates x
  the minimum block time, at least one call on the timed input each) and the evaluation by
  the scored pixels of the test images, both at the probe's seconds per pixel; a **prune** by the forward passes its re-fit makes (two per
  convolution and calibration crop), corrected by the ratio measured on the first prune.

Whatever cannot be sized yet (training given in epochs, an imported model not yet
converted) is named instead of guessed.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import example_pair
from ..errors import SpadeError
from ..finetune.config import TrainConfig
from ..finetune.recipe import build_model, build_train_physics, read_recipe, split_sections
from ..models import load_model
from ..progress import duration

#: a training step's share of a probe before any run has been measured (data, optimiser,
#: checkpoints and validation come on top of the forward + backward pass)
FIRST_STEP_FACTOR = 1.3

#: how a unit without an estimate is named
UNKNOWN = {"train": "training given in epochs", "distill": "distillation", "import": "imports",
           "prune": "prunes of models not probed yet", "finetune": "fine-tuning of models not probed yet",
           "collect": "evaluating and timing models not probed yet", "quantize": "INT8 quantization"}


@dataclass
class Unit:
    """One piece of work: ``kind`` train / distill / import / prune / finetune / quantize /
    collect / report."""

    kind: str
    model: str  #: the model trained, or the unpruned model a prune / fine-tuning starts from
    steps: int | None = None  #: training / fine-tuning steps (None: given in epochs, not known ahead)
    strategy: str | None = None
    target: Path | None = None  #: what the unit writes (a resumed run skips the units whose target exists)
    done: bool = False


@dataclass
class Probe:
    """One forward + backward pass of a model on ``pixels`` image pixels (a training batch
    of ``images``); the model has ``convs`` convolutions (each re-fitted after a prune)."""

    seconds: float
    pixels: int
    images: int = 1
    convs: int = 1
    timed_pixels: int = 0  #: pixels of the input the profiler times (0: the probe's)

    @property
    def forward_per_pixel(self) -> float:
        """Seconds of a forward pass per image pixel: a third of a forward + backward pass."""
        return self.seconds / 3 / self.pixels


def _scored(physics, shape: tuple[int, int]) -> int:
    """Pixels of an ``shape`` image that evaluation measures (cropped to the operator)."""
    try:
        return math.prod(physics.crop_image(torch.empty(1, 1, *shape)).shape[-2:])
    except SpadeError:  # smaller than the operator: evaluation says so itself
        return math.prod(shape)


@dataclass
class Estimator:
    """Rates measured so far and the estimate of what remains (module docstring)."""

    profile: dict = field(default_factory=dict)  #: the recipe's [profile] table
    probes: dict[str, Probe] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)  #: model -> seconds per training step
    finetunes: dict[tuple[str, str], float] = field(default_factory=dict)  #: (model, strategy) -> s / step
    prunes: list[float] = field(default_factory=list)  #: measured / modelled seconds of each prune run
    pruning: dict = field(default_factory=dict)  #: the recipe's [prune] table (samples, crop, reconstruct)
    test_pixels: dict[str, int] = field(default_factory=dict)  #: model -> pixels of all its test images
    test_shapes: dict[str, list] = field(default_factory=dict)  #: model -> (H, W) of its test images

    # -- measuring ---------------------------------------------------------------------
    def probe(self, name: str, model: torch.nn.Module, physics, batch: int, side: int | None) -> None:
        """Time one forward + backward pass of ``model`` on ``batch`` measured crops."""
        channels = model.config.get("image_channels", 1) if hasattr(model, "config") else 1
        x, y = example_pair(physics, batch, side, channels=channels)
        model.train()
        times = []
        for _ in range(3):
            began = time.perf_counter()
            out = model(y, physics)
            out.float().square().mean().backward()
            times.append(time.perf_counter() - began)
        model.zero_grad(set_to_none=True)
        convs = sum(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
        timed = physics.image_shape(self.profile.get("side"), channels)
        self.probes[name] = Probe(min(times[1:]), int(x[0, 0].numel()) * batch, batch, max(convs, 1),
                                  math.prod(timed[1:]) * self.profile.get("batch", 1))
        if name in self.test_shapes:  # the part of each test image that is measured and scored
            self.test_pixels[name] = sum(_scored(physics, shape) for shape in self.test_shapes[name])

    def probe_recipe(self, name: str, recipe: str) -> None:
        """Probe the model a training recipe builds, on its training batch and patch."""
        parsed = read_recipe(recipe)
        _, settings, _ = split_sections(parsed)
        cfg = TrainConfig.from_mapping(settings, "[train]")
        physics = build_train_physics(parsed["physics"]).references()[0]
        torch.manual_seed(0)
        self.probe(name, build_model(parsed["model"]), physics, cfg.batch, cfg.patch or physics.default_patch())

    def probe_file(self, name: str, path: str | Path, batch: int, patch: int) -> None:
        """Probe a model file on a fine-tuning batch (``patch``: 0 for the physics' own)."""
        loaded = load_model(path)
        if loaded.physics is not None:
            self.probe(name, loaded.model, loaded.physics, batch, patch or loaded.physics.default_patch())

    def finished(self, unit: Unit, seconds: float) -> None:
        """A unit ran for ``seconds`` (wall): keep its rate."""
        unit.done = True
        if unit.kind in ("train", "distill") and unit.steps:
            self.steps[unit.model] = seconds / unit.steps
        elif unit.kind == "finetune" and unit.steps:
            self.finetunes[(unit.model, unit.strategy)] = seconds / unit.steps
        elif unit.kind == "prune":
            modelled = self.prune_model_seconds(unit.model)
            if modelled:
                self.prunes.append(seconds / modelled)

    # -- estimating --------------------------------------------------------------------
    def _step_factor(self) -> float:
        """Measured training step / probe, over the models measured (else the first guess)."""
        ratios = [s / self.probes[m].seconds for m, s in self.steps.items() if m in self.probes]
        return statistics.median(ratios) if ratios else FIRST_STEP_FACTOR

    def step_seconds(self, model: str) -> float | None:
        """Seconds per training step of ``model``: measured, else its probe x the factor."""
        if model in self.steps:
            return self.steps[model]
        probe = self.probes.get(model)
        return None if probe is None else probe.seconds * self._step_factor()

    def finetune_seconds(self, model: str, strategy: str) -> float | None:
        """Seconds per fine-tuning step: measured for this model and strategy, else the
        strategy's measured ratio to a training step (on another model), else a training step."""
        if (model, strategy) in self.finetunes:
            return self.finetunes[(model, strategy)]
        base = self.step_seconds(model)
        if base is None:
            return None
        ratios = [s / self.step_seconds(m) for (m, st), s in self.finetunes.items()
                  if st == strategy and self.step_seconds(m)]
        return base * (statistics.median(ratios) if ratios else 1.0)

    def prune_model_seconds(self, model: str) -> float | None:
        """A prune, modelled: forward passes of the calibration crops (``samples`` of
        ``crop`` x ``crop``), two per re-fitted convolution (pruned and unpruned networks),
        a few for tracing and scoring."""
        probe = self.probes.get(model)
        if probe is None:
            return None
        p = self.pruning
        image = probe.forward_per_pixel * p.get("crop", 128) ** 2
        passes = 2 * probe.convs if p.get("reconstruct") else 2
        return image * (p.get("samples", 4) * passes + 10)

    def prune_seconds(self, model: str) -> float | None:
        """The modelled prune x the median ratio measured / modelled of the prunes so far."""
        modelled = self.prune_model_seconds(model)
        return None if modelled is None else modelled * (statistics.median(self.prunes) if self.prunes else 1.0)

    def collect_seconds(self, models: dict[str, int]) -> float | None:
        """Evaluation and timing of ``{model: models measured like it}`` (module docstring)."""
        p = self.profile
        rounds, min_run = p.get("rounds", 15), p.get("min_run_time", 1.0)
        backends = len(p.get("backends", ["eager"]))
        total = 0.0
        for model, n in models.items():
            probe = self.probes.get(model)
            if probe is None:
                return None
            timed = probe.forward_per_pixel * (probe.timed_pixels or probe.pixels)  # one timed call
            total += n * probe.forward_per_pixel * self.test_pixels.get(model, probe.pixels)  # evaluation
            total += n * backends * (rounds * max(min_run, timed) + 3 * timed)  # timing: rounds, warm-up, sizing
        return total

    def unit_seconds(self, unit: Unit, family_sizes: dict[str, int]) -> float | None:
        if unit.kind in ("train", "distill"):
            rate = self.step_seconds(unit.model)
            return None if rate is None or unit.steps is None else rate * unit.steps
        if unit.kind == "finetune":
            rate = self.finetune_seconds(unit.model, unit.strategy)
            return None if rate is None or unit.steps is None else rate * unit.steps
        if unit.kind == "prune":
            return self.prune_seconds(unit.model)
        if unit.kind == "collect":
            return self.collect_seconds(family_sizes)
        return 0.0  # import, report: seconds, not minutes

    def seconds_left(self, units: list[Unit], family_sizes: dict[str, int]) -> tuple[float, list[str]]:
        """``(seconds, what has no estimate yet)`` for the units not done."""
        known, unknown = 0.0, []
        for u in units:
            if not u.done:
                seconds = self.unit_seconds(u, family_sizes)
                if seconds is None:
                    unknown.append(UNKNOWN.get(u.kind, u.kind))
                else:
                    known += seconds
        return known, list(dict.fromkeys(unknown))

    def remaining(self, units: list[Unit], family_sizes: dict[str, int], head: str = "left") -> str:
        """One line, ``HEAD: what remains; about how long it should take``."""
        left = [u for u in units if not u.done]
        if not left:
            return "nothing left to run"
        parts = []
        for kind, label in (("train", "training run"), ("distill", "distillation"), ("import", "import"),
                            ("prune", "prune"), ("finetune", "fine-tuning run")):
            these = [u for u in left if u.kind == kind]
            if these:
                steps = sum(u.steps or 0 for u in these)
                parts.append(f"{len(these)} {label}{'s' if len(these) > 1 else ''}"
                             + (f" ({steps} steps)" if steps else ""))
        if any(u.kind == "collect" for u in left):
            parts.append(f"evaluating and timing {sum(family_sizes.values())} models")
        if any(u.kind == "report" for u in left):
            parts.append("the report")
        return f"{head}: {', '.join(parts)}; {self.estimate(units, family_sizes)}"

    def estimate(self, units: list[Unit], family_sizes: dict[str, int]) -> str:
        """``about 3 min 20 s (from ...)``, naming what is not estimated yet."""
        seconds, unknown = self.seconds_left(units, family_sizes)
        basis = ("seconds per step measured so far" if self.steps or self.finetunes
                 else "one timed training pass of each model")
        return (f"about {duration(seconds)}" + (f" + {', '.join(unknown)}" if unknown else "")
                + f" (from {basis})")
