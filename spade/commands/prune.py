"""``spade prune MODEL --ratio R --out PRUNED``: a smaller model file with the physics intact."""
from __future__ import annotations

import argparse

from ..errors import require
from ..jobs import PruneJob, prune_file
from ..jobs.latency_budget import LatencyTarget
from ..prune import CRITERIA
from ..prune.api import SCOPES
from .common import (add_device, add_force, add_json, add_progress, device, emit_json, positive_int, shorten,
                     writes_output)


def add_arguments(p):
    p.description = ("Prune a SPADE model file: remove a fraction of the channels of its CNN priors "
                     "(and optionally whole iterations) while every channel tied to the physics keeps "
                     "its width; write a smaller model file.")
    p.add_argument("model", help="SPADE model file, or MODULE:FUNCTION: a function of yours returning "
                                 "(model, example_inputs), whose pruned copy is written as weights + pruning history "
                                 "(spade.save_pruned) and used as MODULE:FUNCTION@OUT; MODULE:FUNCTION@FILE prunes "
                                 "such a file further")
    p.add_argument("--ratio", type=float, help="fraction of prunable channels to remove, in [0, 1)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--target-speedup", type=float, metavar="S",
                        help="instead of --ratio: choose per-group widths (and, with --data, how many iterations "
                             "to keep) from a measured latency table so the pruned model runs S times faster "
                             "(spade.prune.latency)")
    budget.add_argument("--target-ms", type=float, metavar="T", help="instead of --ratio: a budget of T ms per call")
    p.add_argument("--latency-table", metavar="FILE",
                   help="latency table to read and extend (cached per CPU, backend, threads, torch version)")
    p.add_argument("--widths-only", action="store_true",
                   help="with a latency target: keep every iteration and plan the widths alone")
    p.add_argument("--threads", type=positive_int, default=1, help="threads the latency budget is measured with "
                                                                   "(default 1)")
    p.add_argument("--importance", default="l1", help=f"channel criterion: {', '.join(CRITERIA)} (default l1)")
    p.add_argument("--scope", default="uniform", help=f"{' or '.join(SCOPES)}: every group loses the same "
                                                       "fraction, or channels ranked jointly (default uniform)")
    p.add_argument("--prune-steps", type=positive_int, default=1, metavar="N",
                   help="prune in N steps, re-scoring between (default 1)")
    p.add_argument("--round-to", type=positive_int, default=None, help="round kept widths to a multiple of N")
    p.add_argument("--depth", type=positive_int, default=None, help="also remove K unrolled iterations/stages")
    p.add_argument("--data", help="images measured with the model's physics for taylor/hessian and --depth: a "
                                  "folder, 'embedded', 'embedded-mri' or a benchmark set")
    p.add_argument("--samples", type=positive_int, default=4, help="images of --data to use (default 4)")
    p.add_argument("--crop", type=positive_int, default=None,
                   help="centre-crop the --data images to at most N x N pixels before measuring them (keeps "
                        "ranking and reconstruction cheap on large training images)")
    p.add_argument("--reconstruct", action=argparse.BooleanOptionalAction, default=None,
                   help="re-fit the pruned layers so that their outputs match the unpruned model's on the --data "
                        "measurements (closed-form least squares, no labels; after --depth, the iteration after "
                        "each removed one is re-fitted to the unpruned one's output; default: on when --data is "
                        "given)")
    p.add_argument("--depth-refit", action=argparse.BooleanOptionalAction, default=None,
                   help="re-fit the iteration after each removed one (L-BFGS on its own parameters) to the "
                        "unpruned one's output on the --data measurements (default: as --reconstruct); "
                        "--reconstruct --no-depth-refit re-fits the pruned layers only")
    p.add_argument("--ridge", type=float, default=1e-3, help="ridge of the re-fit, relative (default 1e-3)")
    p.add_argument("--protect", nargs="+", default=[], metavar="NAME",
                   help="modules or parameters (dotted names) whose channels must stay")
    p.add_argument("--seed", type=int, default=0, help="seed of the measurement noise and of 'random' (default 0)")
    p.add_argument("--out", required=True, help="the pruned model file to write")
    add_force(p)
    add_device(p)
    add_json(p)
    add_progress(p)
    p.set_defaults(handler=run)


