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
``params``, ``macs``      parameter count, multiply-accumulates per forward (int; macs null
                          when the model was evaluated only)
``conditions``            how latency and MACs were taken: ``{"threads", "batch", "input_shape",
                          "device", "hardware", "torch", "allocator"}`` required, ``"timer"``,
                          ``"timing"`` (the clock used and why), ``"macs_counter"``,
                          ``"load_average"`` optional; null when not profiled
``parent``                name of the unpruned record a pruned model comes from, or null
``ratio``, ``importance``  pruning ratio (of a latency plan: the share of channels it
                          removed) and criterion, or null
``target_speedup``        the speedup a latency plan pruned for, or null
``units_removed``         unrolled iterations (or stages) depth pruning removed, or null
``strategy``              fine-tuning strategy (``supervised``, ``school``, ...), or null
``finetune_data``         what fine-tuning saw: ``none``, ``train:<source>`` (training images,
                          disjoint from the test images) or ``test`` (test-time adaptation)
``evaluation``            ``{"dataset", "protocol", "convention", "n_images", "psnr", "ssim",
                          "init_psnr", "init_ssim", ...}`` (means), or null
``latency``               list, one per backend: ``{"backend", "status", "error", "median_ms",
                          "iqr_ms", "cpu_median_ms", "runs", "speedup_vs_unpruned", "speedup_vs_unpruned_ci",
                          "speedup_vs_recursive", "speedup_vs_recursive_ci", "recursive", "clock",
                          "flags", "page_faults_per_call", "max_abs_error"}``; speedups are
                          medians of per-round ratios of one paired profile run, with their
                          confidence interval (``_ci``), on ``clock`` time; ``flags``: why
                          the row is implausible
``widths``                ``{layer: [in, out]}`` of every conv/linear layer
``peak_mem_mb``           peak activation memory of one forward (see spade.profile.cost)
``sample``                ``samples/NAME.npz``, relative to RUN_DIR (never outside it), or null
``model_file``            where the model came from (information only), or null
``quantized``             INT8 rows only (backend ``onnxruntime-int8``, :func:`int8_record`):
                          ``{"source", "format", "quantized_convs", "calibration", "float",
                          "psnr_loss_db", "onnx_baseline"}`` — the float record it was made
                          from, how, and the float scores on the same images; else null
``breakdown``             where one eager call's time goes (:mod:`spade.profile.breakdown`):
                          ``{"parts": {convs, physics, glue, layout, python, other: ms},
                          "convs": {label: ms}, "measured_ms", "agreement", "ceiling_convs_free",
                          "ceiling_priors_free", "calls_profiled", "load_average"}``, or null
========================  ==================================================================

