"""Pipeline recipes (``spade run RECIPE.toml``): read and validate everything up front.

A recipe names the models and the sweep; paths in it are relative to the recipe's folder,
or start with ``$SPADE_BENCH_DATA/`` for files under the benchmark data root (README,
"Benchmark data"); a missing import file or benchmark set is named with where to get it::

    title = "ISTA-Net+ CS25 on Set11"           # report title (optional); notes = "..." too

    [data]
    test = "set11"         # evaluation images; school / self-supervised use their measurements
    train = "urban100"     # training split: supervised fine-tuning, pruning data, distillation
    protocol = "ista-cs"   # optional (default: each model's own)

    [[models]]             # one or more
    name = "ista-net-plus"
    role = "unpruned"      # unpruned: pruned and fine-tuned | recursive: a baseline, measured as is
    # the source, exactly one of:
    import = {weights = "net_params_200.pkl", phi = "phi.mat", qinit = "Qinit.mat"}  # or mask = ...
    # file = "model.spade"                      a SPADE model file
    # function = "mynets:build"                 your own network: a function returning (model, (y, physics)),
    #                                           e.g. (spade.Adapter(net, call), (y, physics)); its module is
    #                                           imported from the recipe's folder first, then PYTHONPATH
    # train = "train/demo-mri.toml"             a training recipe (spade train)
    # distill = {family = "ista-net-plus", preset = "recursive", teacher = "ista-net-plus",
    #            steps = 300, batch = 16, lr = 5e-4, patch = 99, iterates = 1.0, init = "teacher"}
    #   (one line: TOML inline tables do not span lines)
    #   a new model with the teacher's physics (and configuration, for the same family)
    #   in the preset's sharing mode, trained by the school strategy on patches of
    #   [data] train (no ground truth used); init = "teacher": its blocks start from the
    #   teacher's (the middle block of each span of iterations), else "random"
    # test / train / protocol: per-model overrides of [data]

    [prune]
    ratios = [0.25, 0.5, 0.75]
    importance = "taylor"  # scope, steps, round_to, depth (an int or one per ratio), samples, seed
    # reconstruct = true   re-fit the pruned layers to the unpruned ones' outputs on `samples`
    #                      training images centre-cropped to `crop` (default 128) pixels; on
    #                      by default when training images are given; ridge = 1e-3
    # depth_refit = false  after removed iterations, keep the next one as it is (default: as
    #                      reconstruct, which re-fits it to the unpruned one's output)
    # speedups = [1.5]     latency targets as well (spade prune --target-speedup): widths chosen from a
    #                      latency table measured here with [profile] threads (OUT/latency-table.json),
    #                      and, with training images, how many iterations to keep (plan_depth = false:
    #                      widths only); each a model NAME-s150 fine-tuned like the others
    # progressive = true   each ratio (increasing) prunes the model the first strategy
    #                      fine-tuned at the ratio before: prune a step, recover, prune again

    [finetune]             # the strategies, each run on every pruned model, on the training images
    strategies = ["supervised", "school", "self-supervised"]   # or "school:1,self-supervised:0.5"
    steps = 100            # batch, lr, schedule, clip, loss, iterates, transforms, patch, seed
    # test_time = true     school / self-supervised adapt to the test measurements themselves
    #                      (test-time adaptation; every results row says so); also per strategy
    [finetune.supervised]  # per-strategy overrides of the same keys
    steps = 200

    [profile]              # backends, threads, rounds, min_run_time, batch, side, tolerance (of a
                           # backend's output against eager, relative: default 1e-3)
    # breakdown = true     where the eager time goes (convs, physics, glue, layout) per architecture
    [quantize]             # INT8 priors on ONNX Runtime (spade quantize), physics in float
    models = "pruned"      # "pruned" (every pruned model) or "all" (the unpruned / recursive ones too)
    samples = 8            # calibration images, from [data] train (never the test images) or data = ...
    # rounds = 5, min_run_time = 0.5: the interleaved timing of each INT8 model (threads, side: [profile])
    [budget]               # latency-budget mode: the best pruned model at least this much faster
    speedup = 2.0          # than its unpruned model (eager); backend = "eager"
    [report]
    out = "reports/cs25"   # where the report goes (default: OUT/report), relative to the current folder
"""
from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

