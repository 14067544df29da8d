"""``spade run RECIPE.toml [--out DIR] [--resume]``: the whole pipeline from one recipe."""
from __future__ import annotations

import contextlib
import sys

from pathlib import Path

from ..pipeline import run_pipeline
from ..progress import write
from .common import add_device, add_json, add_progress, device, emit_json, writes_output


def add_arguments(p):
    p.description = ("Run a pipeline recipe stage by stage (see spade.pipeline.recipe for the "
                     "format). Outputs go to DIR; a killed run continues with --resume.")
    p.add_argument("recipe", help="the pipeline recipe (TOML)")
    p.add_argument("--out", help="run folder (default: runs/RECIPE-NAME)")
    p.add_argument("--report", help="report folder (default: the recipe's [report] out, else DIR/report)")
    p.add_argument("--resume", action="store_true", help="continue the run in DIR where it stopped")
    add_progress(p)
    add_device(p)
    add_json(p)
    p.set_defaults(handler=run)


def run_dir(args) -> Path:
    return Path(args.out or Path("runs") / Path(args.recipe).stem)


@writes_output(folder=run_dir)
def run(args) -> int:
    return run_recipe(args.recipe, run_dir(args), args.report, args)


def run_recipe(recipe, out, report, args) -> int:
    """Run ``recipe`` into ``out`` with the common flags of ``args`` (resume, device,
    progress, json) and print the outcome."""
    device(args.device)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        # with --json, the stages' own lines go to stderr: stdout holds the JSON object only; the
        # lines are written past the progress bars (stderr) without tearing them
        summary = run_pipeline(recipe, out, resume=args.resume, report=report, device=args.device,
                               progress=not args.no_progress, log=write)
    if args.json:
        emit_json(summary)
    else:
        print(f"done: {summary['models']} models; open {summary['report']}/report.html")
    return 0
