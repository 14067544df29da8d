"""What a reader sees: numbers formatted with their units and spread, the measurement
conditions once, how much to believe the timings, and a short "what this means"
paragraph computed from the results table. Everything here is plain strings and lists:
the templates (``templates/``) only lay them out and escape them.
"""
from __future__ import annotations

import math

import pandas as pd


#: (column key, header) of the report tables, in order
HEADERS = [("model", "Model"), ("role", "Role"), ("pruning", "Pruned"), ("strategy", "Fine-tuning"),
           ("finetune_data", "Fine-tuned on"), ("psnr", "PSNR"), ("ssim", "SSIM"), ("start", "Start PSNR"),
           ("pruned_psnr", "After pruning"), ("recovered", "Recovered"), ("params", "Parameters"), ("gmacs", "GMACs"), ("macs_cut", "MACs cut"), ("backend", "Backend"),
           ("latency", "Latency (± ½ IQR)"), ("speedup", "Speedup vs unpruned (95% interval)"),
           ("vs_recursive", "vs recursive"), ("flag", "Trust")]
START_NOTE = ("Start PSNR: the score of the network's input, the physics' starting point (zero-filled "
              "k-space for MRI, the bicubic-like adjoint for super-resolution, Qinit·y for compressive "
              "sensing): what the network adds is PSNR − start PSNR. After pruning: the pruned model's PSNR "
              "before fine-tuning; Recovered: (PSNR − after pruning) / (unpruned PSNR − after pruning), the "
              "share of the loss that fine-tuning won back (– when pruning lost less than 0.05 dB).")
#: said under every table with a test-time-adapted row
TEST_TIME_NOTE = ("Fine-tuned on 'test': test-time adaptation — the model adapted to these test measurements "
                  "themselves (no ground truth), so its PSNR is not comparable with models that never saw them.")
#: said under every table with INT8 rows
INT8_NOTE = ("INT8 rows (backend onnxruntime-int8): the priors' convolutions quantized to INT8 on ONNX Runtime "
             "(static, calibrated on training images), the physics in float; scored on the test images fitted to "
             "the exported input size, and sped up against the unpruned model's float ONNX Runtime timed in the same "
             "run.")


def int8_note(g: pd.DataFrame) -> str | None:
    """:data:`INT8_NOTE` with each INT8 row's float and INT8 PSNR on the same images, or None."""
    rows = g[g["precision"] == "int8"]
    if rows.empty:
        return None
    scores = [f"{r['model']}: {db(r['float_psnr'])} in float, {db(r['psnr'])} in INT8"
              for _, r in rows.iterrows() if not _missing(r["psnr"])]
    return INT8_NOTE + (" Same images: " + "; ".join(scores) + "." if scores else "")


#: speedup budgets the summary names the best model for
BUDGETS = (1.5, 2.0, 3.0, 4.0)
#: how the profiler's flag for a too-wide interval starts (spade.profile.trust.NOISY; the report
#: never imports the profiler)
NOISY = "too noisy"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def db(v) -> str:
    return "–" if _missing(v) else f"{v:.2f} dB"


def times(v, digits: int = 2) -> str:
    return "–" if _missing(v) else f"{v:.{digits}f}×"


def ms(median, iqr=None) -> str:
    if _missing(median):
        return "–"
    digits = 2 if median < 10 else 1 if median < 100 else 0
    spread = "" if _missing(iqr) else f" ± {iqr / 2:.{digits}f}"
    return f"{median:.{digits}f} ms{spread}"


def speedup(v, low, high) -> str:
    if _missing(v):
        return "–"
    return times(v) + ("" if _missing(low) else f" ({low:.2f}–{high:.2f})")


def count(v) -> str:
    return "–" if _missing(v) else f"{int(v):,}"


def _text(v, default="–") -> str:
    return default if _missing(v) else str(v)


def row(r: pd.Series) -> dict:
    """One table row as display strings (keys of :data:`HEADERS`)."""
    failed = r["status"] == "failed"
    how = [r["importance"]] if isinstance(r["importance"], str) else []
    how += [] if _missing(r.get("target_speedup")) else [f"{times(r['target_speedup'], 1)} latency plan"]
    units = r.get("units_removed")
    removed = "" if _missing(units) or not units else f", {int(units)} iteration{'s' if units > 1 else ''} removed"
    pruning = "–" if _missing(r["ratio"]) else f"{r['ratio']:.2f}{removed}" + (f" ({', '.join(how)})" if how else "")
    strategy = r["strategy"] if isinstance(r["strategy"], str) else ("none" if r["role"] == "pruned" else "–")
    return {"model": str(r["model"]), "role": str(r["role"]), "pruning": pruning, "strategy": strategy,
            "finetune_data": _text(r["finetune_data"]), "psnr": db(r["psnr"]),
            "ssim": "–" if _missing(r["ssim"]) else f"{r['ssim']:.4f}", "start": db(r["init_psnr"]),
            "pruned_psnr": db(r["pruned_psnr"]),
            "recovered": "–" if _missing(r["recovered"]) else f"{r['recovered']:.0%}",
            "params": count(r["params"]), "gmacs": "–" if _missing(r["macs"]) else f"{r['macs'] / 1e9:.2f}",
            "macs_cut": times(r["macs_reduction"], 1), "backend": _text(r["backend"]),
            "latency": "failed" if failed else ms(r["median_ms"], r["iqr_ms"]),
            "speedup": speedup(r["speedup_vs_unpruned"], r["speedup_vs_unpruned_low"], r["speedup_vs_unpruned_high"]),
            "vs_recursive": speedup(r["speedup_vs_recursive"], r["speedup_vs_recursive_low"],
                                    r["speedup_vs_recursive_high"]),
            "flag": ("⚠ implausible" if implausible(r["flags"]) else "⚠ noisy" if isinstance(r["flags"], str)
                     else "failed" if failed else "ok"),
            "flagged": isinstance(r["flags"], str)}


