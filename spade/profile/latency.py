"""Paired, interleaved latency measurement: wall and process CPU time per round.

Absolute times drift on a shared machine (other processes, frequency, caches), so
candidates are never timed one after the other. :class:`PairedRounds` first sizes a
block for each candidate (enough calls to last ``min_run_time``), then runs rounds: in
every round each candidate runs one block, back to back, in an order that rotates every
round so no candidate always follows the same one. Every candidate gets the same number
of blocks (one per round), and each block records its wall time (``time.perf_counter``)
and the CPU time of the whole process (``time.process_time``, all threads). CPU time
counts only while this process runs, so it is far less sensitive to other processes
than wall time. Speedups are then taken per round (:mod:`.stats`); more rounds can be
added later without breaking the pairing.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from ..progress import bar

METHOD = ("paired interleaved rounds: every round times one block of every candidate back to back (order rotated "
          "each round; block = calls lasting >= the minimum run time), wall time (perf_counter) and process CPU "
          "time (process_time) per block; speedup = median of the per-round ratios, with its order-statistics "
          "confidence interval")


@dataclass
class Timing:
    """Times of one candidate, seconds per call, one value per round."""

    number: int  #: calls per block
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def min(self) -> float:
        return min(self.wall)

    @property
    def iqr(self) -> float:
        if len(self.wall) < 2:
            return 0.0
        q = statistics.quantiles(self.wall, n=4, method="inclusive")
        return q[2] - q[0]

    def rounds(self, clock: str) -> list[float]:
        """Per-round times on ``clock`` (``wall`` or ``cpu``)."""
        return self.wall if clock == "wall" else self.cpu

    def to_json(self) -> dict:
        return {"median_ms": self.median * 1e3, "iqr_ms": self.iqr * 1e3, "min_ms": self.min * 1e3,
                "cpu_median_ms": self.cpu_median * 1e3, "runs": len(self.wall), "calls": self.number * len(self.wall),
                "round_ms": [t * 1e3 for t in self.wall], "round_cpu_ms": [t * 1e3 for t in self.cpu]}


def time_block(fn: Callable[[], object], number: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per call of ``number`` consecutive calls."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number, (time.process_time() - c0) / number


class PairedRounds:
    """Interleaved rounds over fixed candidates (module docstring); ``timings`` grows with
    every :meth:`run`."""

    def __init__(self, candidates: dict[str, Callable[[], object]], min_run_time: float = 0.3, warmup: int = 1):
        self.candidates = dict(candidates)
        self.names = list(candidates)
        self.done = 0
        for fn in self.candidates.values():
            for _ in range(warmup):
                fn()
        self.timings = {name: Timing(self._calls(fn, min_run_time)) for name, fn in self.candidates.items()}

    @staticmethod
    def _calls(fn: Callable[[], object], min_run_time: float) -> int:
        """Calls per block: one timed call sizes it."""
        once, _ = time_block(fn, 1)
        return max(1, math.ceil(min_run_time / max(once, 1e-9)))

    def run(self, rounds: int, tick: Callable[[], object] | None = None) -> dict[str, Timing]:
        """``rounds`` more rounds; ``tick()`` after every block (a progress bar's update)."""
        for _ in range(rounds):
            shift = self.done % len(self.names)
            for name in self.names[shift:] + self.names[:shift]:
                wall, cpu = time_block(self.candidates[name], self.timings[name].number)
                self.timings[name].wall.append(wall)
                self.timings[name].cpu.append(cpu)
                if tick is not None:
                    tick()
            self.done += 1
        return self.timings


def measure_interleaved(candidates: dict[str, Callable[[], object]], rounds: int = 5, min_run_time: float = 0.3,
                        warmup: int = 1, progress: bool = True) -> dict[str, Timing]:
    """Time every zero-argument callable in ``candidates`` in ``rounds`` paired rounds
    (``progress``: a bar over the blocks, candidates x rounds, on stderr)."""
    paired = PairedRounds(candidates, min_run_time, warmup)
    with bar(total=rounds * len(candidates), desc=f"timing {len(candidates)} candidate(s) x {rounds} rounds",
             unit="block", show=progress) as blocks:
        return paired.run(rounds, tick=blocks.update)
