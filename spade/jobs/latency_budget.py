"""Pruning a model file to a latency budget: measure, plan widths, check the result.

The widths are planned from the latency table on the example measurement (eager, the
job's threads, glibc's allocator pinned; :func:`spade.prune.latency.plan_for`), and after
pruning the unpruned and pruned models are timed interleaved, so the record holds the
predicted and the measured latency side by side.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import require
from ..profile import allocator as alloc
from ..profile.conditions import load_average
from ..profile.latency import measure_interleaved
from ..profile.stats import paired_speedup
from ..prune.latency import BACKENDS, Plan, plan_for


@dataclass(frozen=True)
class LatencyTarget:
    """A latency budget: ``speedup`` over the unpruned model or ``ms`` per call."""

    speedup: float | None = None
    ms: float | None = None
    table: str | None = None  #: latency table file (read, extended, written back)
    threads: int = 1
    backend: str = "eager"
    rounds: int = 5  #: interleaved rounds of each timing
    min_run_time: float = 0.3

    def __post_init__(self):
        require((self.speedup is None) != (self.ms is None), "give one latency target: a speedup or milliseconds")
        require(self.speedup is None or self.speedup > 1, f"target speedup {self.speedup}: give a number > 1")
        require(self.ms is None or self.ms > 0, f"target {self.ms} ms: give a positive time")
        require(self.backend in BACKENDS, f"latency budgets are measured on {list(BACKENDS)} (got '{self.backend}')")
        require(isinstance(self.threads, int) and self.threads >= 1, f"threads = {self.threads!r}: give >= 1")


def _caller(model: nn.Module, physics, y: torch.Tensor):
    def run():
        with torch.inference_mode():
            return model(y, physics)
    return run


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class PlannedPrune:
    """A plan with the target it was made for."""

    target: LatencyTarget
    plan: Plan

    @property
    def widths(self) -> dict[str, int]:
        return self.plan.widths

    def measured(self, model: nn.Module, pruned: nn.Module, physics, y: torch.Tensor) -> dict:
        """The plan with both models timed interleaved: predicted vs measured (JSON)."""
        t = self.target
        with _threads(t.threads):
            timings = measure_interleaved({"unpruned": _caller(model.eval(), physics, y),
                                           "pruned": _caller(pruned.eval(), physics, y)},
                                          rounds=t.rounds, min_run_time=t.min_run_time)
        r = paired_speedup(timings["unpruned"].wall, timings["pruned"].wall)
        p = self.plan
        return {**p.to_json(), "target_speedup": t.speedup, "target_ms_asked": t.ms, "backend": t.backend,
                "threads": t.threads, "batch": int(y.shape[0]), "table": t.table,
                "allocator": alloc.configure("pinned").describe(), "load_average": load_average(),
                "predicted_speedup": p.full_ms / p.predicted_ms,
                "measured_unpruned_ms": timings["unpruned"].median * 1e3,
                "measured_ms": timings["pruned"].median * 1e3, "measured_speedup": r.median,
                "measured_speedup_range": [r.low, r.high]}


def planned_widths(target: LatencyTarget, model: nn.Module, physics, y: torch.Tensor, importance: str,
                   batches, seed: int) -> PlannedPrune:
    """Plan the widths that meet ``target`` (glibc's allocator pinned)."""
    alloc.configure("pinned")
    with _threads(target.threads):
        plan = plan_for(model, (y, physics), _caller(model.eval(), physics, y), target.threads, target.speedup,
                        target.ms, importance, batches, seed, target.table, target.backend, target.rounds,
                        target.min_run_time)
    return PlannedPrune(target, plan)