def implausible(flags) -> bool:
    """Whether a row's flags (joined by "; ", or missing) say more than that its interval is
    wide: a noisy row is still ranked by the lower end of its interval, an implausible one never."""
    return isinstance(flags, str) and any(not f.startswith(NOISY) for f in flags.split("; "))


def groups(df: pd.DataFrame):
    """``((dataset, protocol), rows)`` for every evaluation setting, unevaluated rows last."""
    keyed = df.assign(_d=df["dataset"].fillna("(not evaluated)"), _p=df["protocol"].fillna("–"))
    for (dataset, protocol), g in keyed.groupby(["_d", "_p"], sort=False):
        yield (dataset, protocol), g.drop(columns=["_d", "_p"])


def conditions(records: list[dict]) -> list[str]:
    """The distinct timing conditions of the run, one line each (usually one)."""
    lines = []
    for r in records:
        c = r.get("conditions")
        if not c:
            continue
        timer, timing = c.get("timer") or {}, c.get("timing") or {}
        line = (f"{c['hardware']}; device {c['device']}; {c['threads']} thread(s); batch {c['batch']}; "
                f"torch {c['torch']}; allocator: {c['allocator']}")
        if timing.get("rounds"):
            line += (f"; {timing['rounds']} paired rounds ({timer.get('rounds')} asked, at most "
                     f"{timer.get('max_rounds')}), blocks of ≥ {timer.get('min_run_time_s', 0):g} s")
        if c.get("tolerance") is not None:
            line += f"; every backend's output within {c['tolerance']:g} × max(1, max |eager|) of eager's"
        if line not in lines:
            lines.append(line)
    return lines


def trust(records: list[dict]) -> dict:
    """How much to believe the timings: ``warning`` (load or contamination, or None),
    ``clock`` lines (which clock and why), ``flagged`` rows ``(model, backend, reason)``."""
    loads, clocks, flagged = [], [], []
    for r in records:
        c = r.get("conditions") or {}
        la = c.get("load_average") or {}
        worst = max((v for v in (la.get("before"), la.get("after")) if isinstance(v, (int, float))), default=None)
        if worst is not None and la.get("cpus") and worst > la["cpus"]:
            loads.append((worst, la["cpus"]))
        timing = c.get("timing") or {}
        if timing.get("clock"):
            line = f"{timing['clock']} time: {timing.get('reason', '')}"
            if line not in clocks:
                clocks.append(line)
        for lat in r.get("latency") or []:
            for why in lat.get("flags") or []:
                flagged.append((r["name"], lat["backend"], why))
    warning = None
    if loads or any(line.startswith("cpu") for line in clocks):
        worst = max(loads) if loads else None
        warning = ("The machine was busy while these models were timed"
                   + (f" (load average up to {worst[0]} on {worst[1]} CPUs)" if worst else "")
                   + ": absolute latencies are inflated. Speedups were taken per paired round and, where wall time "
                     "was contaminated, from process CPU time; trust them within their intervals, and not the "
                     "rows marked implausible.")
    return {"warning": warning, "clocks": clocks, "flagged": flagged}


def findings(df: pd.DataFrame) -> list[str]:
    """A few sentences per task from the numbers: the unpruned quality, the best pruned model
    under each speedup budget and its loss, and what limited the speedup."""
    out = []
    for (dataset, protocol), g in groups(df):
        g = g[(g["status"] == "ok") & g["psnr"].notna()]
        base = g[g["role"] == "unpruned"]
        if base.empty:
            continue
        for backend, gb in g.groupby("backend", sort=False):
            b = gb[gb["role"] == "unpruned"]
            if b.empty:
                continue
            b = b.iloc[0]
            ranked = ~gb["flags"].map(implausible)
            pruned = gb[(gb["role"] == "pruned") & gb["speedup_vs_unpruned"].notna() & ranked]
            text = [f"{dataset} ({protocol}, {backend}): the unpruned {b['model']} scores {db(b['psnr'])}."]
            for budget in BUDGETS:
                meet = pruned[pruned["speedup_vs_unpruned_low"].fillna(pruned["speedup_vs_unpruned"]) >= budget]
                if meet.empty:
                    continue
                best = meet.loc[meet["psnr"].idxmax()]
                text.append(f"At least {budget:g}× faster (lower end of the interval): {best['model']}, "
                            f"{speedup(best['speedup_vs_unpruned'], best['speedup_vs_unpruned_low'], best['speedup_vs_unpruned_high'])}, "
                            f"{db(best['psnr'])} ({best['psnr'] - b['psnr']:+.2f} dB vs unpruned).")
            if len(pruned):
                fastest = pruned.loc[pruned["speedup_vs_unpruned"].idxmax()]
                share = fastest["speedup_vs_unpruned"] / fastest["macs_reduction"]
                text.append(f"The fastest pruned model, {fastest['model']}, cuts MACs {times(fastest['macs_reduction'], 1)} "
                            f"and runs {times(fastest['speedup_vs_unpruned'])} faster ({share:.0%} of that limit): "
                            + ("the rest is time that pruning does not remove — the physics, element-wise glue, "
                               "and channel counts that fill the CPU's vector width poorly."
                               if share < 0.8 else "close to the limit."))
            elif gb["flags"].map(implausible).any():
                text.append("Every pruned model's timing is flagged implausible here: re-profile on a quieter machine.")
            out.append(" ".join(text))
    return out