from ..errors import SpadeError, require
from ..fileio import BENCH_PREFIX, BENCH_README, bench_hint, bench_path
from ..finetune.config import TrainConfig
from ..finetune.strategies import available as registered
from ..finetune.strategies import build_strategies, parse_spec
from ..jobs.finetuning import strategy_options
from ..limits import check_count
from ..models import get_family, is_factory, split_source
from ..profile import BACKENDS, TOLERANCE
from ..profile.onnx_export import require_onnx
from ..profile.quantize import INT8_BACKEND
from ..prune import CRITERIA
from ..prune.api import SCOPES

TOP = {"title", "notes", "data", "models", "prune", "finetune", "profile", "quantize", "budget", "report"}
DATA = {"test", "train", "protocol"}
MODEL = {"name", "role", "file", "function", "import", "train", "distill", "test", "train_data", "protocol"}
SOURCES = ("file", "function", "import", "train", "distill")
ROLES = ("unpruned", "recursive")
IMPORT = {"weights", "phi", "qinit", "mask", "ratio"}
DISTILL_TRAINING = ("steps", "batch", "lr", "patch", "seed")
DISTILL = {"family", "preset", "teacher", "data", "iterates", "init", *DISTILL_TRAINING}
DISTILL_INIT = ("random", "teacher")
PRUNE = {"ratios", "importance", "scope", "steps", "round_to", "depth", "samples", "seed", "data", "reconstruct",
         "crop", "ridge", "progressive", "speedups", "plan_depth", "depth_refit"}
TRAINING = {"steps", "batch", "lr", "schedule", "clip", "loss", "iterates", "transforms", "patch", "seed",
            "data_mode", "noise", "test_time"}
FINETUNE = {"strategies"} | TRAINING
#: recipe keys that are strategy options, not TrainConfig fields; the recipe's noise is TrainConfig.noise_level
OPTIONS = ("loss", "iterates", "transforms", "test_time")
OPTION_OWNERS = {"loss": {"supervised", "school"}, "iterates": {"school"}, "transforms": {"self-supervised"}}
PROFILE = {"backends", "threads", "rounds", "min_run_time", "batch", "side", "breakdown", "tolerance"}
QUANTIZE = {"models", "samples", "data", "rounds", "min_run_time"}
QUANTIZE_MODELS = ("pruned", "all")
BUDGET = {"speedup", "backend"}
REPORT = {"out"}
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def _table(value, where: str, allowed: set) -> dict:
    require(isinstance(value, dict), f"[{where}] must be a table")
    unknown = sorted(set(value) - allowed)
    require(not unknown, f"[{where}] has unknown key(s) {unknown}: allowed are {sorted(allowed)}")
    return dict(value)


def _int(value, where: str, low: int = 1) -> int:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= low,
            f"{where} = {value!r} must be a whole number >= {low}")
    return value


def _number(value, where: str, low: float = 0.0, high: float = math.inf) -> float:
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and low < value < high,
            f"{where} = {value!r} must be a number in ({low:g}, {high:g})")
    return float(value)


#: where the files of an import come from (README: 'Benchmark data')
IMPORT_ORIGIN = ("the official ISTA-Net+ weights (model/.../net_params_200.pkl), Phi, Qinit and masks "
                 "(sampling_matrix/) come from the ISTA-Net-PyTorch release, "
                 "github.com/jianzhangcs/ISTA-Net-PyTorch")


def _path(base: Path, value, where: str, origin: str = "") -> str:
    """A file of the recipe: relative to its folder, or ``$SPADE_BENCH_DATA/...``; a
    missing one is named with ``origin`` (where to get it)."""
    require(isinstance(value, str) and value, f"{where} must be a path (relative to the recipe's folder, "
                                              f"or {BENCH_PREFIX}...)")
    path = (base / bench_path(value)).resolve()
    hint = bench_hint(value) if not origin else f" ({origin}; see {BENCH_README})"
    require(path.is_file(), f"{where}: {path} does not exist" + hint)
    return str(path)


def strategy_slug(strategy: str) -> str:
    """A file-name part for a strategy spec: ``school:1,self-supervised:0.5`` -> ``school+self-supervised``."""
    return "+".join(name for name, _ in parse_spec(strategy))


