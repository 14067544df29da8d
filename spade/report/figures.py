"""The report's matplotlib figures, drawn from the results table and records only.

Every figure carries a footer with the conditions of its numbers (protocol, hardware,
threads, batch, torch, allocator). A figure whose data the run does not hold says so
in place of the plot.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .results import load_sample
from .tables import conditions_lines, reference_unpruned

ROLE_STYLE = {"unpruned": {"marker": "*", "s": 220, "color": "black"},
              "recursive": {"marker": "s", "s": 90, "color": "tab:red"}}
STRATEGY_COLORS = ["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
BACKEND_COLORS = {"eager": "tab:blue", "channels-last": "tab:orange", "compile": "tab:green",
                  "onnxruntime": "tab:purple"}
MAX_SAMPLES = 8


def _footer(fig: Figure, df: pd.DataFrame, protocols: list[str] = ()) -> None:
    lines = conditions_lines(df) if len(df) else []
    if protocols:
        lines = [f"quality: protocol {', '.join(protocols)}"] + lines
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, va="bottom", ha="left", color="0.3")
    fig.subplots_adjust(bottom=0.12 + 0.025 * len(lines))


def _message(title: str, text: str) -> Figure:
    fig = Figure(figsize=(7, 2.2))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="0.35", transform=ax.transAxes)
    return fig


def _grid(n: int, width: float = 6.0, height: float = 4.6) -> tuple[Figure, list]:
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.8))
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _strategy_color(strategies: list) -> dict:
    names = sorted({str(s) for s in strategies if s is not None and s == s})
    return {n: STRATEGY_COLORS[i % len(STRATEGY_COLORS)] for i, n in enumerate(names)}


def pareto(df: pd.DataFrame) -> Figure:
    """PSNR against median latency, one panel per dataset x backend, with the Pareto front."""
    data = df[(df["status"] == "ok") & df["psnr"].notna() & df["median_ms"].notna()]
    if data.empty:
        return _message("PSNR vs latency", "no model in this run is both evaluated and timed")
    panels = list(data.groupby(["dataset", "protocol", "backend"], sort=False))
    fig, axes = _grid(len(panels))
    colors = _strategy_color(list(data["strategy"]))
    for ax, ((dataset, protocol, backend), g) in zip(axes, panels):
        for _, r in g.iterrows():
            if r["role"] in ROLE_STYLE:
                style, label = ROLE_STYLE[r["role"]], f"{r['role']} ({r['sharing']})"
            else:
                strategy = r["strategy"] if isinstance(r["strategy"], str) else None
                style = {"marker": "o", "s": 60, "color": colors.get(strategy, "tab:gray")}
                label = f"pruned, {strategy or 'not fine-tuned'}"
            ax.scatter(r["median_ms"], r["psnr"], label=label, zorder=3, **style)
            if r["role"] == "pruned" and r["ratio"] == r["ratio"] and r["ratio"] is not None:
                ax.annotate(f"{r['ratio']:.2f}", (r["median_ms"], r["psnr"]), textcoords="offset points",
                            xytext=(5, 4), fontsize=8)
        ordered = g.sort_values("median_ms")
        front = ordered[ordered["psnr"] > ordered["psnr"].cummax().shift(fill_value=-math.inf)]
        ax.step(front["median_ms"], front["psnr"], where="post", color="0.5", ls="--", lw=1, label="Pareto front")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best", framealpha=0.6)
        ax.set_xlabel(f"median latency (ms, {backend})")
        ax.set_ylabel(f"PSNR (dB, {protocol})")
        ax.set_title(f"{dataset}: PSNR vs latency, {backend}")
        ax.grid(alpha=0.3)
    _footer(fig, data, sorted(data["protocol"].unique()))
    return fig


def widths(records: list[dict]) -> Figure:
    """Output channels of every layer: unpruned bars, pruned models as lines."""
    parents: dict[str, tuple[dict, list[dict]]] = {}
    for r in records:
        ref = reference_unpruned(r, records) if r["role"] == "pruned" else None
        if ref is not None and r.get("widths") and ref.get("widths"):
            parents.setdefault(ref["name"], (ref, []))[1].append(r)
    if not parents:
        return _message("Per-layer widths", "no pruned model with recorded layer widths (and its unpruned parent)")
    fig, axes = _grid(len(parents), width=12 if len(parents) == 1 else 7, height=4.2)
    for ax, (name, (ref, children)) in zip(axes, parents.items()):
        layers = list(ref["widths"])
        x = np.arange(len(layers))
        ax.bar(x, [ref["widths"][k][1] for k in layers], color="0.8", label=f"{name} (unpruned)")
        seen = {}
        for child in sorted(children, key=lambda c: (c.get("ratio") or 0)):
            outs = tuple(child["widths"].get(k, [0, 0])[1] for k in layers)
            seen.setdefault(outs, []).append(child)
        for i, (outs, group) in enumerate(seen.items()):
            ratio = group[0].get("ratio")
            label = f"ratio {ratio:.2f}" if ratio is not None else group[0]["name"]
            ax.plot(x, outs, drawstyle="steps-mid", lw=1.5, marker=".", color=STRATEGY_COLORS[i % 7],
                    label=f"{label} ({len(group)} model{'s' if len(group) > 1 else ''})")
        prefix = os.path.commonprefix(layers).rpartition(".")[0]
        step = max(1, len(layers) // 60)
        ax.set_xticks(x[::step])
        ax.set_xticklabels([layers[i][len(prefix) + 1 if prefix else 0:] for i in x[::step]], rotation=90, fontsize=6)
        if prefix:
            ax.set_xlabel(f"layer (under {prefix})")
        ax.set_ylabel("output channels")
        ax.set_title(f"Per-layer widths before and after pruning: {name}")
        ax.legend(fontsize=8)
    fig.text(0.01, 0.005, "widths from the model specs (spade.models.io.layer_widths)", fontsize=7, color="0.3")
    fig.subplots_adjust(bottom=0.3, hspace=0.9)
    return fig


def speedup_vs_macs(df: pd.DataFrame) -> Figure:
    """Measured speedup against the unpruned model vs the MACs reduction, per backend."""
    data = df[(df["status"] == "ok") & (df["role"] != "unpruned") & df["speedup_vs_unpruned"].notna()
              & df["macs_reduction"].notna()]
    if data.empty:
        return _message("Measured speedup vs MACs reduction", "no timed model with an unpruned reference")
    fig = Figure(figsize=(7, 5.6))
    ax = fig.add_subplot()
    for backend, g in data.groupby("backend", sort=False):
        for role, rg in g.groupby("role", sort=False):
            ax.scatter(rg["macs_reduction"], rg["speedup_vs_unpruned"], color=BACKEND_COLORS.get(backend, "tab:gray"),
                       marker="s" if role == "recursive" else "o", s=50, label=f"{backend}, {role}", zorder=3)
        for _, r in g.iterrows():
            tag = f"{r['ratio']:.2f}" if r["ratio"] == r["ratio"] and r["ratio"] is not None else r["model"]
            ax.annotate(tag, (r["macs_reduction"], r["speedup_vs_unpruned"]), textcoords="offset points",
                        xytext=(4, 3), fontsize=7)
    top = max(1.5, float(data["macs_reduction"].max()), float(data["speedup_vs_unpruned"].max())) * 1.1
    line = np.linspace(0, top, 50)
    ax.plot(line, line, color="0.4", lw=1, label="speedup = MACs reduction")
    ax.plot(line, 0.8 * line, color="0.4", lw=1, ls="--", label="0.8 x MACs reduction")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("MACs reduction (unpruned MACs / model MACs)")
    ax.set_ylabel("measured speedup vs unpruned (same backend)")
    ax.set_title("Measured speedup vs MACs reduction")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    _footer(fig, data)
    return fig


def samples(records: list[dict], run_dir: str | Path) -> Figure:
    """Ground truth, reconstruction and absolute error of each model's sample image."""
    order = {"unpruned": 0, "recursive": 1, "pruned": 2}
    chosen = sorted((r for r in records if r.get("sample")),
                    key=lambda r: (order[r["role"]], r.get("ratio") or 0, str(r.get("strategy"))))[:MAX_SAMPLES]
    if not chosen:
        return _message("Sample reconstructions", "no sample image in this run")
    loaded = [(r, load_sample(run_dir, r["sample"])) for r in chosen]
    # one error scale for all rows: the median of the rows' 99th percentiles (a bad model saturates, the
    # others stay readable)
    vmax = float(np.median([np.percentile(np.abs(s["reconstruction"] - s["ground_truth"]), 99) for _, s in loaded]))
    vmax = vmax or 1e-3
    fig = Figure(figsize=(10, 3.3 * len(loaded) + 0.5), layout="constrained")
    for i, (r, s) in enumerate(loaded):
        err = np.abs(s["reconstruction"] - s["ground_truth"])
        err = err.mean(-1) if err.ndim == 3 else err
        protocol = (r.get("evaluation") or {}).get("protocol", "")
        panels = [(s["ground_truth"], f"ground truth ({s['image']})"),
                  (s["reconstruction"], f"{r['name']}: {s['psnr']:.2f} dB ({protocol})"),
                  (err, "|error|")]
        for j, (img, title) in enumerate(panels):
            ax = fig.add_subplot(len(loaded), 3, 3 * i + j + 1)
            if j == 2:
                im = ax.imshow(img, cmap="inferno", vmin=0, vmax=vmax)
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            else:
                ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"Sample reconstructions and error maps (one error scale, saturating at {vmax:.3f})")
    return fig
