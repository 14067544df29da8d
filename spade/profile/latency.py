"""Interleaved latency measurement with ``torch.utils.benchmark``.

Absolute times drift on a shared machine (other processes, frequency, caches), so
candidates are never timed one after the other: :func:`measure_interleaved` runs
``rounds`` rounds, and in every round each candidate gets one
``Timer.blocked_autorange(min_run_time)`` block (its block-size estimate doubles as a
warm-up after the switch from the previous candidate). The order rotates every round so
no candidate always follows the same one. Drift then hits all candidates alike, and the
ratio of two candidates' medians — with the spread of the per-round ratios and the
ratio of their fastest blocks, which :func:`ratio` also returns — is what can be trusted.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

from torch.utils.benchmark import Measurement, Timer

METHOD = ("torch.utils.benchmark.Timer.blocked_autorange; candidates interleaved round-robin (order rotated "
          "every round); median and IQR over all timed blocks")


@dataclass
class Timing:
    """Times of one candidate, in seconds per call."""

    times: list[float]  #: per-call time of every timed block
    calls: int  #: timed calls in all
    round_medians: list[float] = field(default_factory=list)  #: median of each round's block(s)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def iqr(self) -> float:
        if len(self.times) < 2:
            return 0.0
        q = statistics.quantiles(self.times, n=4, method="inclusive")
        return q[2] - q[0]

    def to_json(self) -> dict:
        return {"median_ms": self.median * 1e3, "iqr_ms": self.iqr * 1e3, "min_ms": self.min * 1e3,
                "runs": len(self.times), "calls": self.calls,
                "round_medians_ms": [t * 1e3 for t in self.round_medians]}


def measure_interleaved(candidates: dict[str, Callable[[], object]], threads: int, rounds: int = 5,
                        min_run_time: float = 0.3, warmup: int = 1) -> dict[str, Timing]:
    """Time every zero-argument callable in ``candidates``, interleaved (module docstring)."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    timers = {name: Timer(stmt="fn()", globals={"fn": fn}, label=name, num_threads=threads)
              for name, fn in candidates.items()}
    blocks: dict[str, list[Measurement]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            blocks[name].append(timers[name].blocked_autorange(min_run_time=min_run_time))
    out = {}
    for name, ms in blocks.items():
        merged = Measurement.merge(ms)[0]
        out[name] = Timing(times=list(merged.times), calls=sum(m.number_per_run * len(m.raw_times) for m in ms),
                           round_medians=[m.median for m in ms])
    return out


def ratio(reference: Timing, other: Timing) -> dict[str, float]:
    """How many times faster ``other`` is than ``reference``: the ratio of the medians,
    the lowest and highest per-round ratios, and the ratio of the fastest blocks (``min``:
    interference from other processes only adds time, so on a busy machine the minima
    are the steadier estimate)."""
    per_round = [a / b for a, b in zip(reference.round_medians, other.round_medians)]
    return {"speedup": reference.median / other.median, "low": min(per_round), "high": max(per_round),
            "min": reference.min / other.min}
