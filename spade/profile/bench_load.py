"""Speedups under load: does the profiler stay right, or say that it is not?

``python -m spade.profile.bench_load BASE.spade PRUNED.spade [--load N] [--out FILE]``

Times, with :func:`spade.profile.profile_models`,

1. BASE against PRUNED on a quiet machine (the reference figure);
2. BASE against a byte-identical copy of itself while N background processes (started and
   stopped here, default: one per CPU) keep the CPUs busy — the speedup must come out at
   1 within its interval;
3. BASE against PRUNED under the same load — within 10 % of the quiet figure, or flagged.

and prints one line per case (speedup, interval, clock used and why, rounds, flags), with
the whole profile of every case as JSON in ``--out``. The machine's other work is not
controlled: "quiet" means without the processes started here.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .conditions import load_average
from .profiler import profile_models


def _spin() -> None:  # pragma: no cover - runs in the loader processes
    while True:
        pass


@contextmanager
def cpu_load(processes: int):
    """``processes`` busy-looping processes for the duration of the block, then stopped."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_spin, daemon=True) for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0)  # let them reach the CPUs
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


def case(name: str, models: list[str], settings: dict, expected: float | None) -> dict:
    """Profile ``models`` (baseline first); the second model's speedup and verdict."""
    t0 = time.perf_counter()
    result = profile_models(models, **settings)
    other = result["models"][1]
    low, high = other["speedup_ci"]
    return {"case": name, "expected": expected, "speedup": other["speedup"], "ci": [low, high],
            "covers_expected": None if expected is None else low <= expected <= high, "clock": result["timing"]["clock"],
            "reason": result["timing"]["reason"], "rounds": result["timing"]["rounds"],
            "wall_speedup": result["models"][0]["median_ms"] / other["median_ms"],
            "flags": other["flags"], "load_average": load_average(), "seconds": time.perf_counter() - t0,
            "profile": result}


def line(r: dict) -> str:
    flags = f"; FLAGGED: {'; '.join(r['flags'])}" if r["flags"] else ""
    expected = "" if r["expected"] is None else (
        f"; expected {r['expected']:.3f}x: {'inside' if r['covers_expected'] else 'OUTSIDE'} the interval")
    return (f"{r['case']:<26} speedup {r['speedup']:.3f}x [{r['ci'][0]:.3f}-{r['ci'][1]:.3f}] "
            f"(ratio of wall medians {r['wall_speedup']:.3f}x{expected}) clock {r['clock']} ({r['reason']}); "
            f"{r['rounds']} rounds, {r['seconds']:.0f} s, load average after {r['load_average']}{flags}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m spade.profile.bench_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="unpruned model file")
    ap.add_argument("pruned", help="pruned model file")
    ap.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes (default: one per CPU)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--side", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--max-rounds", type=int, default=None)
    ap.add_argument("--min-run-time", type=float, default=0.5)
    ap.add_argument("--out", help="write every case's result and profile as JSON here")
    args = ap.parse_args(argv)
    settings = {"threads": args.threads, "side": args.side, "rounds": args.rounds, "max_rounds": args.max_rounds,
                "min_run_time": args.min_run_time, "log": lambda m: print(m, file=sys.stderr, flush=True)}
    with tempfile.TemporaryDirectory() as tmp:
        twin = Path(tmp) / f"{Path(args.base).stem}-copy.spade"
        shutil.copy(args.base, twin)
        quiet = case("pruned, quiet", [args.base, args.pruned], settings, expected=None)
        with cpu_load(args.load):
            same = case(f"identical copy, load {args.load}", [args.base, str(twin)], settings, expected=1.0)
            loaded = case(f"pruned, load {args.load}", [args.base, args.pruned], settings, expected=quiet["speedup"])
    for r in (quiet, same, loaded):
        print(line(r))
    off = abs(loaded["speedup"] / quiet["speedup"] - 1)
    verdict = ("flagged" if loaded["flags"] or quiet["flags"] else
               "within 10%" if off <= 0.10 else "NOT within 10% and not flagged")
    print(f"pruned under load vs quiet: {off:.1%} apart ({verdict})")
    if args.out:
        Path(args.out).write_text(json.dumps([quiet, same, loaded], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
