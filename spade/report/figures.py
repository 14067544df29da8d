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

from .readout import implausible
from .results import BREAKDOWN_PARTS, load_sample
from .tables import conditions_lines, reference_unpruned

ROLE_STYLE = {"unpruned": {"marker": "*", "s": 220, "color": "black"},
              "recursive": {"marker": "s", "s": 90, "color": "tab:red"}}
STRATEGY_COLORS = ["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
BACKEND_COLORS = {"eager": "tab:blue", "channels-last": "tab:orange", "compile": "tab:green",
                  "onnxruntime": "tab:purple", "onnxruntime-int8": "tab:pink"}
PART_COLORS = {"convs": "tab:blue", "physics": "tab:green", "glue": "tab:orange", "layout": "tab:red",
               "python": "tab:gray", "other": "tab:olive"}
MAX_SAMPLES = 8


def _tag(r: pd.Series) -> str:
    """A pruned point's label: its ratio, and the latency target that chose its widths."""
    target = r.get("target_speedup")
    return f"{r['ratio']:.2f}" + ("" if target is None or target != target else f" ({target:g}× plan)")


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
            half = (r["iqr_ms"] or 0) / 2 if r["iqr_ms"] == r["iqr_ms"] else 0
            ax.errorbar(r["median_ms"], r["psnr"], xerr=half, fmt="none", ecolor="0.45", elinewidth=1, capsize=3,
                        zorder=2)
            ax.scatter(r["median_ms"], r["psnr"], label=label, zorder=3, **style)
            if implausible(r["flags"]):
                ax.scatter(r["median_ms"], r["psnr"], marker="x", s=140, color="red", zorder=4,
                           label="implausible timing (not ranked)")
            if r["role"] == "pruned" and r["ratio"] == r["ratio"] and r["ratio"] is not None:
                ax.annotate(_tag(r), (r["median_ms"], r["psnr"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ordered = g.sort_values("median_ms")
        front = ordered[ordered["psnr"] > ordered["psnr"].cummax().shift(fill_value=-math.inf)]
        ax.step(front["median_ms"], front["psnr"], where="post", color="0.5", ls="--", lw=1, label="Pareto front")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best", framealpha=0.6)
        ax.set_xlabel(f"median latency, ms ({backend}; bars: interquartile range)")
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
    """Measured speedup against the unpruned model (with its interval) vs the MACs cut,
    per backend, under the physical limit speedup = MACs cut."""
    data = df[(df["status"] == "ok") & (df["role"] != "unpruned") & df["speedup_vs_unpruned"].notna()
              & df["macs_reduction"].notna() & (df["precision"] != "int8")]  # INT8 beats the float MACs bound
    if data.empty:
        return _message("Measured speedup vs MACs cut", "no timed model with an unpruned reference")
    fig = Figure(figsize=(7.5, 5.8))
    ax = fig.add_subplot()
    for backend, g in data.groupby("backend", sort=False):
        color = BACKEND_COLORS.get(backend, "tab:gray")
        low = (g["speedup_vs_unpruned"] - g["speedup_vs_unpruned_low"]).fillna(0).clip(lower=0)
        high = (g["speedup_vs_unpruned_high"] - g["speedup_vs_unpruned"]).fillna(0).clip(lower=0)
        ax.errorbar(g["macs_reduction"], g["speedup_vs_unpruned"], yerr=[low, high], fmt="none", ecolor=color,
                    alpha=0.6, capsize=3, zorder=2)
        for role, rg in g.groupby("role", sort=False):
            ax.scatter(rg["macs_reduction"], rg["speedup_vs_unpruned"], color=color,
                       marker="s" if role == "recursive" else "o", s=50, label=f"{backend}, {role}", zorder=3)
        flagged = g[g["flags"].map(implausible)]
        if len(flagged):
            ax.scatter(flagged["macs_reduction"], flagged["speedup_vs_unpruned"], marker="x", s=140, color="red",
                       zorder=4, label="implausible timing (not ranked)")
        placed: list[tuple[float, float]] = []
        for _, r in g.iterrows():
            tag = _tag(r) if r["ratio"] == r["ratio"] and r["ratio"] is not None else r["model"]
            xy = (r["macs_reduction"], r["speedup_vs_unpruned"])
            dy = 4 + 9 * sum(1 for p in placed if abs(p[0] - xy[0]) < 0.05 * xy[0] and abs(p[1] - xy[1]) < 0.08 * xy[1])
            placed.append(xy)
            ax.annotate(tag, xy, textcoords="offset points", xytext=(5, dy), fontsize=8)
    top = max(1.5, float(data["macs_reduction"].max()),
              float(data[["speedup_vs_unpruned", "speedup_vs_unpruned_high"]].max().max())) * 1.1
    line = np.linspace(0, top, 50)
    ax.plot(line, line, color="0.2", lw=1.2, label="physical limit: speedup = MACs cut")
    ax.fill_between(line, line, top, color="0.9", zorder=0, label="not reachable by cutting MACs")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("MACs cut (unpruned MACs / model MACs)")
    ax.set_ylabel("measured speedup vs unpruned (same backend; bars: interval)")
    ax.set_title("Measured speedup vs MACs cut")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    _footer(fig, data)
    return fig


def samples(records: list[dict], run_dir: str | Path) -> list[tuple[str, Figure]]:
    """One figure per task (dataset x protocol): ground truth, the physics' starting point
    (the network's input: zero-filled / bicubic / Qinit), then every model's reconstruction
    with its error map, all on one error scale per task."""
    order = {"unpruned": 0, "recursive": 1, "pruned": 2}
    tasks: dict[str, list[dict]] = {}
    for r in records:
        if r.get("sample"):
            ev = r.get("evaluation") or {}
            tasks.setdefault(f"{ev.get('dataset', '?')}, {ev.get('protocol', '?')}", []).append(r)
    if not tasks:
        return [("samples", _message("Sample reconstructions", "no sample image in this run"))]
    out = []
    for task, rs in tasks.items():
        chosen = sorted(rs, key=lambda r: (order[r["role"]], r.get("ratio") or 0, str(r.get("strategy"))))
        chosen = chosen[:MAX_SAMPLES]
        loaded = [(r, load_sample(run_dir, r["sample"])) for r in chosen]
        # one error scale per task: the median of the models' 99th percentiles (a bad model saturates,
        # the others stay readable)
        vmax = float(np.median([np.percentile(np.abs(s["reconstruction"] - s["ground_truth"]), 99)
                                for _, s in loaded])) or 1e-3
        first = loaded[0][1]
        rows = 1 + len(loaded)
        fig = Figure(figsize=(7, 3.2 * rows + 0.6), layout="constrained")

        def show(i, j, img, title, error=False):
            ax = fig.add_subplot(rows, 2, 2 * i + j + 1)
            if error:
                img = img.mean(-1) if img.ndim == 3 else img
                im = ax.imshow(img, cmap="inferno", vmin=0, vmax=vmax)
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            else:
                ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")

        show(0, 0, first["ground_truth"], f"ground truth ({first['image']})")
        if "start" in first:
            start_err = np.abs(first["start"] - first["ground_truth"])
            show(0, 1, first["start"], f"input: physics' starting point (|error| 99th pct {np.percentile(start_err, 99):.3f})")
        for i, (r, smp) in enumerate(loaded, 1):
            label = r["name"] + (f", {r['strategy']}" if r.get("strategy") else "")
            show(i, 0, smp["reconstruction"], f"{label}: {smp['psnr']:.2f} dB")
            show(i, 1, np.abs(smp["reconstruction"] - smp["ground_truth"]), "|error|", error=True)
        fig.suptitle(f"{task}: samples and error maps (one error scale, saturating at {vmax:.3f})")
        out.append((task, fig))
    return out


def breakdown(records: list[dict]) -> Figure | None:
    """Where one eager call's time goes, per family: one stacked bar per profiled model
    (unpruned, pruned, recursive side by side), ms per call by part, labelled with the
    share of the convolutions and the speedup ceiling if the priors cost nothing. None
    when no record holds a breakdown."""
    data = [r for r in records if r.get("breakdown")]
    if not data:
        return None
    families = list(dict.fromkeys(r["family"] for r in data))
    fig = Figure(figsize=(9, 1.2 + sum(0.55 * sum(r["family"] == f for r in data) + 0.8 for f in families)))
    axes = [fig.add_subplot(len(families), 1, i + 1) for i in range(len(families))]
    order = {"unpruned": 0, "pruned": 1, "recursive": 2}
    for ax, fam in zip(axes, families):
        rows = sorted((r for r in data if r["family"] == fam), key=lambda r: (order.get(r["role"], 3), -(r["macs"] or 0)))
        y = np.arange(len(rows))[::-1]
        left = np.zeros(len(rows))
        for part in BREAKDOWN_PARTS:
            ms = np.array([r["breakdown"]["parts"].get(part, 0.0) for r in rows])
            ax.barh(y, ms, left=left, color=PART_COLORS[part], label=part if ax is axes[0] else None)
            left += ms
        for yi, r, total in zip(y, rows, left):
            b = r["breakdown"]
            ax.annotate(f"convs {b['parts']['convs'] / total:.0%}; priors free: {b['ceiling_priors_free']:.1f}x",
                        (total, yi), textcoords="offset points", xytext=(4, -3), fontsize=8)
        ax.set_yticks(y, [f"{r['name']} ({r['role']})" for r in rows], fontsize=8)
        ax.set_xlim(0, left.max() * 1.45)
        ax.set_title(f"{fam}: time of one eager call by part (torch.profiler self CPU time)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("ms per call")
    fig.legend(fontsize=8, ncol=len(BREAKDOWN_PARTS), loc="lower center")
    fig.subplots_adjust(hspace=0.6, bottom=min(0.4, 0.95 / fig.get_figheight()))  # room for the legend
    return fig
