"""Write a report from a run directory: CSV, Markdown, figures and one HTML page.

``write_report(RUN_DIR, OUT)`` reads the results files only (no model is run) and
writes, atomically::

    OUT/results.csv      one row per model (x ratio x strategy) and backend
    OUT/summary.md       tables per dataset/protocol + the figures
    OUT/report.html      one self-contained page (figures embedded as base64 PNG)
    OUT/figures/*.png    pareto, widths, speedup_vs_macs, samples
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from matplotlib.figure import Figure

from ..errors import require
from ..fileio import atomic_path
from . import figures
from .results import read_records, read_run_info
from .tables import conditions_lines, frame, groups, markdown

#: (file stem, caption) of every figure, in report order
FIGURES = (("pareto", "PSNR vs latency: unpruned, pruned x strategy and recursive models, with the Pareto front"),
           ("widths", "Per-layer widths before and after pruning"),
           ("speedup_vs_macs", "Measured speedup vs MACs reduction"),
           ("samples", "Sample reconstructions with error maps"))
HTML_COLUMNS = ["model", "role", "ratio", "importance", "strategy", "finetune_data", "psnr", "ssim", "params", "macs", "macs_reduction",
                "peak_mem_mb", "backend", "median_ms", "iqr_ms", "runs", "speedup_vs_unpruned", "speedup_vs_recursive"]
CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
       "th{background:#f3f3f3}img{max-width:100%}.cond{color:#555;font-size:13px}figcaption{font-style:italic}")


def _png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _display(g):
    """The table's columns for reading: MACs in G, missing values as '-'."""
    d = g[HTML_COLUMNS].assign(macs=g["macs"] / 1e9).rename(columns={"macs": "GMACs"}).astype(object)
    return d.where(d.notna(), "-")


def _check_out(out: Path, run_dir: Path) -> None:
    out_r, run_r = out.resolve(), run_dir.resolve()
    require(out_r != run_r and out_r not in run_r.parents,
            f"report folder {out} would replace the run directory {run_dir}: choose another --out")
    if out.exists():
        require(out.is_dir() and ((out / "report.html").is_file() or not any(out.iterdir())),
                f"{out} exists and is not a SPADE report: choose a new or empty folder for --out")


def _html(df, title: str, notes: str, conventions: dict, pngs: dict[str, bytes]) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append(f"<p>{html.escape(notes)}</p>")
    parts.append("<p class='cond'>Latency measured on:<br>" + "<br>".join(html.escape(c) for c in conditions_lines(df))
                 + "<br>Speedups are ratios of medians of models timed interleaved in one run, on the same backend."
                 + "</p>")
    for (dataset, protocol), g in groups(df):
        conv = conventions.get(protocol, "")
        parts.append(f"<h2>{html.escape(str(dataset))} — protocol {html.escape(str(protocol))}</h2>"
                     f"<p class='cond'>{html.escape(conv)}</p>")
        parts.append(_display(g).to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}"))
        for _, r in g[g["status"] == "failed"].iterrows():
            parts.append(f"<p>{html.escape(str(r['model']))} on {html.escape(str(r['backend']))} failed: "
                         f"{html.escape(str(r['error']))}</p>")
    for key, caption in FIGURES:
        data = base64.b64encode(pngs[key]).decode()
        parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, out: str | Path) -> dict:
    """Render the report of ``run_dir`` into ``out`` (see module docstring); returns what it wrote."""
    run_dir, out = Path(run_dir), Path(out)
    records = read_records(run_dir)
    _check_out(out, run_dir)
    info = read_run_info(run_dir)
    df = frame(records)
    conventions = {r["evaluation"]["protocol"]: r["evaluation"].get("convention", "")
                   for r in records if r.get("evaluation")}
    drawn = {"pareto": figures.pareto(df), "widths": figures.widths(records),
             "speedup_vs_macs": figures.speedup_vs_macs(df), "samples": figures.samples(records, run_dir)}
    pngs = {key: _png(drawn[key], dpi=72 if key == "samples" else 110) for key, _ in FIGURES}  # photos: smaller
    with atomic_path(out, replace_dir=True) as tmp:  # _check_out: a SPADE report folder or new
        (tmp / "figures").mkdir(parents=True)
        for key, data in pngs.items():
            (tmp / "figures" / f"{key}.png").write_bytes(data)
        df.to_csv(tmp / "results.csv", index=False)
        (tmp / "summary.md").write_text(markdown(df, info["title"], info["notes"], conventions,
                                                 [(caption, f"figures/{key}.png") for key, caption in FIGURES]))
        (tmp / "report.html").write_text(_html(df, info["title"], info["notes"], conventions, pngs))
    return {"out": str(out), "rows": len(df), "records": len(records),
            "files": ["results.csv", "summary.md", "report.html"] + [f"figures/{k}.png" for k, _ in FIGURES]}
