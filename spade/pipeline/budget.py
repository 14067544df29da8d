"""Latency-budget selection: the best pruned model that is fast enough."""
from __future__ import annotations


def choose_within_budget(records: list[dict], speedup: float, backend: str) -> dict:
    """The best-PSNR pruned record at least ``speedup`` x faster than its unpruned model on
    ``backend`` (results records, see :mod:`spade.report.results`).

    Returns ``{"target_speedup", "backend", "chosen", "fastest", "candidates"}``: every
    evaluated and timed pruned model as ``{"model", "psnr", "speedup_vs_unpruned",
    "speedup_vs_recursive", "macs", "meets"}`` (best PSNR first), the chosen one (None
    when none meets the target) and the fastest one.
    """
    candidates = []
    for r in records:
        lat = next((entry for entry in r.get("latency") or [] if entry["backend"] == backend), None)
        psnr = (r.get("evaluation") or {}).get("psnr")
        if r["role"] != "pruned" or lat is None or lat.get("speedup_vs_unpruned") is None or psnr is None:
            continue
        candidates.append({"model": r["name"], "psnr": psnr, "speedup_vs_unpruned": lat["speedup_vs_unpruned"],
                           "speedup_vs_recursive": lat.get("speedup_vs_recursive"), "macs": r["macs"],
                           "meets": lat["speedup_vs_unpruned"] >= speedup})
    meeting = [c for c in candidates if c["meets"]]
    return {"target_speedup": speedup, "backend": backend,
            "chosen": max(meeting, key=lambda c: c["psnr"]) if meeting else None,
            "fastest": max(candidates, key=lambda c: c["speedup_vs_unpruned"], default=None),
            "candidates": sorted(candidates, key=lambda c: -c["psnr"])}
