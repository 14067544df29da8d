"""Build a run directory from model files: evaluate, profile, write the records.

:func:`collect_run` is the small, direct way to a report without the pipeline: it
evaluates every model on one data set, profiles each family's models interleaved in one
run (the family's unpruned model as the baseline, its recursive model as the recursive
reference) and writes one record per model with :func:`~spade.report.results.append_record`.
It is the only part of :mod:`spade.report` that runs models; the rendering modules read
the run directory only.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data import channel_mode, load_images
from ..errors import require
from ..evaluation import PROTOCOLS, evaluate
from ..fileio import atomic_path
from ..models import OwnModel, count_parameters, get_family, is_factory, load_model, model_names
from ..physics.mri import magnitude
from ..profile import TOLERANCE, profile_models, role_of
from ..prune import load_own
from ..profile.breakdown import breakdown_models
from ..profile.quantize import INT8_BACKEND
from . import results, runfolder


def _entry(model: str | Path | dict) -> dict:
    entry = dict(model) if isinstance(model, dict) else {"path": model}
    require("path" in entry, f"model entry {model} has no 'path'")
    entry["path"] = str(entry["path"])
    return entry


def sample_arrays(protocol: str, arrays: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reconstruction, ground truth, start) of ``evaluate(..., keep=1)`` on a [0, 1] scale
    (complex images as magnitudes; fastMRI divided by the ground truth's maximum)."""

    def image(a) -> np.ndarray:
        t = torch.as_tensor(np.asarray(a, dtype=np.float32))
        return (magnitude(t.unsqueeze(0))[0] if t.dim() == 3 and t.shape[0] == 2 else t).numpy()

    rec, gt, start = image(arrays["reconstruction"]), image(arrays["ground_truth"]), image(arrays["init"])
    if protocol.startswith("ista"):
        gt = gt / 255.0
    elif protocol == "fastmri":
        peak = float(gt.max()) or 1.0
        rec, gt, start = rec / peak, gt / peak, start / peak
    return tuple(np.clip(a, 0.0, 1.0) for a in (rec, gt, start))


def collect_run(run_dir: str | Path, models: list[str | Path | dict], data: str | None, protocol: str | None = None,
                backends: list[str] = ("eager",), threads: int = 2, batch: int = 1, side: int | None = None,
                rounds: int = 15, min_run_time: float = 1.0, tolerance: float = TOLERANCE, title: str | None = None,
                quantized: list[dict] = (), breakdown: bool = False,
                log: Callable[[str], None] = lambda msg: None, progress: bool = True) -> list[dict]:
    """Evaluate and profile model files into a new run directory; returns the records.

    ``models``: paths (or a user's ``MODULE:FUNCTION[@FILE]``, see
    :mod:`spade.models.adapter`), or dicts ``{"path", "name"?, "role"?, "parent"?, "ratio"?,
    "importance"?, "strategy"?, "data"?, "protocol"?}`` overriding what the spec says
    (role from the sharing mode and resized layers, ratio/importance and a latency plan's
    target_speedup from ``spec["pruning"]``, strategy from ``spec["finetuning"]``) and the run's ``data`` /
    ``protocol`` (per-model test images). ``quantized``: ``{"source", "name", "report"}``
    of INT8 models (``spade.profile.quantize.quantize_file`` reports of models in
    ``models``), each added as a record after its float source
    (:func:`~spade.report.results.int8_record`, backend ``onnxruntime-int8``).
    ``breakdown``: also profile where one eager call's time goes
    (:func:`~spade.profile.breakdown.breakdown_models`) for every architecture of a family
    side by side — its unpruned and recursive models and its pruned models before
    fine-tuning (one file per role and layer widths) — into the records' ``breakdown``.
    ``progress``: bars on stderr (timing, images).
    """
    run_dir = Path(run_dir)
    require(not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())),
            f"{run_dir} exists and is not empty: collect into a new directory")
    entries = [_entry(m) for m in models]
    require(entries, "no model to collect")
    loaded = {}
    for e in entries:
        if is_factory(e["path"]):
            loaded[e["path"]] = load_own(e["path"])
            loaded[e["path"]].require_physics(f"{e['path']} (evaluated here)")
        else:
            loaded[e["path"]] = load_model(e["path"])
    names = dict(zip(loaded, model_names(list(loaded))))
    for e in entries:
        spec = loaded[e["path"]].spec
        e.setdefault("name", names[e["path"]])
        e.setdefault("role", role_of(spec))
        e.setdefault("ratio", (spec.get("pruning") or {}).get("ratio"))
        e.setdefault("importance", (spec.get("pruning") or {}).get("importance"))
        e.setdefault("target_speedup", ((spec.get("pruning") or {}).get("latency_plan") or {}).get("target_speedup"))
        e.setdefault("units_removed", results.units_removed(spec.get("pruning")))
        e.setdefault("strategy", (spec.get("finetuning") or {}).get("strategy"))
        e.setdefault("finetune_data", results.finetune_data(spec))
        e["family"] = spec["family"]
    families = list(dict.fromkeys(e["family"] for e in entries))
    profiles, unpruned = {}, {}
    for fam in families:
        group = [e for e in entries if e["family"] == fam]
        base = next((e for e in group if e["role"] == "unpruned"), None)
        unpruned[fam] = base
        log(f"profiling {len(group)} {fam} model(s)")
        own = {p: m for p, m in loaded.items() if isinstance(m, OwnModel)}
        profiles[fam] = profile_models([own.get(e["path"], e["path"]) for e in group], backends=backends, batch=batch,
                                       threads=threads,
                                       side=side, baseline=None if base is None else base["path"], rounds=rounds,
                                       min_run_time=min_run_time, tolerance=tolerance, log=log, progress=progress)
    parts: dict[str, dict] = {}
    if breakdown:
        for fam in families:
            group = _architectures([e for e in entries if e["family"] == fam], loaded)
            log(f"breaking down the time of {len(group)} {fam} model(s)")
            result = breakdown_models(group, batch=batch, threads=threads, side=side, rounds=min(rounds, 3),
                                      min_run_time=min_run_time, log=log)
            parts.update({p: results.breakdown_from_result(result, p) for p in group})
    with atomic_path(run_dir) as tmp:
        tmp.mkdir()
        records = [_record(tmp, e, loaded[e["path"]], profiles[e["family"]], unpruned[e["family"]], data, protocol,
                           parts.get(e["path"]), log, progress) for e in entries]
        by_name = {r["name"]: r for r in records}
        for q in quantized:
            require(q["source"] in by_name, f"INT8 model {q['name']}: its source '{q['source']}' is not collected")
            records.append(results.append_record(tmp, results.int8_record(by_name[q["source"]], q["report"], q["name"],
                                                                          INT8_BACKEND)))
        if title:
            results.write_run_info(tmp, title)
    return records