def _strategy(text, where: str) -> str:
    require(isinstance(text, str) and text.strip(), f"{where}: a strategy is a name or 'NAME:WEIGHT,...'")
    known = registered()
    for name, _ in parse_spec(text):
        require(name in known, f"{where}: unknown strategy '{name}': registered are {sorted(known)}")
    return text.replace(" ", "")


def _finetune_settings(strategy: str, settings: dict) -> dict:
    """One strategy's settings checked by the engine's own schema: ``{"train": TrainConfig,
    "test_time", "loss", "iterates", "transforms"}``."""
    where = f"[finetune] strategy '{strategy}'"
    options = {k: settings[k] for k in OPTIONS if k in settings}
    test_time = options.pop("test_time", False)
    require(isinstance(test_time, bool), f"{where}: test_time = {test_time!r} must be true or false")
    if "transforms" in options:
        t = options["transforms"]
        require(isinstance(t, list) and all(isinstance(v, str) for v in t),
                f"{where}: transforms = {t!r} must be a list of names, e.g. [\"rotate\", \"flip\"]")
        options["transforms"] = tuple(t)
    train = {("noise_level" if k == "noise" else k): v for k, v in settings.items() if k not in OPTIONS}
    config = TrainConfig.from_mapping(train, where)
    per = strategy_options([n for n, _ in parse_spec(strategy)], options.get("loss"), options.get("iterates"),
                           options.get("transforms", ()))
    built = build_strategies(strategy, per)  # the strategies check their own options (names, ranges)
    uses_gt = [s.name for _, s in built if s.uses_ground_truth]
    require(not (test_time and uses_gt), f"{where}: test_time adapts to the test measurements, but {uses_gt} "
                                         "uses ground truth: set test_time for school / self-supervised only")
    return {"train": config, "test_time": test_time, **options}


def _model(entry, i: int, base: Path, data: dict) -> dict:
    where = f"models[{i}]"
    m = _table(entry, where, MODEL)
    require(isinstance(m.get("name"), str) and NAME.match(m["name"]),
            f"{where}.name = {m.get('name')!r} must be lower-case letters, digits, '-', '_' or '.'")
    m.setdefault("role", "unpruned")
    require(m["role"] in ROLES, f"{where}.role = {m['role']!r}: choose one of {list(ROLES)}")
    given = [s for s in SOURCES if s in m]
    require(len(given) == 1, f"{where} ({m['name']}) needs exactly one source of {list(SOURCES)}, got {given}")
    if "file" in m:
        require(not (isinstance(m["file"], str) and is_factory(m["file"]) and not (base / m["file"]).exists()),
                f"{where}.file = {m['file']!r} is not a file: a function of yours goes in function = {m['file']!r}")
        m["file"] = _path(base, m["file"], f"{where}.file")
    elif "function" in m:
        require(isinstance(m["function"], str), f"{where}.function must be a string, e.g. \"mynets:build\"")
        factory, file = split_source(m["function"])
        require(file is None, f"{where}.function = {m['function']!r}: name the function only (MODULE:FUNCTION); "
                              "the pipeline prunes and fine-tunes it itself")
        m["function"] = factory
    elif "train" in m:
        m["train"] = _path(base, m["train"], f"{where}.train")
    elif "import" in m:
        imp = _table(m["import"], f"{where}.import", IMPORT)
        require("weights" in imp, f"{where}.import needs 'weights' (and phi + qinit, or mask)")
        for key in ("weights", "phi", "qinit", "mask"):
            if key in imp:
                imp[key] = _path(base, imp[key], f"{where}.import.{key}", IMPORT_ORIGIN)
        m["import"] = imp
    else:
        d = _table(m["distill"], f"{where}.distill", DISTILL)
        require("family" in d and "teacher" in d and "steps" in d,
                f"{where}.distill needs 'family', 'teacher' (a model name) and 'steps'")
        d["train"] = TrainConfig.from_mapping({"data_mode": "patches", **{k: d[k] for k in DISTILL_TRAINING if k in d}},
                                              f"{where}.distill")
        iterates = d.setdefault("iterates", 0.0)
        require(isinstance(iterates, (int, float)) and not isinstance(iterates, bool) and iterates >= 0,
                f"{where}.distill iterates = {iterates!r}: give the weight of matching the teacher's iterations (>= 0)")
        init = d.setdefault("init", "random")
        require(init in DISTILL_INIT, f"{where}.distill init = {init!r}: choose one of {list(DISTILL_INIT)}")
        d.setdefault("data", m.get("train_data", data.get("train")))
        require(d["data"], f"{where}.distill needs training images: give [data] train or distill.data")
        family = get_family(d["family"])
        require("preset" not in d or d["preset"] in family.presets,
                f"{where}.distill preset '{d.get('preset')}' is unknown for {family.name}: {sorted(family.presets)}")
        m["distill"] = d
    m.setdefault("test", data.get("test"))
    require(m["test"], f"{where} ({m['name']}) has no test images: give [data] test or models.test")
    m.setdefault("train_data", data.get("train"))
    m.setdefault("protocol", data.get("protocol"))
    return m


