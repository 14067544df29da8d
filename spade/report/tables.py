"""Records -> one table (``results.csv``) and its Markdown summary.

The table has one row per record and backend, i.e. per model x ratio x strategy when
one backend is profiled. INT8 rows (``precision`` int8, backend ``onnxruntime-int8``)
carry ``float_psnr``: the float model's PSNR on the same images. Every row carries the conditions its numbers were taken under:
``dataset`` and ``protocol`` for PSNR/SSIM, ``hardware``, ``threads``, ``batch``,
``allocator`` and ``torch`` for latency and speedups.
"""
from __future__ import annotations

import math

import pandas as pd

COLUMNS = ["model", "family", "sharing", "role", "parent", "ratio", "target_speedup", "units_removed", "importance",
           "strategy",
           "finetune_data", "dataset", "protocol", "n_images", "psnr", "ssim", "init_psnr", "pruned_psnr",
           "recovered", "params", "macs", "macs_reduction", "peak_mem_mb", "precision", "float_psnr", "backend",
           "status", "median_ms", "iqr_ms", "cpu_median_ms", "runs", "clock", "speedup_vs_unpruned",
           "speedup_vs_unpruned_low", "speedup_vs_unpruned_high", "speedup_vs_recursive", "speedup_vs_recursive_low",
           "speedup_vs_recursive_high", "recursive", "flags", "threads", "batch", "input_shape", "device", "hardware",
           "allocator", "torch", "load_average", "error", "model_file"]


def reference_unpruned(record: dict, records: list[dict]) -> dict | None:
    """The unpruned record a record is compared with: its parent, else the only unpruned
    record of its family."""
    by_name = {r["name"]: r for r in records}
    if record.get("parent") in by_name:
        return by_name[record["parent"]]
    same = [r for r in records if r["family"] == record["family"] and r["role"] == "unpruned"]
    return same[0] if len(same) == 1 else None


def pruned_start(record: dict, records: list[dict]) -> dict | None:
    """The pruned, not fine-tuned record a fine-tuned pruned record started from: same
    parent, ratio, MACs (architecture) and evaluation data, no strategy."""
    if record["role"] != "pruned" or not record.get("strategy"):
        return None
    ev = record.get("evaluation") or {}
    for r in records:
        rev = r.get("evaluation") or {}
        if (r["role"] == "pruned" and not r.get("strategy") and r.get("parent") == record.get("parent")
                and r.get("ratio") == record.get("ratio") and r.get("macs") == record.get("macs")
                and (rev.get("dataset"), rev.get("protocol")) == (ev.get("dataset"), ev.get("protocol"))):
            return r
    return None


#: a pruning loss below this (dB) leaves nothing to recover: the share would divide by noise
MIN_LOSS_DB = 0.05


def recovered(psnr, start, unpruned) -> float:
    """Share of the quality lost by pruning that fine-tuning won back:
    ``(psnr - start) / (unpruned - start)`` (NaN when pruning lost less than
    :data:`MIN_LOSS_DB` or a value is missing)."""
    if (any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (psnr, start, unpruned))
            or unpruned - start < MIN_LOSS_DB):
        return math.nan
    return (psnr - start) / (unpruned - start)


def _load(load: dict | None) -> str | None:
    """``"before-after on N CPUs"`` of a profile's load average, or None."""
    if not load or load.get("before") is None:
        return None
    return f"{load['before']}-{load['after']} on {load['cpus']} CPUs"


def frame(records: list[dict]) -> pd.DataFrame:
    """The results table (see module docstring)."""
    rows = []
    for r in records:
        ev, cond = r.get("evaluation") or {}, r.get("conditions") or {}
        ref = reference_unpruned(r, records)
        start = pruned_start(r, records)
        start_psnr = ((start.get("evaluation") or {}).get("psnr") if start else
                      ev.get("psnr") if r["role"] == "pruned" and not r.get("strategy") else None)
        ref_ev = (ref.get("evaluation") or {}) if ref is not None else {}
        same_data = (ref_ev.get("dataset"), ref_ev.get("protocol")) == (ev.get("dataset"), ev.get("protocol"))
        base = {"model": r["name"], "family": r["family"], "sharing": r["sharing"], "role": r["role"],
                "parent": r.get("parent"), "ratio": r.get("ratio"), "target_speedup": r.get("target_speedup"),
                "units_removed": r.get("units_removed"),
                "importance": r.get("importance"),
                "strategy": r.get("strategy"), "finetune_data": r.get("finetune_data") or "none", "dataset": ev.get("dataset"),
                "protocol": ev.get("protocol"), "n_images": ev.get("n_images"), "psnr": ev.get("psnr"),
                "ssim": ev.get("ssim"), "init_psnr": ev.get("init_psnr"), "pruned_psnr": start_psnr,
                "recovered": recovered(ev.get("psnr"), start_psnr, ref_ev.get("psnr")) if start and same_data
                else math.nan, "params": r["params"], "macs": r["macs"],
                "macs_reduction": ref["macs"] / r["macs"] if ref is not None and ref["macs"] and r["macs"] else math.nan,
                "peak_mem_mb": r.get("peak_mem_mb"), "threads": cond.get("threads"), "batch": cond.get("batch"),
                "input_shape": "x".join(str(s) for s in cond.get("input_shape") or []) or None,
                "device": cond.get("device"), "hardware": cond.get("hardware"), "allocator": cond.get("allocator"),
                "torch": cond.get("torch"),
                "load_average": _load(cond.get("load_average")), "model_file": r.get("model_file"),
                "precision": "int8" if r.get("quantized") else "float32",
                "float_psnr": ((r.get("quantized") or {}).get("float") or {}).get("psnr")}
        for lat in r.get("latency") or [{"backend": None, "status": "not profiled"}]:
            row = {**base, "backend": lat["backend"], "status": lat["status"], "error": lat.get("error"),
                   "median_ms": lat.get("median_ms"), "iqr_ms": lat.get("iqr_ms"),
                   "cpu_median_ms": lat.get("cpu_median_ms"), "runs": lat.get("runs"), "clock": lat.get("clock"),
                   "recursive": lat.get("recursive"), "flags": "; ".join(lat.get("flags") or []) or None}
            for ref_name in ("unpruned", "recursive"):
                key = f"speedup_vs_{ref_name}"
                low, high = lat.get(f"{key}_ci") or (None, None)
                row.update({key: lat.get(key), f"{key}_low": low, f"{key}_high": high})
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def conditions_lines(df: pd.DataFrame) -> list[str]:
    """One line per distinct set of timing conditions in the table."""
    keys = ["hardware", "threads", "batch", "device", "allocator", "torch", "load_average"]
    out = []
    for _, c in df.loc[df["hardware"].notna(), keys].drop_duplicates().iterrows():
        load = f"; load average {c['load_average']}" if isinstance(c["load_average"], str) else ""
        out.append(f"{c['hardware']}; device {c['device']}; {c['threads']} threads; batch {c['batch']}; "
                   f"torch {c['torch']}; allocator: {c['allocator']}{load}")
    return out