A **sample** file (``numpy.savez``) holds ``reconstruction``, ``ground_truth`` and
optionally ``start`` (the physics' starting point): float32 arrays (H, W) or (H, W, 3)
on a [0, 1] scale, plus ``image`` (name) and ``psnr`` (of this image, under the record's
protocol).

Writers: :func:`append_record`, :func:`save_sample`, :func:`write_run_info`, and
:func:`latency_from_profile` / :func:`conditions_from_profile` to turn a
``spade.profile.profile_models`` result into record fields, :func:`int8_record` a
``spade.profile.quantize.quantize_file`` report into a record. Readers:
:func:`read_records`, :func:`load_sample`, :func:`read_run_info`. Every write is atomic.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import SpadeError, require
from ..fileio import atomic_path, write_text

RESULTS = "results.jsonl"
RUN_INFO = "run.json"
SAMPLES = "samples"
ROLES = ("unpruned", "pruned", "recursive")
#: limits of what a report reads: a results file, and the nesting of one record
MAX_RESULTS_BYTES = 64 * 2 ** 20
MAX_DEPTH = 12

Count = Field(ge=0, strict=True)
Number = Optional[float]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Conditions(_Open):
    threads: int
    batch: int
    input_shape: list[int]
    device: str
    hardware: str
    torch: str
    allocator: str
    timer: Optional[dict] = None
    timing: Optional[dict] = None
    load_average: Optional[dict] = None
    macs_counter: Optional[str] = None
    tolerance: Optional[float] = None  #: max |backend - eager| / max(1, max |eager|) accepted


class Latency(_Open):
    backend: Optional[str]
    status: str
    error: Optional[str] = None
    median_ms: Number = None
    iqr_ms: Number = None
    cpu_median_ms: Number = None
    runs: Optional[int] = None
    speedup_vs_unpruned: Number = None
    speedup_vs_unpruned_ci: Optional[list[float]] = Field(None, min_length=2, max_length=2)
    speedup_vs_recursive: Number = None
    speedup_vs_recursive_ci: Optional[list[float]] = Field(None, min_length=2, max_length=2)
    recursive: Optional[str] = None
    clock: Optional[Literal["wall", "cpu"]] = None
    flags: list[str] = []


class Evaluation(_Open):
    dataset: str
    protocol: str
    convention: str = ""
    n_images: Optional[int] = None
    psnr: Number = None
    ssim: Number = None
    init_psnr: Number = None


class Record(BaseModel):
    """One results record (module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=200)
    family: str
    sharing: Optional[str]
    role: Literal["unpruned", "pruned", "recursive"]
    params: int = Count
    macs: Optional[int] = Field(None, ge=0, strict=True)
    conditions: Optional[Conditions] = None
    parent: Optional[str] = None
    ratio: Optional[float] = Field(None, ge=0, lt=1)
    target_speedup: Optional[float] = Field(None, gt=1)
    units_removed: Optional[int] = Field(None, ge=0, strict=True)
    importance: Optional[str] = None
    strategy: Optional[str] = None
    finetune_data: Optional[str] = None
    evaluation: Optional[Evaluation] = None
    latency: Optional[list[Latency]] = None
    widths: Optional[dict[str, list[int]]] = None
    peak_mem_mb: Number = None
    sample: Optional[str] = None
    model_file: Optional[str] = None
    quantized: Optional[dict] = None
    breakdown: Optional[dict] = None

    @field_validator("sample")
    @classmethod
    def _inside(cls, rel):
        if rel is not None:
            parts = Path(rel).parts
            if Path(rel).is_absolute() or ".." in parts or not parts or parts[0] != SAMPLES:
                raise ValueError(f"sample path {rel!r} must be relative and inside {SAMPLES}/ of the run folder")
        return rel


REQUIRED = tuple(k for k, f in Record.model_fields.items() if f.is_required())
OPTIONAL = tuple(k for k in Record.model_fields if k not in REQUIRED)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of JSON data, stopping past ``limit``."""
    if limit < 0 or not isinstance(value, (dict, list)):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in items), default=0)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "record"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key (allowed: {', '.join(Record.model_fields)})"
    elif err["type"] == "missing":
        msg = f"missing (a record needs {', '.join(REQUIRED)})"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"'{loc}': {msg}{more}"


def check_record(record: dict, where: str = "record") -> dict:
    """Validate one record against :class:`Record`; returns it with optional keys filled.
    Errors are one line naming the key."""
    require(isinstance(record, dict), f"{where} is not a JSON object")
    require(_depth(record, MAX_DEPTH) <= MAX_DEPTH, f"{where} is nested deeper than {MAX_DEPTH} levels")
    try:
        return Record.model_validate(record).model_dump()
    except ValidationError as exc:
        raise SpadeError(f"{where}: {_first_error(exc)}") from None


def finetune_data(spec: dict) -> str:
    """What a model was fine-tuned on: ``none``, ``train:<source>`` or ``test`` (test-time
    adaptation), from its spec; files written before the field existed are read from how
    their run used its data."""
    tuning = spec.get("finetuning") or {}
    if not tuning:
        return "none"
    if tuning.get("finetune_data"):
        return str(tuning["finetune_data"])
    return "test" if tuning.get("data_used") == "test measurements themselves" else f"train:{tuning.get('data')}"


def units_removed(pruning: dict | None) -> int | None:
    """Iterations (or stages) depth pruning removed, over every prune in a spec's
    ``pruning`` chain (``previous``), or None when the model was not pruned."""
    if not pruning:
        return None
    here = len((pruning.get("depth") or {}).get("removed") or [])
    return here + (units_removed(pruning.get("previous")) or 0)


