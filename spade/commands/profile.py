"""``spade profile MODEL [MODEL ...]``: latency, speedups and cost, measured interleaved."""
from __future__ import annotations

import os

from ..errors import SpadeError, require
from ..models import is_factory
from ..profile import BACKENDS, breakdown, profile_models
from ..prune import load_own
from ..report.runfolder import add_profile
from .inputs import add_input_options
from .common import (add_device, add_json, add_progress, device, emit_json, log_line, positive_float, shorten,
                     writes_output)


def add_arguments(p):
    p.description = ("Time model files on the same example input, interleaved in one run, and "
                     "report median/IQR latency, speedups against the baseline and the recursive "
                     "model of the same family, MACs, parameters and peak memory. Every backend's "
                     "output is checked against eager before its time is reported.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="SPADE model files, or your own network as MODULE:FUNCTION (a function returning (model, "
                        "example_inputs), timed on its first example input) and MODULE:FUNCTION@FILE (that network "
                        "pruned or fine-tuned into FILE by spade prune / spade finetune)")
    p.add_argument("--baseline", help="model the speedups are measured against (default: the first)")
    p.add_argument("--recursive", help="recursive reference (default: the recursive model of each family)")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help=f"{', '.join(BACKENDS)} or all; repeat or separate by commas (default: eager)")
    add_input_options(p)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="torch / ONNX Runtime threads (default: 2, or fewer CPUs)")
    p.add_argument("--rounds", type=int, default=15, help="paired interleaved rounds (default 15)")
    p.add_argument("--max-rounds", type=int,
                   help="rounds in all while speedup intervals are too wide or implausible (default: 3 x --rounds)")
    p.add_argument("--min-run-time", type=positive_float, default=1.0,
                   help="seconds per timed block (default 1: several calls even for slow models)")
    p.add_argument("--breakdown", action="store_true",
                   help="time per part instead (torch.profiler, eager): convs by width, physics, element-wise "
                        "glue, layout; with the Amdahl ceilings (spade.profile.breakdown)")
    p.add_argument("--allocator", default="pinned",
                   help="glibc allocator: pinned (mallopt thresholds raised; the default) or default")
    p.add_argument("--out", metavar="DIR",
                   help="also add the results to run folder DIR (created if missing) for 'spade report DIR'")
    add_device(p)
    add_json(p)
    add_progress(p)
    p.set_defaults(handler=run)


def _backends(values: list[str] | None) -> list[str]:
    names = [n.strip() for v in (values or ["eager"]) for n in v.split(",") if n.strip()]
    return names or ["eager"]


@writes_output(folder=lambda args: args.out)
def run(args) -> int:
    if args.breakdown:
        return _run_breakdown(args)
    dev = device(args.device)
    own = {m: load_own(m, dev) for m in dict.fromkeys([*args.models, args.baseline, args.recursive])
           if m is not None and is_factory(m)}
    result = profile_models([own.get(m, m) for m in args.models], backends=_backends(args.backend),
                            batch=args.batch, threads=args.threads, side=args.side, device=dev,
                            baseline=own.get(args.baseline, args.baseline),
                            recursive=own.get(args.recursive, args.recursive), rounds=args.rounds,
                            min_run_time=args.min_run_time,
                            allocator=args.allocator, tolerance=args.tolerance, max_rounds=args.max_rounds,
                            log=log_line)
    if args.out:
        add_profile(args.out, result)
    if args.json:
        emit_json(result)
    else:
        print(render_text(result))
    failed = [e for e in result["models"] if e["status"] != "ok"]
    if failed:  # reported with the results above; the run still did not measure all it was asked to
        first = failed[0]
        raise SpadeError(f"backend {first['backend']} failed for {first['name']}: {first['error']}"
                         + (f" (and {len(failed) - 1} more failed backend run(s))" if len(failed) > 1 else ""))
    return 0


def _run_breakdown(args) -> int:
    require(_backends(args.backend) == ["eager"] and device(args.device).type == "cpu",
            "--breakdown profiles PyTorch eager on the CPU: drop --backend / --device")
    require(not args.out, "--breakdown writes no run folder: drop --out (or profile without --breakdown)")
    require(not any(is_factory(m) for m in args.models),
            "--breakdown splits a SPADE model file's time into its physics and priors: profile MODULE:FUNCTION "
            "models without --breakdown")
    result = breakdown.breakdown_models(args.models, batch=args.batch, threads=args.threads, side=args.side,
                                        rounds=args.rounds, min_run_time=args.min_run_time, allocator=args.allocator,
                                        log=log_line)
    if args.json:
        emit_json(result)
    else:
        print(breakdown.render_text(result))
    return 0


