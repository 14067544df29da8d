"""``spade demo``: the packaged demo recipe on the embedded images (no download).

Trains small MRI (deep unfolding) and super-resolution (HQS) networks and their
recursive baselines, prunes them, fine-tunes with the three strategies on training
images, profiles and writes a report (``DIR/report/report.html``). The first line says
what it will run and about how long that takes (each model's training pass timed);
a line before every stage says what is left."""
from __future__ import annotations

from importlib import resources

from .common import add_device, add_json, add_progress, help_description, writes_output
from .run import run_recipe


def add_arguments(p):
    p.description = help_description(__doc__)
    p.add_argument("--out", default="spade-demo", help="run folder (default: spade-demo)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    add_progress(p)
    add_device(p)
    add_json(p)
    p.set_defaults(handler=run)


@writes_output(folder=lambda args: args.out)
def run(args) -> int:
    with resources.as_file(resources.files("spade") / "recipes" / "demo.toml") as recipe:
        return run_recipe(recipe, args.out, None, args)
