"""Write a report from a run directory: CSV, Markdown, figures and one HTML page.

``write_report(RUN_DIR, OUT)`` reads the results files only (no model is run) and
writes, atomically::

    OUT/results.csv      one row per model (x ratio x strategy) and backend
    OUT/summary.md       what this means, conditions, tables per task, the figures
    OUT/report.html      the same page, self-contained (figures embedded as base64 PNG)
    OUT/figures/*.png    pareto, widths, speedup_vs_macs, breakdown (when the records hold
                         one), samples-N (one per task)

Both pages come from one jinja2 template each (``templates/``): HTML autoescaped, the
Markdown through the :func:`md` filter on every value, so names and titles from a
results folder can never inject markup.
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import jinja2
from matplotlib.figure import Figure

from ..errors import require
from ..fileio import atomic_path
from . import figures, readout
from .results import RESULTS, read_records, read_run_info
from .tables import frame

#: (file stem, caption) of the figures every report has, in report order; samples follow, one per task
FIGURES = (("pareto", "PSNR vs latency: unpruned, pruned × strategy and recursive models, with the Pareto front"),
           ("widths", "Per-layer widths before and after pruning"),
           ("speedup_vs_macs", "Measured speedup vs MACs cut, under the physical limit"))
BREAKDOWN_CAPTION = ("Where one eager call's time goes: the priors' convolutions, the physics, element-wise glue, "
                     "layout and Python, for unpruned, pruned and recursive models side by side (profiled with "
                     "[profile] breakdown = true); pruning shrinks the convolutions only")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#!{}])")


def md(value) -> str:
    """``value`` as literal Markdown text: HTML escaped, Markdown punctuation backslashed,
    on one line."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


_ENV = {"html": jinja2.Environment(loader=jinja2.PackageLoader("spade.report", "templates"), autoescape=True,
                                   undefined=jinja2.StrictUndefined),
        "md": jinja2.Environment(loader=jinja2.PackageLoader("spade.report", "templates"), autoescape=False,
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True)}
_ENV["md"].filters["md"] = md


def _png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def resolve_run(path: str | Path) -> Path:
    """The folder holding ``results.jsonl``: ``path`` itself, or the ``results/`` of a
    ``spade run`` output folder."""
    path = Path(path)
    if not (path / RESULTS).is_file() and (path / "results" / RESULTS).is_file():
        return path / "results"
    return path


def _check_out(out: Path, run_dir: Path) -> None:
    out_r, run_r = out.resolve(), run_dir.resolve()
    require(out_r != run_r and out_r not in run_r.parents,
            f"report folder {out} would replace the run directory {run_dir}: choose another --out")
    if out.exists():
        require(out.is_dir() and ((out / "report.html").is_file() or not any(out.iterdir())),
                f"{out} exists and is not a SPADE report: choose a new or empty folder for --out")


def context(records: list[dict], df, info: dict, figs: list[dict]) -> dict:
    """Everything both templates show."""
    conventions = {r["evaluation"]["protocol"]: r["evaluation"].get("convention", "")
                   for r in records if r.get("evaluation")}
    tasks = []
    for (dataset, protocol), g in readout.groups(df):
        n = g["n_images"].dropna()
        tasks.append({"dataset": dataset, "protocol": protocol, "convention": conventions.get(protocol, ""),
                      "n_images": int(n.max()) if len(n) else None,
                      "rows": [readout.row(r) for _, r in g.iterrows()],
                      "test_time": readout.TEST_TIME_NOTE if (g["finetune_data"] == "test").any() else None,
                      "int8": readout.int8_note(g),
                      "failed": [(r["model"], r["backend"], r["error"]) for _, r in g[g["status"] == "failed"].iterrows()]})
    method = ("Speedups: each round times every model back to back (order rotated), the speedup is the median of the "
              "per-round ratios, shown with its 95% order-statistics interval; every model gets the same rounds; "
              "latency is the median wall time per call ± half its interquartile range.")
    return {"title": info["title"], "notes": info["notes"], "trust": readout.trust(records),
            "findings": readout.findings(df), "conditions": readout.conditions(records), "method": method,
            "start_note": readout.START_NOTE, "tasks": tasks, "headers": readout.HEADERS, "figures": figs}


def write_report(run_dir: str | Path, out: str | Path | None = None) -> dict:
    """Render the report of ``run_dir`` (or of the ``spade run`` folder holding it) into
    ``out`` (default: ``report/`` beside the results); returns what it wrote."""
    run_dir = resolve_run(run_dir)
    records = read_records(run_dir)
    out = Path(out) if out is not None else run_dir.parent / "report" if run_dir.name == "results" \
        else run_dir / "report"
    _check_out(out, run_dir)
    info = read_run_info(run_dir)
    df = frame(records)
    drawn = [(key, caption, fig) for key, caption, fig in (
        ("pareto", FIGURES[0][1], figures.pareto(df)), ("widths", FIGURES[1][1], figures.widths(records)),
        ("speedup_vs_macs", FIGURES[2][1], figures.speedup_vs_macs(df)))]
    parts = figures.breakdown(records)
    if parts is not None:
        drawn.append(("breakdown", BREAKDOWN_CAPTION, parts))
    for i, (task, fig) in enumerate(figures.samples(records, run_dir), 1):
        drawn.append((f"samples-{i}", f"Samples of {task}: the input, every model's reconstruction and its error",
                      fig))
    pngs = {key: _png(fig, dpi=72 if key.startswith("samples") else 110) for key, _, fig in drawn}  # photos: smaller
    figs = [{"key": key, "caption": caption, "path": f"figures/{key}.png",
             "data": base64.b64encode(pngs[key]).decode()} for key, caption, _ in drawn]
    ctx = context(records, df, info, figs)
    with atomic_path(out, replace_dir=True) as tmp:  # _check_out: a SPADE report folder or new
        (tmp / "figures").mkdir(parents=True)
        for key, data in pngs.items():
            (tmp / "figures" / f"{key}.png").write_bytes(data)
        df.to_csv(tmp / "results.csv", index=False)
        (tmp / "summary.md").write_text(_ENV["md"].get_template("summary.md.j2").render(ctx))
        (tmp / "report.html").write_text(_ENV["html"].get_template("report.html.j2").render(ctx))
    return {"out": str(out), "rows": len(df), "records": len(records),
            "files": ["results.csv", "summary.md", "report.html"] + [f["path"] for f in figs]}
