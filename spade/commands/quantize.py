"""``spade quantize MODEL --data D --out Q.onnx``: INT8 priors, float physics, scored and timed."""
from __future__ import annotations

import os

from ..profile.quantize import quantize_file
from .common import add_force, add_json, add_progress, emit_json, log_line, positive_float, positive_int, writes_output


def add_arguments(p):
    p.description = ("Export a SPADE model to ONNX and quantize the convolutions of its priors to "
                     "INT8 with ONNX Runtime, calibrated on measurements of --data taken with the "
                     "model's physics; the physics stays in float. Scores float vs INT8 on --eval and "
                     "times float eager, float / INT8 ONNX Runtime (and --reference eagerly) "
                     "interleaved.")
    p.add_argument("model", help="SPADE model file")
    p.add_argument("--data", required=True, help="calibration images: a folder, 'embedded' or a benchmark set")
    p.add_argument("--eval", help="evaluation images (PSNR/SSIM float vs INT8 under the model's protocol)")
    p.add_argument("--out", required=True, help="the INT8 ONNX file to write (.onnx)")
    p.add_argument("--samples", type=positive_int, default=8, help="calibration images (default 8)")
    p.add_argument("--reference", help="model timed eagerly as the speed reference (e.g. the unpruned model)")
    p.add_argument("--side", type=positive_int, help="image side for size-free operators (default: CS 264)")
    p.add_argument("--threads", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="torch / ONNX Runtime threads (default: 2, or fewer CPUs)")
    p.add_argument("--rounds", type=positive_int, default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--min-run-time", type=positive_float, default=0.5, help="seconds per timed block (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the measurement noise (default 0)")
    add_force(p)
    add_json(p)
    add_progress(p)
    p.set_defaults(handler=run)


@writes_output(inputs=("model", "reference"))
def run(args) -> int:
    result = quantize_file(args.model, args.data, args.out, eval_data=args.eval, samples=args.samples,
                           threads=args.threads, side=args.side, reference=args.reference, rounds=args.rounds,
                           min_run_time=args.min_run_time, seed=args.seed,
                           log=log_line)
    if args.json:
        emit_json(result)
    else:
        _print(result)
    return 0


def _print(r: dict) -> None:
    la = r["load_average"]
    print(f"wrote {r['out']}: {r['quantized_convs']} convolutions in INT8 ({r['format']}); calibrated on "
          f"{len(r['calibration']['images'])} image(s) of {r['calibration']['data']}")
    ev = r["evaluation"]
    if ev:
        print(f"  {ev['protocol']} on {len(ev['images'])} image(s) of {ev['data']}: PSNR {ev['float']['psnr']:.2f} dB "
              f"float -> {ev['int8']['psnr']:.2f} dB INT8 ({ev['psnr_loss_db']:+.3f} dB lost), SSIM "
              f"{ev['float']['ssim']:.4f} -> {ev['int8']['ssim']:.4f}")
    clock = r["clock"]
    print(f"  timed interleaved, input {r['input_shape']}, {r['threads']} thread(s), load average {la['before']} / "
          f"{la['after']} on {la['cpus']} CPUs, on {clock['clock']} time ({clock['reason']}); speedups against "
          f"{r['baseline']} and {r['onnx_baseline']} (median per-round ratio, 95% interval):")
    keys = ["speedup_vs_" + b.replace(" ", "_") + "_" for b in (r["baseline"], r["onnx_baseline"])]
    for name, t in r["timings"].items():
        against = "  ".join(f"{t[k + 'speedup']:>5.2f}x ({t[k + 'low']:.2f}-{t[k + 'high']:.2f})" for k in keys)
        print(f"    {name:<22} {t['median_ms']:>9.2f} ms  {against}")