def _models(raw: dict, base: Path) -> list[dict]:
    """``[[models]]`` with ``[data]`` defaults filled; teachers of distilled models checked."""
    data = _table(raw.get("data", {}), "data", DATA)
    models = raw.get("models")
    require(isinstance(models, list) and models, "the recipe needs at least one [[models]] entry")
    models = [_model(m, i, base, data) for i, m in enumerate(models)]
    names = [m["name"] for m in models]
    require(len(set(names)) == len(names), f"model names must be unique: {names}")
    for m in models:
        if "distill" in m:
            teacher = m["distill"]["teacher"]
            require(teacher in names and teacher != m["name"] and "distill" not in models[names.index(teacher)],
                    f"models '{m['name']}': distill.teacher '{teacher}' must name another (not distilled) model "
                    f"of the recipe: {names}")
    require(any(m["role"] == "unpruned" for m in models), "the recipe needs at least one model with role 'unpruned'")
    return models


def _prune(raw: dict, models: list[dict]) -> dict:
    """``[prune]``: the sweep (ratios x depths) and the criterion."""
    prune = _table(raw.get("prune", {}), "prune", PRUNE)
    speedups = prune.setdefault("speedups", [])
    require(isinstance(speedups, list) and all(isinstance(s, (int, float)) and not isinstance(s, bool) and 1 < s <= 100
                                               for s in speedups),
            f"[prune] speedups = {speedups!r}: give latency targets above 1, e.g. [1.5, 2.5] (times faster)")
    require(len(set(speedups)) == len(speedups), f"[prune] speedups repeat a value: {speedups}")
    prune["speedups"] = [float(s) for s in speedups]
    plan_depth = prune.setdefault("plan_depth", True)
    require(isinstance(plan_depth, bool), f"[prune] plan_depth = {plan_depth!r}: give true or false")
    ratios = prune.setdefault("ratios", [] if speedups else [0.5])
    require(isinstance(ratios, list) and (ratios or speedups),
            "[prune] ratios must be a non-empty list, e.g. [0.25, 0.5] (or give speedups)")
    for r in ratios:
        require(isinstance(r, (int, float)) and not isinstance(r, bool) and 0 <= r < 1,
                f"[prune] ratios = {r!r}: a ratio is the fraction of channels removed, in [0, 1)")
    prune["ratios"] = [float(r) for r in ratios]
    require(len(set(prune["ratios"])) == len(ratios), f"[prune] ratios repeat a value: {ratios}")
    prune.setdefault("importance", "l1")
    require(prune["importance"] in CRITERIA, f"[prune] importance '{prune['importance']}': choose one of {list(CRITERIA)}")
    prune.setdefault("scope", "uniform")
    require(prune["scope"] in SCOPES, f"[prune] scope '{prune['scope']}': choose one of {list(SCOPES)}")
    depth = prune.setdefault("depth", 0)
    depths = depth if isinstance(depth, list) else [depth] * len(ratios)
    require(len(depths) == len(ratios), f"[prune] depth gives {len(depths)} values for {len(ratios)} ratios")
    prune["depth"] = [_int(d, "[prune] depth", 0) for d in depths]
    require(all(r > 0 or d > 0 for r, d in zip(prune["ratios"], prune["depth"])),
            "[prune] a ratio of 0 needs a depth > 0 (otherwise nothing is pruned)")
    for key in ("steps", "round_to", "samples", "crop"):
        if key in prune:
            _int(prune[key], f"[prune] {key}")
    prune.setdefault("crop", 128)
    require(prune["crop"] >= 8, f"[prune] crop = {prune['crop']}: give a side of at least 8 pixels")
    ridge = prune.setdefault("ridge", 1e-3)
    require(isinstance(ridge, (int, float)) and not isinstance(ridge, bool) and ridge > 0,
            f"[prune] ridge = {ridge!r}: give a number > 0, e.g. 1e-3")
    has_train = all(prune.get("data") or m["train_data"] for m in models if m["role"] == "unpruned")
    reconstruct = prune.setdefault("reconstruct", has_train)
    require(isinstance(reconstruct, bool), f"[prune] reconstruct = {reconstruct!r}: give true or false")
    depth_refit = prune.setdefault("depth_refit", reconstruct)
    require(isinstance(depth_refit, bool), f"[prune] depth_refit = {depth_refit!r}: give true or false")
    require(not depth_refit or has_train, "[prune] depth_refit re-fits iterations on training images: give "
                                          "[data] train or [prune] data, or set depth_refit = false")
    progressive = prune.setdefault("progressive", False)
    require(isinstance(progressive, bool), f"[prune] progressive = {progressive!r}: give true or false")
    require(not progressive or (prune["ratios"] == sorted(set(prune["ratios"])) and not any(prune["depth"])
                                and not prune["speedups"]),
            "[prune] progressive prunes each ratio from the one before: give increasing ratios, no depth and no "
            "speedups")
    require(not reconstruct or has_train, "[prune] reconstruct re-fits the pruned layers on training images: give "
                                          "[data] train or [prune] data, or set reconstruct = false")
    if prune["importance"] in ("taylor", "hessian") or any(prune["depth"]):
        # data-driven pruning scores images with their ground truth: never the test images
        missing = [m["name"] for m in models if m["role"] == "unpruned" and not (prune.get("data") or m["train_data"])]
        require(not missing, f"[prune] importance '{prune['importance']}' / depth pruning needs training images "
                             f"(scored with their ground truth, so never the test set): give [data] train or "
                             f"[prune] data (models {missing})")
    return prune


