"""How far a set of paired timings can be trusted, and re-measuring until it can.

:func:`measure_trusted` runs paired rounds (:mod:`.latency`) and then, within a budget
of rounds:

* picks the **clock**: wall time, unless it is contaminated by other processes — the
  load average exceeds the CPUs, or the wall-time intervals are more than twice as wide
  as the CPU-time ones and too wide to use — then process CPU time, saying why;
* **re-measures** (more paired rounds, every candidate alike) while a speedup's interval
  is wider than ``max_spread`` of its median;
* checks every row's **plausibility** (:mod:`.stats`): a speedup whose interval lies above
  its MACs cut, or models of one architecture timed apart, are re-timed, and flagged when
  still implausible at the end of the budget; so is a speedup whose interval stays too wide.

With several threads on a loaded machine, OpenMP threads that spin while a peer is
preempted inflate wall *and* CPU time many times over; idle threads that sleep
(``OMP_WAIT_POLICY=PASSIVE``, read when torch loads) or one thread keep CPU time steady.
"""
from __future__ import annotations

import itertools
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from ..progress import bar
from .latency import PairedRounds, Timing
from .stats import Interval, beyond_macs, paired_speedup, twins_disagree

#: a speedup interval wider than this share of its median is measured again
#: how a flag for a wide interval starts (the report ranks such a row by its interval's lower
#: end: spade.report.readout.NOISY, kept equal by tests/test_profile_stats.py)
NOISY = "too noisy"
MAX_SPREAD = 0.10


@dataclass
class Verdict:
    """What :func:`measure_trusted` concluded."""

    clock: str  #: ``wall`` or ``cpu``: the clock every speedup uses
    reason: str  #: why that clock
    rounds: int  #: paired rounds in all (every candidate ran this many blocks)
    remeasured: list[str] = field(default_factory=list)  #: why rounds were added, in order
    flags: dict[str, list[str]] = field(default_factory=dict)  #: candidate -> implausibilities left
    cpu_share: float | None = None  #: median CPU time / wall time of the blocks (threads busy on average)

    def to_json(self) -> dict:
        return {"clock": self.clock, "reason": self.reason, "rounds": self.rounds, "remeasured": self.remeasured,
                "cpu_share": self.cpu_share}


def speedups(timings: dict[str, Timing], pairs: list[tuple[str, str]], clock: str) -> dict[tuple[str, str], Interval]:
    """Paired speedup of every ``(candidate, reference)`` pair on ``clock``."""
    return {(k, ref): paired_speedup(timings[ref].rounds(clock), timings[k].rounds(clock))
            for k, ref in pairs if k != ref}


def choose_clock(timings: dict[str, Timing], pairs: list[tuple[str, str]], load: float | None, cpus: int | None,
                 max_spread: float = MAX_SPREAD) -> tuple[str, str]:
    """``(clock, reason)``: ``cpu`` when wall time is contaminated (module docstring)."""
    if load is not None and cpus and load > cpus:
        return "cpu", f"load average {load} above the {cpus} CPUs: other processes inflate wall time"
    wall = [s.spread for s in speedups(timings, pairs, "wall").values()]
    cpu = [s.spread for s in speedups(timings, pairs, "cpu").values()]
    if wall and statistics.median(wall) > max_spread and statistics.median(wall) > 2 * statistics.median(cpu):
        return "cpu", (f"wall-time intervals ({statistics.median(wall):.0%} of the speedup) more than twice as wide "
                       f"as CPU-time ones ({statistics.median(cpu):.0%}): wall time is contaminated by other processes")
    return "wall", "wall time steady" + ("" if load is None else f" (load average {load} on {cpus} CPUs)")


def implausible(timings: dict[str, Timing], pairs: list[tuple[str, str]], macs: dict[str, int],
                twins: list[list[str]], clock: str) -> dict[str, list[str]]:
    """Candidate -> why its timing cannot be right: a speedup of one of ``pairs`` over its
    MACs cut, or a same-architecture twin timed apart (``twins``: groups of candidates of
    one architecture). Keys are ``NAME|BACKEND``."""
    out: dict[str, list[str]] = {}
    for (k, ref), s in speedups(timings, pairs, clock).items():
        if k.split("|")[-1] != ref.split("|")[-1]:  # another backend may beat eager at equal MACs
            continue
        why = beyond_macs(s, macs[ref] / macs[k]) if macs.get(k) else None
        if why:
            out.setdefault(k, []).append(why)
    for group in twins:
        for a, b in itertools.combinations(group, 2):
            s = paired_speedup(timings[a].rounds(clock), timings[b].rounds(clock))
            if twins_disagree(s):
                for x, y in ((a, b), (b, a)):
                    out.setdefault(x, []).append(f"same architecture as {y.split('|')[0]} but timed "
                                                 f"{s.median:.2f}x apart (interval {s.low:.2f}-{s.high:.2f})")
    return out