def _ratio(e: dict, prefix: str) -> str:
    if e[prefix] is None:
        return "-"
    low, high = e[f"{prefix}_ci"]
    return f"{e[prefix]:.2f}x [{low:.2f}-{high:.2f}]"


def _load_warning(la: dict) -> list[str]:
    worst = max((v for v in (la["before"], la["after"]) if v is not None), default=None)
    if worst is None or not la["cpus"] or worst <= la["cpus"]:
        return []
    return [f"warning: the load average ({worst}) exceeds the {la['cpus']} CPUs: absolute times are inflated and "
            "noisy; trust the paired speedups within their intervals"]


def render_text(result: dict) -> str:
    """The profile as a table plus its measurement conditions."""
    v, la, t = result["versions"], result["load_average"], result["timing"]
    lines = [f"batch {result['batch']}, threads {result['threads']}, device {result['device']} ({result['hardware']}), "
             + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"allocator: {result['allocator']['description']}",
             f"load average: {la['before']} before, {la['after']} after, on {la['cpus']} CPUs "
             "(other processes compete for the CPUs when it exceeds their number)",
             f"timing: {result['timer']['method']}; {t['rounds']} rounds, >= "
             f"{result['timer']['min_run_time_s']:g} s per block; speedups against {result['baseline']} "
             "(same backend; 'vs base eager': against the baseline run eagerly): median per-round ratio "
             f"[{result['timer']['confidence']:.0%} interval]",
             f"speedups use {t['clock']} time: {t['reason']}",
             *[f"re-measured: {why}" for why in t["remeasured"]],
             *_load_warning(la),
             f"checked: max |backend - eager| <= {result['tolerance']:g} x max(1, max |eager|) on two inputs",
             f"MACs: {result['macs_counter']}", f"peak memory: {result['peak_memory']}", ""]
    several = len({e["backend"] for e in result["models"]}) > 1
    lines.append(f"{'model':<18} {'role':<9} {'backend':<13} {'median ms':>10} {'IQR ms':>8} {'min ms':>9} "
                 f"{'runs':>4}  {'speedup [interval]':<22} {'vs recursive [interval]':<23} "
                 + ("vs base eager " if several else "")
                 + f"{'params':>9} {'GMACs':>7} {'peak MB':>8} {'faults/call':>11}")
    failed, flagged = [], []
    for e in result["models"]:
        head = f"{shorten(e['name'], 18):<18} {e['role']:<9} {e['backend']:<13}"
        cost = f"{e['params']:>9,} {e['macs'] / 1e9:>7.3f} {e['peak_mem_mb']:>8.1f}"
        if several:
            vs_eager = e["speedup_vs_baseline_eager"]
            cost = ("-" if vs_eager is None else f"{vs_eager:.2f}x").ljust(13) + " " + cost
        if e["status"] != "ok":
            lines.append(f"{head} {'FAILED':>10} {'':>8} {'':>9} {'':>4}  {'-':<22} {'-':<23} {cost}")
            failed.append(f"  {e['name']} on {e['backend']}: {e['error']}")
            continue
        faults = "-" if e["page_faults_per_call"] is None else f"{e['page_faults_per_call']:.0f}"
        lines.append(f"{head} {e['median_ms']:>10.2f} {e['iqr_ms']:>8.2f} {e['min_ms']:>9.2f} {e['runs']:>4}  "
                     f"{_ratio(e, 'speedup'):<22} {_ratio(e, 'speedup_vs_recursive'):<23} {cost} {faults:>11}")
        flagged += [f"  {e['name']} on {e['backend']}: {why}" for why in e["flags"]]
    refs = sorted({e["recursive"] for e in result["models"] if e["recursive"]})
    if refs:
        lines.append(f"recursive reference(s): {', '.join(refs)}")
    if flagged:
        lines += ["IMPLAUSIBLE after re-timing (do not trust these rows):"] + flagged
    if failed:
        lines += ["failed backends (no time reported):"] + failed
    return "\n".join(lines)
