"""``spade demo``: the packaged demo recipe on the embedded images (no download).

Trains small MRI (deep unfolding) and super-resolution (HQS) networks and their
recursive baselines, prunes them, fine-tunes with the three strategies, profiles and
writes a report (``DIR/report/report.html``)."""
from __future__ import annotations

import contextlib
import sys
from importlib import resources

from ..pipeline import run_pipeline
from .common import add_device, add_json, device, emit_json


def add_parser(sub, name):
    p = sub.add_parser(name, help="run the demo pipeline on the embedded images (a few minutes on CPU)",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", default="spade-demo", help="run folder (default: spade-demo)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device(p)
    add_json(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    device(args.device)
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with resources.as_file(resources.files("spade") / "recipes" / "demo.toml") as recipe, quiet:
        # with --json, the stages' own lines go to stderr: stdout holds the JSON object only
        summary = run_pipeline(recipe, args.out, resume=args.resume, device=args.device,
                               progress=not args.no_progress, log=print)
    if args.json:
        emit_json(summary)
    else:
        print(f"done: {summary['models']} models; open {summary['report']}/report.html")
    return 0
