"""Grow a run folder from hand-run commands: ``spade profile --out DIR`` and ``spade
evaluate --out DIR`` add to the same records, so ``spade report DIR`` works without
``spade run``.

A record is found by its name (the model file's stem, or its folder's name for a file
called ``model.spade``); a profile fills its cost, conditions and latency, an evaluation
its scores and sample; each keeps what the other wrote. Reads and writes results files
only (the commands run the models).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import require
from ..models import is_factory, source_name
from . import results


def model_name(path: str | Path) -> str:
    """The record name of a model file: its stem, or its folder's name for ``model.spade``
    (a user's ``MODULE:FUNCTION[@FILE]``: FILE's stem, or MODULE:FUNCTION)."""
    if is_factory(path):
        return source_name(str(path))
    p = Path(path)
    return p.parent.name if p.stem == "model" and p.parent.name else p.stem


def _names(paths: list[str]) -> dict[str, str]:
    """Record names for model files, the path where two files would share one."""
    names = [model_name(p) for p in paths]
    return {p: n if names.count(n) == 1 else p for p, n in zip(paths, names)}


def _run_folder(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    require(not run_dir.exists() or run_dir.is_dir(), f"--out {run_dir} is a file: name a run folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def add_profile(run_dir: str | Path, profile: dict) -> list[dict]:
    """Add or update one record per model of a ``spade.profile.profile_models`` result."""
    run_dir = _run_folder(run_dir)
    paths = list(dict.fromkeys(e["model"] for e in profile["models"]))
    names = _names(paths)
    out = []
    for path in paths:
        entry = next(e for e in profile["models"] if e["model"] == path)
        fields = {"family": entry["family"], "sharing": entry["sharing"], "role": entry["role"],
                  "params": entry["params"], "macs": entry["macs"], "peak_mem_mb": entry["peak_mem_mb"],
                  "conditions": results.conditions_from_profile(profile, entry),
                  "latency": results.latency_from_profile(profile, path)}
        out.append(results.upsert_record(run_dir, names[path], path, fields))
    return out


def add_evaluation(run_dir: str | Path, model_file: str | Path, spec: dict, params: int, role: str,
                   evaluation: dict, sample: dict | None) -> dict:
    """Add or update the record of ``model_file`` with an evaluation summary (``{"dataset",
    "protocol", "convention", "n_images", "psnr", ...}``) and optionally a sample
    (``{"reconstruction", "ground_truth", "start", "image", "psnr"}`` on a [0, 1] scale)."""
    run_dir = _run_folder(run_dir)
    name = model_name(model_file)
    pruning, tuning = spec.get("pruning") or {}, spec.get("finetuning") or {}
    fields = {"family": spec.get("family", ""), "sharing": (spec.get("config") or {}).get("sharing"), "role": role,
              "params": params, "ratio": pruning.get("ratio"), "importance": pruning.get("importance"),
              "strategy": tuning.get("strategy"), "finetune_data": results.finetune_data(spec),
              "widths": spec.get("widths"), "evaluation": evaluation}
    if sample is not None:
        fields["sample"] = results.save_sample(run_dir, name, sample["reconstruction"], sample["ground_truth"],
                                               sample.get("start"), image=sample.get("image", ""),
                                               psnr=sample.get("psnr", float("nan")))
    return results.upsert_record(run_dir, name, str(model_file), fields)