def _finetune(raw: dict, models: list[dict]) -> dict:
    """``[finetune]``: each strategy's settings, checked by the engine's schema."""
    finetune = _table(raw.get("finetune", {}), "finetune", FINETUNE | set(registered()))
    strategies = finetune.pop("strategies", [])
    require(isinstance(strategies, list), "[finetune] strategies must be a list, e.g. [\"school\"]")
    strategies = [_strategy(s, "[finetune] strategies") for s in strategies]
    require(len(set(strategies)) == len(strategies), f"[finetune] strategies repeat: {strategies}")
    overrides = {n: _table(finetune.pop(n), f"finetune.{n}", TRAINING) for n in list(finetune) if n in registered()}
    per_strategy = {}
    for s in strategies:
        settings = {**finetune}
        parts = [name for name, _ in parse_spec(s)]
        for name in parts:
            settings.update(overrides.get(name, {}))
        require("steps" in settings, f"[finetune] strategy '{s}' needs 'steps'")
        for key, owners in OPTION_OWNERS.items():
            require(key not in settings or set(parts) & owners,
                    f"[finetune] '{key}' applies to {sorted(owners)}, not to strategy '{s}': "
                    f"put it in [finetune.{sorted(owners)[0]}]")
        per_strategy[s] = _finetune_settings(s, settings)
    if any(not settings["test_time"] for settings in per_strategy.values()):
        missing = [m["name"] for m in models if m["role"] == "unpruned" and not m["train_data"]]
        require(not missing, f"fine-tuning uses training images, disjoint from the test images: give [data] train "
                             f"(or [finetune] test_time = true for test-time adaptation) (models {missing})")
    return per_strategy