def measure_trusted(candidates: dict[str, Callable[[], object]], pairs: list[tuple[str, str]], macs: dict[str, int],
                    twins: list[list[str]], macs_pairs: list[tuple[str, str]] | None = None, rounds: int = 15, max_rounds: int | None = None,
                    max_spread: float = MAX_SPREAD, min_run_time: float = 1.0,
                    load: Callable[[], float | None] = lambda: None, cpus: int | None = None, threads: int = 1,
                    log: Callable[[str], None] = lambda msg: None,
                    progress: bool = True) -> tuple[dict[str, Timing], Verdict]:
    """Time ``candidates`` in paired rounds and re-measure within ``max_rounds`` (default
    3 x ``rounds``) until the speedups of ``pairs`` are narrow and plausible (module docstring);
    ``macs_pairs`` (default ``pairs``): those whose speedup the MACs cut bounds. ``progress``:
    a bar over the timed blocks (candidates x rounds, growing when re-measured) on stderr."""
    max_rounds = 3 * rounds if max_rounds is None else max(rounds, max_rounds)
    if not candidates:
        return {}, Verdict("wall", "nothing timed", 0)
    step = max(3, rounds // 2)
    paired = PairedRounds(candidates, min_run_time)
    n = len(candidates)
    with bar(total=rounds * n, desc=f"timing {n} candidate(s) x {rounds} rounds", unit="block",
             show=progress) as blocks:
        t0 = time.perf_counter()
        timings = paired.run(1, tick=blocks.update)
        per_round = time.perf_counter() - t0
        log(f"  one round takes {per_round:.1f} s: about {per_round * (rounds - 1):.0f} s more "
            f"(up to {per_round * (max_rounds - 1):.0f} s if re-measured)")
        timings = paired.run(rounds - 1, tick=blocks.update)
        remeasured = []
        while True:
            clock, reason = choose_clock(timings, pairs, load(), cpus, max_spread)
            wide = [k for (k, _), s in speedups(timings, pairs, clock).items() if s.spread > max_spread]
            flags = implausible(timings, pairs if macs_pairs is None else macs_pairs, macs, twins, clock)
            if (not wide and not flags) or paired.done >= max_rounds:
                break
            why = (f"implausible: {', '.join(sorted({k.split('|')[0] for k in flags}))}" if flags
                   else f"interval wider than {max_spread:.0%}: {', '.join(sorted({k.split('|')[0] for k in wide}))}")
            more = min(step, max_rounds - paired.done)
            log(f"  {more} more rounds ({why})")
            remeasured.append(f"+{more} rounds, {why}")
            # the bar grows with the re-measured rounds, so its time left stays honest
            blocks.total += more * n
            blocks.set_description(f"re-timing {n} candidate(s): round {paired.done + 1}-{paired.done + more} "
                                   f"of at most {max_rounds}", refresh=False)
            blocks.refresh()
            timings = paired.run(more, tick=blocks.update)
    for (k, ref), s in speedups(timings, pairs, clock).items():  # each noisy pair, with its own interval
        if s.spread > max_spread:
            flags.setdefault(k, []).append(f"{NOISY} against {ref.split('|')[0]}: interval {s.low:.2f}-{s.high:.2f} "
                                           f"is wider than {max_spread:.0%} of the speedup after {paired.done} rounds")
    if clock == "cpu" and threads > 1 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        reason += (f"; with {threads} threads a preempted thread makes the others spin and inflates CPU time "
                   "too: run with OMP_WAIT_POLICY=PASSIVE in the environment, or --threads 1")
    shares = [c / w for t in timings.values() for w, c in zip(t.wall, t.cpu) if w > 0]
    return timings, Verdict(clock, reason, paired.done, remeasured, flags,
                            statistics.median(shares) if shares else None)
