"""The run directory: the results files that reports are made from.

A run directory holds everything a report needs, so a report regenerates without
running a model::

    RUN_DIR/
      run.json            optional: {"title": str, "notes": str}
      results.jsonl       one JSON record per line, one per evaluated + profiled model
      samples/NAME.npz    one test image: reconstruction, ground truth, starting point

A **record** (``dict``) has

========================  ==================================================================
key                       value
========================  ==================================================================
``name``                  unique in the run (str)
``family``, ``sharing``   model family and sharing mode (untied / tied / recursive)
``role``                  ``unpruned``, ``pruned`` or ``recursive``
``params``, ``macs``      parameter count, multiply-accumulates per forward (int)
``conditions``            how latency and MACs were taken: ``{"threads", "batch", "input_shape",
                          "device", "hardware", "torch", "allocator"}`` required, ``"timer"``,
                          ``"macs_counter"``, ``"load_average"`` optional
``parent``                name of the unpruned record a pruned model comes from, or null
``ratio``, ``importance``  pruning ratio and criterion, or null
``strategy``              fine-tuning strategy (``supervised``, ``school``, ...), or null
``finetune_data``         what fine-tuning saw: ``none``, ``train:<source>`` (training images,
                          disjoint from the test images) or ``test`` (test-time adaptation)
``evaluation``            ``{"dataset", "protocol", "convention", "n_images", "psnr", "ssim",
                          "init_psnr", "init_ssim", ...}`` (means), or null
``latency``               list, one per backend: ``{"backend", "status", "error", "median_ms",
                          "iqr_ms", "runs", "speedup_vs_unpruned", "speedup_vs_unpruned_range",
                          "speedup_vs_recursive", "speedup_vs_recursive_range", "recursive",
                          "page_faults_per_call", "max_abs_error"}``; speedups are ratios of
                          medians measured interleaved in one profile run
``widths``                ``{layer: [in, out]}`` of every conv/linear layer
``peak_mem_mb``           peak activation memory of one forward (see spade.profile.cost)
``sample``                path of the sample file relative to RUN_DIR, or null
``model_file``            where the model came from (information only), or null
========================  ==================================================================

A **sample** file (``numpy.savez``) holds ``reconstruction``, ``ground_truth`` and
optionally ``start`` (the physics' starting point): float32 arrays (H, W) or (H, W, 3)
on a [0, 1] scale, plus ``image`` (name) and ``psnr`` (of this image, under the record's
protocol).

Writers: :func:`append_record`, :func:`save_sample`, :func:`write_run_info`, and
:func:`latency_from_profile` / :func:`conditions_from_profile` to turn a
``spade.profile.profile_models`` result into record fields. Readers:
:func:`read_records`, :func:`load_sample`, :func:`read_run_info`. Every write is atomic.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import SpadeError, require
from ..fileio import atomic_path, write_text

RESULTS = "results.jsonl"
RUN_INFO = "run.json"
SAMPLES = "samples"
ROLES = ("unpruned", "pruned", "recursive")
REQUIRED = ("name", "family", "sharing", "role", "params", "macs", "conditions")
OPTIONAL = ("parent", "ratio", "importance", "strategy", "finetune_data", "evaluation", "latency", "widths",
            "peak_mem_mb", "sample", "model_file")
CONDITIONS = ("threads", "batch", "input_shape", "device", "hardware", "torch", "allocator")


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def check_record(record: dict, where: str = "record") -> dict:
    """Validate one record (see module docstring); returns it with optional keys filled."""
    require(isinstance(record, dict), f"{where} is not a JSON object")
    missing = [k for k in REQUIRED if k not in record]
    require(not missing, f"{where} misses {missing}: a record needs {list(REQUIRED)}")
    unknown = sorted(set(record) - set(REQUIRED) - set(OPTIONAL))
    require(not unknown, f"{where} has unknown keys {unknown}: allowed are {list(REQUIRED + OPTIONAL)}")
    require(isinstance(record["name"], str) and record["name"], f"{where}: 'name' must be a non-empty string")
    require(record["role"] in ROLES, f"{where}: role '{record['role']}' is not one of {list(ROLES)}")
    for key in ("params", "macs"):
        require(isinstance(record[key], int) and record[key] >= 0, f"{where}: '{key}' must be a count >= 0")
    cond = record["conditions"]
    require(isinstance(cond, dict) and all(k in cond for k in CONDITIONS),
            f"{where}: 'conditions' must hold {list(CONDITIONS)}")
    ratio = record.get("ratio")
    require(ratio is None or (isinstance(ratio, (int, float)) and 0 <= ratio < 1),
            f"{where}: ratio {ratio} must be in [0, 1) or null")
    require(isinstance(record.get("latency") or [], list), f"{where}: 'latency' must be a list")
    for entry in record.get("latency") or []:
        require(isinstance(entry, dict) and "backend" in entry and "status" in entry,
                f"{where}: every latency entry needs 'backend' and 'status'")
    evaluation = record.get("evaluation")
    require(evaluation is None or (isinstance(evaluation, dict) and "dataset" in evaluation
                                   and "protocol" in evaluation),
            f"{where}: 'evaluation' must hold 'dataset' and 'protocol'")
    return {**{k: None for k in OPTIONAL}, **record}


def read_records(run_dir: str | Path) -> list[dict]:
    """All records of a run directory, validated, in file order."""
    path = Path(run_dir) / RESULTS
    require(Path(run_dir).is_dir(), f"run directory {run_dir} does not exist")
    require(path.is_file(), f"{run_dir} has no {RESULTS}: not a run directory")
    records, names = [], set()
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpadeError(f"{path} line {i} is not valid JSON ({exc.msg})") from None
        record = check_record(raw, f"{path} line {i}")
        require(record["name"] not in names, f"{path} line {i}: name '{record['name']}' appears twice")
        names.add(record["name"])
        records.append(record)
    require(records, f"{path} holds no record")
    return records


def append_record(run_dir: str | Path, record: dict) -> dict:
    """Validate ``record`` and add it to ``RUN_DIR/results.jsonl`` (atomically)."""
    record = check_record(record)
    path = Path(run_dir) / RESULTS
    existing = path.read_text() if path.is_file() else ""
    names = {json.loads(line)["name"] for line in existing.splitlines() if line.strip()}
    require(record["name"] not in names, f"{path} already has a record named '{record['name']}'")
    try:
        line = json.dumps(record, default=_json_default, allow_nan=True)
    except TypeError as exc:
        raise SpadeError(f"record '{record['name']}' is not JSON-serialisable: {exc}") from None
    write_text(path, existing + line + "\n")
    return record


def write_run_info(run_dir: str | Path, title: str, notes: str = "") -> None:
    write_text(Path(run_dir) / RUN_INFO, json.dumps({"title": title, "notes": notes}, indent=2) + "\n")


def read_run_info(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        return {"title": Path(run_dir).resolve().name, "notes": ""}
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise SpadeError(f"{path} is not valid JSON") from None
    require(isinstance(info, dict), f"{path} must hold a JSON object")
    return {"title": str(info.get("title", Path(run_dir).name)), "notes": str(info.get("notes", ""))}


def _image(array, what: str) -> np.ndarray:
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    require(a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3),
            f"sample {what} has shape {a.shape}: expected (H, W), (1, H, W), (3, H, W) or (H, W, 3)")
    return a


def save_sample(run_dir: str | Path, name: str, reconstruction, ground_truth, start=None, image: str = "",
                psnr: float = math.nan) -> str:
    """Write ``RUN_DIR/samples/NAME.npz`` (arrays on a [0, 1] scale); returns its relative path."""
    rec, gt = _image(reconstruction, "reconstruction"), _image(ground_truth, "ground truth")
    require(rec.shape == gt.shape, f"sample reconstruction {rec.shape} and ground truth {gt.shape} differ in shape")
    arrays = {"reconstruction": rec, "ground_truth": gt, "image": np.array(image), "psnr": np.array(float(psnr))}
    if start is not None:
        arrays["start"] = _image(start, "starting point")
    rel = f"{SAMPLES}/{name}.npz"
    with atomic_path(Path(run_dir) / rel) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return rel


def load_sample(run_dir: str | Path, rel: str) -> dict:
    """The arrays of a sample file (``image`` as str, ``psnr`` as float)."""
    path = Path(run_dir) / rel
    require(path.is_file(), f"sample {path} is missing: the run directory is incomplete")
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    out["image"], out["psnr"] = str(out.get("image", "")), float(out.get("psnr", math.nan))
    return out


def conditions_from_profile(profile: dict, entry: dict) -> dict:
    """The ``conditions`` of a record from a ``profile_models`` result and one of its entries."""
    return {"threads": profile["threads"], "batch": profile["batch"], "input_shape": entry["input_shape"],
            "device": profile["device"], "hardware": profile["hardware"], "torch": profile["torch"],
            "allocator": profile["allocator"]["description"], "timer": profile["timer"],
            "load_average": profile.get("load_average"), "macs_counter": profile["macs_counter"]}


def latency_from_profile(profile: dict, model: str) -> list[dict]:
    """The ``latency`` list of model file ``model`` from a ``profile_models`` result whose
    baseline is the model's unpruned parent."""
    out = []
    for e in profile["models"]:
        if e["model"] != model:
            continue
        out.append({"backend": e["backend"], "status": e["status"], "error": e["error"],
                    "median_ms": e["median_ms"], "iqr_ms": e["iqr_ms"], "runs": e["runs"],
                    "speedup_vs_unpruned": e["speedup"], "speedup_vs_unpruned_range": e["speedup_range"],
                    "speedup_vs_recursive": e["speedup_vs_recursive"],
                    "speedup_vs_recursive_range": e["speedup_vs_recursive_range"], "recursive": e["recursive"],
                    "page_faults_per_call": e["page_faults_per_call"], "max_abs_error": e["max_abs_error"]})
    require(out, f"the profile has no entry for {model}")
    return out