def _profile(raw: dict) -> dict:
    """``[profile]``: backends and timing settings."""
    profile = _table(raw.get("profile", {}), "profile", PROFILE)
    backends = profile.setdefault("backends", ["eager"])
    require(isinstance(backends, list) and backends and all(b in BACKENDS for b in backends),
            f"[profile] backends {backends!r}: choose from {list(BACKENDS)}")
    for key in ("threads", "rounds", "batch", "side"):
        if key in profile:
            _int(profile[key], f"[profile] {key}")
    if "min_run_time" in profile:
        _number(profile["min_run_time"], "[profile] min_run_time", 0.0, 60.0)
    tolerance = profile.setdefault("tolerance", TOLERANCE)
    require(isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool) and 0 <= tolerance < 1,
            f"[profile] tolerance = {tolerance!r}: give the largest max |backend - eager| / max(1, max |eager|) "
            f"accepted, in [0, 1) (default {TOLERANCE:g})")
    breakdown = profile.setdefault("breakdown", False)
    require(isinstance(breakdown, bool), f"[profile] breakdown = {breakdown!r}: give true or false")
    return profile


def _quantize(raw: dict, models: list[dict]) -> dict:
    """``[quantize]``: which models get INT8 priors, and their calibration (empty: off)."""
    quantize = _table(raw.get("quantize", {}), "quantize", QUANTIZE)
    if not quantize and "quantize" not in raw:
        return {}
    quantize.setdefault("models", "pruned")
    require(quantize["models"] in QUANTIZE_MODELS,
            f"[quantize] models = {quantize['models']!r}: choose one of {list(QUANTIZE_MODELS)}")
    quantize["samples"] = check_count(quantize.setdefault("samples", 8), "MAX_SAMPLES", "[quantize] samples")
    _int(quantize.setdefault("rounds", 5), "[quantize] rounds")
    quantize["min_run_time"] = _number(quantize.setdefault("min_run_time", 0.5), "[quantize] min_run_time", 0.0, 60.0)
    if "data" in quantize:
        require(isinstance(quantize["data"], str) and quantize["data"],
                "[quantize] data must name the calibration images (a folder, 'embedded' or a benchmark set)")
    sources = [m for m in models if quantize["models"] == "all" or m["role"] == "unpruned"]
    missing = [m["name"] for m in sources if not (quantize.get("data") or m["train_data"])]
    require(not missing, f"[quantize] calibrates on training images, never the test images: give [data] train or "
                         f"[quantize] data (models {missing})")
    require_onnx()  # the ONNX packages, before anything runs
    return quantize


def _budget(raw: dict, backends: list[str]) -> dict:
    """``[budget]``: the latency-budget mode (empty: off)."""
    budget = _table(raw.get("budget", {}), "budget", BUDGET)
    if budget:
        budget["speedup"] = _number(budget.get("speedup"), "[budget] speedup", 1.0)
        budget.setdefault("backend", "eager")
        require(budget["backend"] in backends, f"[budget] backend '{budget['backend']}' is not profiled: "
                                               f"add it to [profile] backends {backends} (or give [quantize] "
                                               f"for '{INT8_BACKEND}')")
    return budget


def read_pipeline_recipe(path: str | Path) -> dict:
    """The validated recipe with defaults filled (see the module docstring)."""
    path = Path(path)
    require(path.is_file(), f"recipe {path} does not exist")
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpadeError(f"recipe {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - TOP)
    require(not unknown, f"recipe {path} has unknown key(s) {unknown}: allowed are {sorted(TOP)}")
    base = path.resolve().parent
    models = _models(raw, base)
    prune = _prune(raw, models)
    per_strategy = _finetune(raw, models)
    require(not prune["progressive"] or per_strategy, "[prune] progressive recovers between steps: give "
                                                      "[finetune] strategies (the first one's model is pruned next)")
    profile = _profile(raw)
    own = [m["name"] for m in models if "function" in m]
    require(not own or (profile.get("batch", 1) == 1 and "side" not in profile),
            f"[profile] batch / side: models {own} are timed on the example input their function returns; "
            "drop batch and side")
    quantize = _quantize(raw, models)
    budget = _budget(raw, profile["backends"] + ([INT8_BACKEND] if quantize else []))
    report = _table(raw.get("report", {}), "report", REPORT)
    title = raw.get("title", path.stem)
    notes = raw.get("notes", "")
    require(isinstance(title, str) and isinstance(notes, str), "title and notes must be strings")
    return {"path": str(path.resolve()), "text": text, "title": title, "notes": notes,
            "models": models, "prune": prune, "strategies": per_strategy, "profile": profile, "quantize": quantize,
            "budget": budget,
            "report": report}
