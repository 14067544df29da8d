"""Build a run directory from model files: evaluate, profile, write the records.

:func:`collect_run` is the small, direct way to a report without the pipeline: it
evaluates every model on one data set, profiles each family's models interleaved in one
run (the family's unpruned model as the baseline, its recursive model as the recursive
reference) and writes one record per model with :func:`~spade.report.results.append_record`.
It is the only part of :mod:`spade.report` that runs models; the rendering modules read
the run directory only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data import channel_mode, load_images
from ..errors import require
from ..evaluation import PROTOCOLS, evaluate
from ..fileio import atomic_path
from ..models import count_parameters, get_family, load_model
from ..physics.mri import magnitude
from ..profile import profile_models, role_of
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
                rounds: int = 15, min_run_time: float = 1.0, title: str | None = None,
                log: Callable[[str], None] = lambda msg: None, progress: bool = True) -> list[dict]:
    """Evaluate and profile model files into a new run directory; returns the records.

    ``models``: paths, or dicts ``{"path", "name"?, "role"?, "parent"?, "ratio"?,
    "importance"?, "strategy"?, "data"?, "protocol"?}`` overriding what the spec says
    (role from the sharing mode and resized layers, ratio/importance from
    ``spec["pruning"]``, strategy from ``spec["finetuning"]``) and the run's ``data`` /
    ``protocol`` (per-model test images). ``progress``: bars on stderr (timing, images).
    """
    run_dir = Path(run_dir)
    require(not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())),
            f"{run_dir} exists and is not empty: collect into a new directory")
    entries = [_entry(m) for m in models]
    require(entries, "no model to collect")
    loaded = {e["path"]: load_model(e["path"]) for e in entries}
    for e in entries:
        spec = loaded[e["path"]].spec
        e.setdefault("name", Path(e["path"]).stem)
        e.setdefault("role", role_of(spec))
        e.setdefault("ratio", (spec.get("pruning") or {}).get("ratio"))
        e.setdefault("importance", (spec.get("pruning") or {}).get("importance"))
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
        profiles[fam] = profile_models([e["path"] for e in group], backends=backends, batch=batch, threads=threads,
                                       side=side, baseline=None if base is None else base["path"], rounds=rounds,
                                       min_run_time=min_run_time, log=log, progress=progress)
    with atomic_path(run_dir) as tmp:
        tmp.mkdir()
        records = [_record(tmp, e, loaded[e["path"]], profiles[e["family"]], unpruned[e["family"]], data, protocol,
                           log, progress) for e in entries]
        if title:
            results.write_run_info(tmp, title)
    return records


def _record(run_dir: Path, e: dict, lm, profile: dict, base: dict | None, data: str, protocol: str | None,
            log: Callable[[str], None], progress: bool = True) -> dict:
    """Evaluate one model, save its sample and append its record."""
    data = e.get("data") or data
    require(data, f"model {e['name']}: no test images to evaluate on")
    proto = e.get("protocol") or protocol or lm.spec.get("protocol") or get_family(e["family"]).protocol
    channels = channel_mode(lm.model.config.get("image_channels", 1))
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
    record = {"name": e["name"], "family": e["family"], "sharing": lm.model.config.get("sharing"),
              "role": e["role"], "params": entry["params"], "macs": entry["macs"],
              "conditions": results.conditions_from_profile(profile, entry),
              "parent": e.get("parent") or (base["name"] if e["role"] == "pruned" and base else None),
              "ratio": e["ratio"], "importance": e["importance"], "strategy": e["strategy"],
              "finetune_data": e["finetune_data"],
              "evaluation": summary, "latency": latency, "widths": lm.spec.get("widths"),
              "peak_mem_mb": entry["peak_mem_mb"], "sample": sample, "model_file": e["path"]}
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
