"""``spade export MODEL --onnx OUT``: a deployable ONNX file, verified against eager."""
from __future__ import annotations

import json

import torch

from ..errors import require
from ..fileio import atomic_path
from ..limits import check_input_size
from ..models import load_model
from ..profile.backends import Bound, verify
from ..profile.onnx_export import INPUT, OUTPUT, export_onnx, require_onnx, run_session, session
from ..profile.profiler import example_inputs
from .inputs import add_input_options
from .common import add_force, add_json, emit_json, writes_output

#: seeds of the example inputs the export is verified on (the first one is traced)
CHECK_SEEDS = (0, 1, 2)


def add_arguments(p):
    p.description = ("Export MODEL bound to its physics (input: measurements y, output: the "
                     "reconstruction x) to ONNX with the dynamo exporter, run it with ONNX Runtime "
                     "on example measurements and compare with PyTorch eager; nothing is written "
                     "unless the outputs agree. Input shapes are fixed to the example's.")
    p.add_argument("model", help="SPADE model file")
    p.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    add_input_options(p)
    add_force(p)
    add_json(p)
    p.set_defaults(handler=run)


@writes_output("onnx")
def run(args) -> int:
    check_input_size(args.batch, args.side)
    require(args.tolerance >= 0, f"tolerance must be >= 0 (got {args.tolerance})")
    require(str(args.onnx).endswith(".onnx"), f"output {args.onnx} should end in .onnx")
    onnx, _ = require_onnx()
    loaded = load_model(args.model)
    require(loaded.physics is not None, f"model file {args.model} stores no physics to bind into the export")
    inputs = example_inputs(loaded, args.batch, args.side, CHECK_SEEDS)
    bound = Bound(loaded.model, loaded.physics).eval()
    proto = export_onnx(bound, inputs[0])
    sess = session(proto, threads=torch.get_num_threads(), device=torch.device("cpu"))
    worst = verify(lambda v: run_session(sess, v), bound, inputs)
    require(worst <= args.tolerance,
            f"ONNX output differs from PyTorch by {worst:.3g} (tolerance {args.tolerance:g}): nothing written")
    onnx.helper.set_model_props(proto, {"spade_spec": json.dumps(loaded.spec),
                                        "spade_input_shape": json.dumps(list(inputs[0].shape))})
    with atomic_path(args.onnx) as tmp:
        onnx.save(proto, str(tmp))
    summary = {"model": args.model, "onnx": str(args.onnx), "input": INPUT, "output": OUTPUT,
               "input_shape": list(inputs[0].shape), "max_abs_error": worst, "tolerance": args.tolerance,
               "checked_inputs": len(inputs),
               "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))}
    if args.json:
        emit_json(summary)
    else:
        print(f"wrote {args.onnx}: input '{INPUT}' {tuple(inputs[0].shape)} -> output '{OUTPUT}'; "
              f"max |onnx - eager| / max(1, max |eager|) = {worst:.2e} on {len(inputs)} example inputs "
              f"(tolerance {args.tolerance:g})")
    return 0