@writes_output()
def run(args) -> int:
    budgeted = args.target_speedup is not None or args.target_ms is not None
    require(budgeted != (args.ratio is not None), "give --ratio R or a latency target (--target-speedup S or "
                                                   "--target-ms T), not both")
    require(budgeted or (args.latency_table is None and not args.widths_only),
            "--latency-table and --widths-only go with --target-speedup or --target-ms")
    latency = LatencyTarget(args.target_speedup, args.target_ms, args.latency_table, args.threads,
                            depth=not args.widths_only) if budgeted else None
    job = PruneJob(args.model, args.out, args.ratio or 0.0, latency=latency, importance=args.importance,
                   scope=args.scope, steps=args.prune_steps, round_to=args.round_to, depth=args.depth, data=args.data,
                   samples=args.samples, crop=args.crop, reconstruct=args.reconstruct,
                   depth_refit=args.depth_refit, ridge=args.ridge,
                   protect=tuple(args.protect), seed=args.seed)
    summary = prune_file(job, device(args.device))
    if args.json:
        emit_json(summary)
    else:
        _print(summary)
    return 0


def _print(s: dict) -> None:
    st = s["settings"]
    how = "widths from a latency plan" if s.get("latency_plan") else f"{st['scope']}, ratio {st['ratio']}"
    print(f"wrote {s['out']}: {st['criterion']}, {how}"
          + (f", round to {st['round_to']}" if st["round_to"] else "")
          + (f", {len(s['depth']['removed'])} {s['depth']['unit']}(s) removed: {s['depth']['removed']}"
             if s["depth"] else "")
          + f" in {s['seconds']:.2f} s")
    print(f"  params {s['params_before']:,} -> {s['params_after']:,} ({s['params_after'] / s['params_before']:.1%})"
          f"   MACs {s['macs_before'] / 1e9:.3f} G -> {s['macs_after'] / 1e9:.3f} G "
          f"({s['macs_after'] / max(s['macs_before'], 1):.1%}) for one {'x'.join(map(str, s['macs_image'])) or 'example'} input")
    plan = s.get("latency_plan")
    if plan:
        print(f"  latency plan ({plan['backend']}, {plan['threads']} thread(s)): predicted {plan['predicted_ms']:.1f} ms "
              f"({plan['predicted_speedup']:.2f}x), measured {plan['measured_ms']:.1f} ms vs "
              f"{plan['measured_unpruned_ms']:.1f} ms unpruned ({plan['measured_speedup']:.2f}x, 95% interval "
              f"{plan['measured_speedup_range'][0]:.2f}-{plan['measured_speedup_range'][1]:.2f})")
        search = plan.get("depth_search") or {}
        if search.get("searched"):
            tried = ", ".join(f"{t['depth']}: {t['psnr']:.2f} dB" if "psnr" in t else f"{t['depth']}: -"
                              for t in search["tried"])
            refitted = "" if search.get("psnr_refitted") is None else (
                f" (re-fitting the {search['unit']} after each removed one: {search['psnr_refitted']:.2f} dB, "
                + ("kept)" if search["units_refitted"] else "not kept)"))
            print(f"  {search['unit']}s removed -> PSNR on the calibration data (unpruned {search['psnr_full']:.2f} "
                  f"dB): {tried}; kept {search['chosen']}{refitted}")
        elif search:
            print(f"  widths only: {search['why']}")
    if s.get("load_as"):
        print(f"  load it as {s['load_as']} (spade profile, evaluate, finetune, prune) or with spade.load_pruned")
    changed = {g: w for g, w in s["groups"].items() if w[0] != w[1]}
    if s["reconstruct"]:
        r = s["reconstruct"]
        errors = list(r["layers"].values())
        mean = [sum(e[i] for e in errors) / max(len(errors), 1) for i in (0, 1)]
        print(f"  reconstructed {len(errors)} layer(s) on {r['samples']} calibration sample(s) in {r['seconds']:.1f} s: "
              f"mean relative output error {mean[0]:.4f} -> {mean[1]:.4f}"
              + (f"; not re-fitted: {', '.join(r['skipped'])}" if r["skipped"] else ""))
    refit = (s["depth"] or {}).get("refit")
    if refit:
        fits = "; ".join(f"{k}: {e[0]:.4f} -> {e[1]:.4f}" for k, e in refit["units"].items() if e)
        print(f"  re-fitted the {s['depth']['unit']}(s) after removed ones on {refit['samples']} calibration sample(s) "
              f"in {refit['seconds']:.1f} s: " + (f"relative output error {fits}" if fits else refit["skipped"] or "none"))
    print(f"  {len(changed)} group(s) of layers pruned, {len(s['interfaces'])} kept at full width:")
    for group, reason in s["interfaces"].items():
        print(f"    {shorten(group, 70)}: {reason}")
