"""Pruning a model file to a latency budget: measure, plan depth and widths, check the result.

The widths are planned from the latency table on the example measurement (eager, the
job's threads, glibc's allocator pinned; :func:`spade.prune.latency.plan_for`). With
calibration data and ``depth`` on, the number of iterations is planned too: the model
without 0, 1, 2, ... of its iterations (the cheapest on the data, :func:`rank_units`),
each with the widths that meet the same target (up to the first depth that meets it with
every width kept), is pruned and its layers re-fitted, and the one with the best PSNR on
the calibration data is kept (and only then, with reconstruction, the iteration after
each removed one re-fitted, if that raises the PSNR on the calibration data). Afterwards
the unpruned and pruned models are timed interleaved, so the record holds the predicted
and the measured latency side by side.
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import SpadeError, require
from ..profile import allocator as alloc
from ..profile.conditions import load_average
from ..profile.latency import measure_interleaved
from ..profile.stats import paired_speedup
from ..progress import bar
from ..prune.depth import DepthResult, psnr_on, rank_units, remove_units, units_of
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
    depth: bool = True  #: plan the number of iterations too (needs calibration data)

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
    depth_search: dict | None = None  #: the depth candidates tried and the one kept (JSON)

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
        return {**p.to_json(), "depth_search": self.depth_search, "target_speedup": t.speedup,
                "target_ms_asked": t.ms, "backend": t.backend, "threads": t.threads, "batch": int(y.shape[0]), "table": t.table,
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


def _depth_counts(model: nn.Module, batches) -> tuple[list[int], DepthResult | None, str | None]:
    """Depths worth trying (0 first), the ranking of the units, or why only 0."""
    if batches is None:
        return [0], None, "no calibration data to rank and score iterations with"
    try:
        unit, total, interchangeable, _ = units_of(model)
    except SpadeError as exc:
        return [0], None, f"no iterations to remove ({exc})"
    if interchangeable:
        return [0], None, f"its {unit}s share one block (prune them with --ratio and --depth)"
    return list(range(total)), rank_units(model, batches), None


def plan_and_prune(target: LatencyTarget, model: nn.Module, physics, y: torch.Tensor, importance: str, batches,
                   seed: int, prune_to: Callable[[list[int] | None, dict[str, int], bool], tuple],
                   refit_units: bool = False):
    """Plan depth and widths for ``target`` (module docstring) and prune with
    ``prune_to(units to remove or None, widths, re-fit the unit after each removed one)
    -> (pruned, record)``; returns ``(pruned, record, PlannedPrune)``. With ``refit_units``
    the candidates are scored without that re-fit (the costliest part of a candidate; on
    MRI20 it moved the kept candidate's calibration PSNR by -0.09 to +0.03 dB, less than the
    steps between depths) and the one kept is pruned again with it (``psnr_refitted``),
    which is kept if it scores higher (``units_refitted``); ``psnr_kept``: the result's."""
    alloc.configure("pinned")
    with contextlib.ExitStack() as stack:
        if target.table is None:  # candidates share one table: cache it for this call
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            target = replace(target, table=str(Path(folder) / "table.json"))
        first = planned_widths(target, model, physics, y, importance, batches, seed)
        counts, ranking, why = _depth_counts(model, batches) if target.depth else ([0], None, "not asked")
        if len(counts) == 1:
            pruned, record = prune_to(None, first.widths, False)
            return pruned, record, PlannedPrune(target, first.plan, {"searched": False, "why": why})
        tried, best = [], None
        with bar(counts, desc="planning depth and widths", unit="depth") as depths:
            for d in depths:
                removed = sorted(ranking.removed[:d])
                plan = first.plan if d == 0 else _plan_without(target, model, removed, physics, y, importance,
                                                              batches, seed)
                if plan is None:
                    tried.append({"depth": d, "removed": removed, "plan": "cannot meet the target"})
                    continue
                pruned, record = prune_to(removed or None, plan.widths, False)
                score = psnr_on(pruned, batches)
                tried.append({"depth": d, "removed": removed, "predicted_speedup": plan.full_ms / plan.predicted_ms,
                              "psnr": score, "width_moves": len(plan.moves)})
                if best is None or score > best[0]:
                    best = (score, removed, pruned, record, plan)
                if not plan.moves:  # this depth meets the target with every width kept: deeper cuts only lose
                    break
        require(best is not None, "no depth meets the latency target: ask for less")
        score, removed, pruned, record, plan = best
        refitted_score, kept_refit = None, False
        if refit_units and removed:
            refitted, refitted_record = prune_to(removed, plan.widths, True)
            refitted_score = psnr_on(refitted, batches)
            kept_refit = refitted_score > score  # it matches one iteration's output: kept if the result gains
            if kept_refit:
                pruned, record, score = refitted, refitted_record, refitted_score
    search = {"searched": True, "unit": ranking.unit, "psnr_full": ranking.psnr_full, "chosen": len(removed),
              "tried": tried, "psnr_refitted": refitted_score, "units_refitted": kept_refit, "psnr_kept": score}
    return pruned, record, PlannedPrune(target, plan, search)


def _plan_without(target, model, removed, physics, y, importance, batches, seed) -> Plan | None:
    """The widths that bring the model without the ``removed`` units to the target (a
    speedup over ``model``, timed in the same run), or None when they cannot."""
    shallow = remove_units(model, removed)
    try:
        with _threads(target.threads):
            return plan_for(shallow, (y, physics), _caller(shallow.eval(), physics, y), target.threads,
                            target.speedup, target.ms, importance, batches, seed, target.table, target.backend,
                            target.rounds, target.min_run_time, reference=_caller(model.eval(), physics, y))
    except SpadeError:
        return None
