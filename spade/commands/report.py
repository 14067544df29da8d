"""``spade report RUN [--out reports/NAME]``: tables, figures and an HTML page from results files."""
from __future__ import annotations

from ..report.render import write_report
from .common import add_json, emit_json, writes_output


def add_arguments(p):
    p.description = ("Read RUN/results.jsonl and RUN/samples (no model is run) and write "
                     "OUT/results.csv, OUT/summary.md, OUT/report.html (self-contained) and "
                     "OUT/figures/*.png.")
    p.add_argument("run_dir", metavar="RUN",
                   help="a run folder (results.jsonl, samples/: from 'spade profile/evaluate --out') or the output "
                        "folder of 'spade run'")
    p.add_argument("--out", help="report folder to write (default: report/ beside the results)")
    add_json(p)
    p.set_defaults(handler=run)


@writes_output(folder=lambda args: args.out)
def run(args) -> int:
    written = write_report(args.run_dir, args.out)
    if args.json:
        emit_json(written)
    else:
        print(f"wrote {written['out']}: {', '.join(written['files'])} "
              f"({written['records']} models, {written['rows']} rows)")
    return 0