def _lines(path: Path) -> list[tuple[int, dict]]:
    """``(line number, JSON object)`` of every non-empty line of a results file."""
    require(path.stat().st_size <= MAX_RESULTS_BYTES,
            f"{path} is larger than {MAX_RESULTS_BYTES >> 20} MiB: not a results file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpadeError(f"{path} is not UTF-8 text: not a results file") from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((i, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise SpadeError(f"{path} line {i} is not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise SpadeError(f"{path} line {i} is nested too deeply") from None
    return out


def read_records(run_dir: str | Path) -> list[dict]:
    """All records of a run directory, validated, in file order."""
    path = Path(run_dir) / RESULTS
    require(Path(run_dir).is_dir(), f"run directory {run_dir} does not exist")
    require(path.is_file(), f"{run_dir} has no {RESULTS}: not a run directory")
    records, names = [], set()
    for i, raw in _lines(path):
        record = check_record(raw, f"{path} line {i}")
        require(record["name"] not in names, f"{path} line {i}: name '{record['name']}' appears twice")
        names.add(record["name"])
        records.append(record)
    require(records, f"{path} holds no record")
    return records


def _plain(record: dict) -> dict:
    """``record`` as plain JSON types (numpy scalars become Python numbers)."""
    try:
        return json.loads(json.dumps(record, default=_json_default, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise SpadeError(f"record '{record.get('name')}' is not JSON-serialisable: {exc}") from None


def _write(run_dir: Path, records: list[dict]) -> None:
    write_text(run_dir / RESULTS, "".join(json.dumps(r, allow_nan=True) + "\n" for r in records))


def append_record(run_dir: str | Path, record: dict) -> dict:
    """Validate ``record`` and add it to ``RUN_DIR/results.jsonl`` (atomically)."""
    record = check_record(_plain(record))
    existing = read_records(run_dir) if (Path(run_dir) / RESULTS).is_file() else []
    require(record["name"] not in {r["name"] for r in existing},
            f"{Path(run_dir) / RESULTS} already has a record named '{record['name']}'")
    _write(Path(run_dir), existing + [record])
    return record


def upsert_record(run_dir: str | Path, name: str, model_file: str, fields: dict) -> dict:
    """Set ``fields`` on the record ``name`` of ``model_file`` (created when missing; the
    other keys of an existing record are kept); refuses a record of that name from
    another model file."""
    run_dir = Path(run_dir)
    existing = read_records(run_dir) if (run_dir / RESULTS).is_file() else []
    old = next((r for r in existing if r["name"] == name), None)
    require(old is None or old["model_file"] in (None, model_file),
            f"{run_dir / RESULTS} has a record '{name}' from {old and old['model_file']}, not {model_file}: "
            "use another run folder, or rename the model file")
    record = check_record(_plain({**(old or {}), **fields, "name": name, "model_file": model_file}))
    _write(run_dir, [record if r is old else r for r in existing] + ([] if old else [record]))
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
    require(isinstance(info, dict) and all(isinstance(info.get(k, ""), str) for k in ("title", "notes")),
            f"{path} must hold a JSON object with string 'title' and 'notes'")
    return {"title": info.get("title") or Path(run_dir).resolve().name, "notes": info.get("notes", "")}


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
    """The arrays of a sample file (``image`` as str, ``psnr`` as float); the file must lie
    inside ``RUN_DIR/samples`` (links resolved) and hold 2-D or RGB arrays."""
    root = (Path(run_dir) / SAMPLES).resolve()
    path = (Path(run_dir) / rel).resolve()
    require(root in path.parents, f"sample {rel} lies outside {Path(run_dir) / SAMPLES}: refused")
    require(path.is_file(), f"sample {Path(run_dir) / rel} is missing: the run directory is incomplete")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
        out["image"], out["psnr"] = str(out.get("image", "")), float(out.get("psnr", math.nan))
    except (OSError, ValueError, TypeError) as exc:
        raise SpadeError(f"sample {rel} is not a readable sample file ({exc})") from None
    for key in ("reconstruction", "ground_truth", "start"):
        if key in out:
            out[key] = _image(out[key], key)
    require("reconstruction" in out and "ground_truth" in out
            and out["reconstruction"].shape == out["ground_truth"].shape,
            f"sample {rel} needs a reconstruction and a ground truth of one shape")
    return out


def conditions_from_profile(profile: dict, entry: dict) -> dict:
    """The ``conditions`` of a record from a ``profile_models`` result and one of its entries."""
    return {"threads": profile["threads"], "batch": profile["batch"], "input_shape": entry["input_shape"],
            "device": profile["device"], "hardware": profile["hardware"], "torch": profile["torch"],
            "allocator": profile["allocator"]["description"], "timer": profile["timer"], "timing": profile["timing"],
            "load_average": profile.get("load_average"), "macs_counter": profile["macs_counter"],
            "tolerance": profile["tolerance"]}


def latency_from_profile(profile: dict, model: str) -> list[dict]:
    """The ``latency`` list of model file ``model`` from a ``profile_models`` result whose
    baseline is the model's unpruned parent."""
    out = []
    for e in profile["models"]:
        if e["model"] != model:
            continue
        out.append({"backend": e["backend"], "status": e["status"], "error": e["error"],
                    "median_ms": e["median_ms"], "iqr_ms": e["iqr_ms"], "cpu_median_ms": e["cpu_median_ms"],
                    "runs": e["runs"], "speedup_vs_unpruned": e["speedup"], "speedup_vs_unpruned_ci": e["speedup_ci"],
                    "speedup_vs_recursive": e["speedup_vs_recursive"],
                    "speedup_vs_recursive_ci": e["speedup_vs_recursive_ci"], "recursive": e["recursive"],
                    "clock": profile["timing"]["clock"], "flags": e["flags"] or [],
                    "page_faults_per_call": e["page_faults_per_call"], "max_abs_error": e["max_abs_error"]})
    require(out, f"the profile has no entry for {model}")
    return out


def int8_record(source: dict, report: dict, name: str, backend: str) -> dict:
    """The record of an INT8 ONNX model from ``quantize_file``'s ``report`` and the record
    of the float model it was made from (``source``): the same architecture, role, parent,
    pruning and fine-tuning fields; ``evaluation`` the INT8 scores on the report's images
    (the test images fitted to the exported input, a setting of their own: dataset
    ``"DATA fitted to HxW"``); one ``latency`` row for ``backend`` whose speedup is against
    the report's ``onnx_baseline`` (the unpruned model's float ONNX Runtime, timed in the
    same interleaved run); ``quantized`` the float scores on the same images."""
    ev = report.get("evaluation")
    h, w = report["image_shape"]
    source_ev = source.get("evaluation") or {}
    evaluation = None if not ev else {
        "dataset": f"{ev['data']} fitted to {h}x{w}", "protocol": ev["protocol"],
        "convention": source_ev.get("convention", "") if source_ev.get("protocol") == ev["protocol"] else "",
        "n_images": len(ev["images"]), "psnr": ev["int8"]["psnr"], "ssim": ev["int8"].get("ssim")}
    t = report["timings"]["int8 onnxruntime"]
    key = "speedup_vs_" + report["onnx_baseline"].replace(" ", "_") + "_"
    latency = {"backend": backend, "status": "ok", "error": None, "median_ms": t["median_ms"], "iqr_ms": t["iqr_ms"],
               "cpu_median_ms": t["cpu_median_ms"], "runs": t["runs"], "speedup_vs_unpruned": t[key + "speedup"],
               "speedup_vs_unpruned_ci": [t[key + "low"], t[key + "high"]], "speedup_vs_recursive": None,
               "speedup_vs_recursive_ci": None, "recursive": None, "clock": report["clock"]["clock"], "flags": []}
    conditions = {"threads": report["threads"], "batch": report["input_shape"][0],
                  "input_shape": report["input_shape"], "device": "cpu", "hardware": report["hardware"],
                  "torch": report["versions"]["torch"], "allocator": report["allocator"]["description"],
                  "timer": report.get("timer"), "timing": {**report["clock"], "rounds": (report.get("timer") or {}).get("rounds")},
                  "load_average": report.get("load_average"),
                  "macs_counter": (source.get("conditions") or {}).get("macs_counter")}
    quantized = {"source": source["name"], "format": report["format"], "quantized_convs": report["quantized_convs"],
                 "calibration": report["calibration"], "onnx_baseline": report["onnx_baseline"],
                 "float": ev["float"] if ev else None, "psnr_loss_db": ev["psnr_loss_db"] if ev else None}
    keep = ("family", "sharing", "role", "params", "macs", "ratio", "target_speedup", "units_removed", "importance",
            "strategy",
            "finetune_data", "widths")
    return {**{k: source.get(k) for k in keep}, "name": name,
            "parent": source.get("parent") or (source["name"] if source["role"] == "unpruned" else None),
            "conditions": conditions, "evaluation": evaluation, "latency": [latency], "peak_mem_mb": None,
            "sample": None, "model_file": report["out"], "quantized": quantized}


#: the parts of a breakdown, in the order a report stacks them
BREAKDOWN_PARTS = ("convs", "physics", "glue", "layout", "python", "other")


def breakdown_from_result(result: dict, model: str) -> dict:
    """The ``breakdown`` of model file ``model`` from a ``breakdown_models`` result."""
    e = next((m for m in result["models"] if m["model"] == model), None)
    require(e is not None, f"the breakdown has no entry for {model}")
    parts = {"convs": e["conv_ms"], **{k: e[f"{k}_ms"] for k in BREAKDOWN_PARTS[1:]}}
    return {"parts": parts, "convs": dict(e["convs"]), "measured_ms": e["measured_ms"], "agreement": e["agreement"],
            "ceiling_convs_free": e["ceiling_convs_free"], "ceiling_priors_free": e["ceiling_priors_free"],
            "calls_profiled": result["calls_profiled"], "load_average": result.get("load_average")}