def _architectures(entries: list[dict], loaded: dict) -> list[str]:
    """One model file per architecture (role and layer widths), not fine-tuned ones first."""
    seen, out = set(), []
    for e in sorted(entries, key=lambda e: e["strategy"] is not None):
        key = (e["role"], json.dumps(loaded[e["path"]].spec.get("widths"), sort_keys=True))
        if key not in seen:
            seen.add(key)
            out.append(e["path"])
    return [e["path"] for e in entries if e["path"] in out]


def _record(run_dir: Path, e: dict, lm, profile: dict, base: dict | None, data: str, protocol: str | None,
            breakdown: dict | None, log: Callable[[str], None], progress: bool = True) -> dict:
    """Evaluate one model, save its sample and append its record."""
    data = e.get("data") or data
    require(data, f"model {e['name']}: no test images to evaluate on")
    config = getattr(lm.model, "config", {})
    proto = e.get("protocol") or protocol or lm.spec.get("protocol") or (
        lm.physics.protocols[0] if isinstance(lm, OwnModel) else get_family(e["family"]).protocol)
    channels = channel_mode(config.get("image_channels", 1))
    log(f"evaluating {e['name']} on {data} ({proto})")
    ev = evaluate(lm.model, lm.physics, load_images(data, channels), proto, keep=1, progress=progress)
    first = ev.per_image[0]
    rec, gt, start = sample_arrays(proto, first["arrays"])
    sample = results.save_sample(run_dir, e["name"], rec, gt, start, image=first["image"], psnr=first["psnr"])
    summary = {"dataset": data, "protocol": proto, "convention": PROTOCOLS[proto], "n_images": len(ev.per_image),
               **ev.summary()}
    latency = results.latency_from_profile(profile, e["path"])
    if base is None:  # the family has no unpruned model: the profile's baseline is not one
        for lat in latency:
            lat["speedup_vs_unpruned"] = lat["speedup_vs_unpruned_ci"] = None
    entry = next(p for p in profile["models"] if p["model"] == e["path"])
    record = {"name": e["name"], "family": e["family"], "sharing": config.get("sharing"),
              "role": e["role"], "params": entry["params"], "macs": entry["macs"],
              "conditions": results.conditions_from_profile(profile, entry),
              "parent": e.get("parent") or (base["name"] if e["role"] == "pruned" and base else None),
              "ratio": e["ratio"], "target_speedup": e["target_speedup"], "units_removed": e["units_removed"],
              "importance": e["importance"],
              "strategy": e["strategy"],
              "finetune_data": e["finetune_data"],
              "evaluation": summary, "latency": latency, "widths": lm.spec.get("widths"),
              "peak_mem_mb": entry["peak_mem_mb"], "sample": sample, "model_file": e["path"], "breakdown": breakdown}
    return results.append_record(run_dir, record)


def record_evaluation(run_dir: str | Path, model_file: str | Path, loaded, ev, data: str | None) -> dict:
    """Add ``spade.evaluation.evaluate(..., keep=1)``'s result for a loaded model file to a
    run folder (:func:`spade.report.runfolder.add_evaluation`); the kept arrays become the
    record's sample and leave ``ev``."""
    first = ev.per_image[0]
    sample = None
    if "arrays" in first:
        rec, gt, start = sample_arrays(ev.protocol, first.pop("arrays"))
        sample = {"reconstruction": rec, "ground_truth": gt, "start": start, "image": first["image"],
                  "psnr": first.get("psnr", float("nan"))}
    summary = {"dataset": data or first["image"], "protocol": ev.protocol, "convention": PROTOCOLS[ev.protocol],
               "n_images": len(ev.per_image), **ev.summary()}
    return runfolder.add_evaluation(run_dir, model_file, loaded.spec, count_parameters(loaded.model),
                                    role_of(loaded.spec), summary, sample)
