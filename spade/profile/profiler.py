"""Profile model files: cost, verified backends, interleaved latency, speedups.

:func:`profile_models` returns one JSON-serialisable object::

    {"models": [entry, ...],            # one per model x backend, in input order
     "baseline": NAME, "threads": T, "batch": B, "side": N|None, "device": "cpu",
     "hardware": "...", "torch": "...", "versions": {...}, "allocator": {...},
     "timer": {"method", "rounds", "max_rounds", "max_spread", "min_run_time_s", "confidence"},
     "timing": {"clock", "reason", "rounds", "remeasured", "cpu_share"},
     "load_average": {"before", "after", "cpus"},
     "tolerance": ..., "macs_counter": ..., "peak_memory": ...}

and every entry holds ``model`` (the file), ``name``, ``family``, ``sharing``, ``role``
(unpruned / pruned / recursive), ``backend``, ``status`` (ok / failed), ``error``,
``input_shape``, ``params``, ``macs``, ``peak_mem_mb``, ``max_abs_error`` (relative to
max(1, max |eager|)), ``setup_s``, wall-time ``median_ms``, ``iqr_ms``, ``min_ms``,
``cpu_median_ms`` (process CPU time per call), ``runs`` (paired rounds: the same for every
candidate), ``calls``, ``round_ms`` / ``round_cpu_ms`` (one per round),
``page_faults_per_call``, ``speedup`` (median of the per-round ratios baseline / this one,
same backend, on the clock ``timing.clock`` names) with ``speedup_ci`` (its confidence
interval), ``speedup_vs_recursive`` / ``_ci`` and ``recursive`` (against the recursive
model of the same family, same backend), ``speedup_vs_baseline_eager`` (against the
baseline run eagerly, when eager is profiled) and ``flags`` (why the timing is
implausible, after re-timing; empty when it is not). Timing fields are ``None`` for a
failed backend.

All candidates are timed in one paired, interleaved run, re-measured while too noisy or
implausible (:mod:`.trust`); threads are fixed
with ``torch.set_num_threads`` for the run and restored afterwards.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..data import example_pair
from ..errors import SpadeError, require
from ..limits import check_input_size
from ..models import LoadedModel, OwnModel, count_parameters, load_model, model_names
from ..models.adapter import first_tensor
from ..progress import bar
from . import allocator as alloc
from .backends import TOLERANCE, Bound, check_backends, prepare, verify
from .conditions import hardware, load_average, versions
from ..macs import MACS_COUNTER
from .cost import PEAK_MEMORY, forward_cost
from .latency import METHOD, Timing
from .onnx_export import failure_reason
from .stats import CONFIDENCE
from .trust import MAX_SPREAD, Verdict, measure_trusted, speedups


def role_of(spec: dict) -> str:
    """``recursive`` (sharing mode), ``pruned`` (resized layers or a pruning record) or ``unpruned``."""
    if spec.get("config", {}).get("sharing") == "recursive":
        return "recursive"
    if spec.get("shapes") or spec.get("pruning"):
        return "pruned"
    return "unpruned"


@dataclass
class Candidate:
    """A loaded model file with its example inputs."""

    path: str
    name: str
    bound: Bound
    spec: dict
    y: torch.Tensor  #: the timed input
    y_check: torch.Tensor  #: a second input (another crop, other noise) for verification

    @property
    def family(self) -> str:
        return self.spec.get("family", "")

    @property
    def role(self) -> str:
        return role_of(self.spec)


class Called(nn.Module):
    """A user's network bound to all its example inputs but the first:
    ``forward(y) -> model(y, *rest)`` (the first tensor of its output)."""

    def __init__(self, model: nn.Module, rest: tuple):
        super().__init__()
        self.model = model
        self.rest = tuple(rest)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return first_tensor(self.model(y, *self.rest))


def _key(item: str | Path | OwnModel) -> str:
    return item.source if isinstance(item, OwnModel) else str(item)


def example_inputs(loaded: LoadedModel, batch: int, side: int | None, seeds=(0, 1),
                   device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """Measurements ``y`` of embedded photographs for a loaded model, one per seed (another
    crop and other noise each; ``spade.data.example_pair``)."""
    channels = loaded.model.config.get("image_channels", 1)  # the physics uses them where colour is open (SR)
    return [example_pair(loaded.physics, batch, side, channels=channels, seed=s, device=device)[1] for s in seeds]


def _perturbed(y: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Another input like ``y`` (5% noise) for verifying backends of a user's network."""
    if not (y.is_floating_point() or y.is_complex()):
        return y
    noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype).to(y.device)
    return y + 0.05 * y.abs().mean() * noise


def own_candidate(own: OwnModel, name: str, batch: int, side: int | None) -> Candidate:
    """A user's network timed on the first of its own example inputs (the others bound in)."""
    require(batch == 1 and side is None, f"{own.source} is timed on the example input its function returns: drop "
                                         "--batch and --side (or return the input you want timed)")
    items = list(own.example) if isinstance(own.example, (tuple, list)) else [own.example]
    require(bool(items) and isinstance(items[0], torch.Tensor),
            f"{own.source}: the profiler times the model on its first example input, which must be a tensor (got "
            f"{type(items[0]).__name__ if items else 'no input'}): return example inputs as a tuple, tensor first")
    y = items[0]
    return Candidate(own.source, name, Called(own.model, tuple(items[1:])).eval(), own.spec, y, _perturbed(y))


def load_candidates(paths: list, batch: int, side: int | None, device: torch.device) -> list[Candidate]:
    """Load model files (and take users' loaded networks) and measure their example inputs."""
    out = []
    for path, name in zip(paths, model_names([_key(p) for p in paths])):
        if isinstance(path, OwnModel):
            out.append(own_candidate(path, name, batch, side))
            continue
        loaded = load_model(path, device)
        require(loaded.physics is not None, f"model file {path} stores no physics: profiling needs its operator")
        y, y_check = example_inputs(loaded, batch, side, device=device)
        out.append(Candidate(path, name, Bound(loaded.model, loaded.physics).eval(), loaded.spec, y, y_check))
    return out


def _recursive_for(cands: list[Candidate], recursive: str | None) -> dict[str, Candidate]:
    """The recursive reference of every family (the one named, else the family's only one)."""
    if recursive is not None:
        ref = next(c for c in cands if c.path == recursive)
        return {c.family: ref for c in cands}
    out: dict[str, Candidate] = {}
    for c in cands:
        if c.role == "recursive":
            require(c.family not in out, f"several recursive {c.family} models ({out.get(c.family, c).name}, "
                                         f"{c.name}): name the reference with --recursive")
            out[c.family] = c
    return out


def _check_comparable(ref: Candidate, cands: list[Candidate], role: str) -> None:
    """A named baseline or recursive reference must solve the same problem (family,
    physics kind, input shape) as every model it is compared with."""
    for c in cands:
        require(c.family == ref.family and (c.spec.get("physics") or {}).get("kind") ==
                (ref.spec.get("physics") or {}).get("kind") and c.y.shape == ref.y.shape,
                f"--{role} {ref.name} ({ref.family}, {(ref.spec.get('physics') or {}).get('kind')}, input "
                f"{tuple(ref.y.shape)}) cannot be compared with {c.name} ({c.family}, "
                f"{(c.spec.get('physics') or {}).get('kind')}, input {tuple(c.y.shape)}): give a model of the same "
                "family and physics")


def _check_settings(threads, batch, side, rounds, min_run_time, tolerance, max_rounds, max_spread) -> None:
    require(threads >= 1, f"threads must be >= 1 (got {threads})")
    check_input_size(batch, side)
    require(rounds >= 1, f"rounds must be >= 1 (got {rounds})")
    require(0 < min_run_time < math.inf, f"min run time must be a finite number > 0 s (got {min_run_time})")
    require(tolerance >= 0, f"tolerance must be >= 0 (got {tolerance})")
    require(max_rounds is None or max_rounds >= rounds, f"max rounds must be >= rounds ({rounds}); got {max_rounds}")
    require(0 < max_spread < 10, f"max spread must be a share of the speedup in (0, 10) (got {max_spread})")


def profile_models(models: list[str | Path | OwnModel], backends: list[str] = ("eager",), batch: int = 1,
                   threads: int = 1,
                   side: int | None = None, device: str | torch.device = "cpu", baseline: str | Path | None = None,
                   recursive: str | Path | None = None, rounds: int = 15, min_run_time: float = 1.0,
                   allocator: str = "pinned", tolerance: float = TOLERANCE, max_rounds: int | None = None,
                   max_spread: float = MAX_SPREAD,
                   log: Callable[[str], None] = lambda msg: None, progress: bool = True) -> dict:
    """Profile model files (see module docstring). ``baseline`` and ``recursive`` are
    added to ``models`` when not among them; the baseline defaults to the first model.
    A user's network comes loaded (:class:`~spade.models.OwnModel`, e.g. from
    ``spade.prune.load_own("mynets:build@pruned.pt")``): it is timed on the first of its
    example inputs, the others bound in, and named by its source string.
    ``progress``: bars on stderr over the candidates prepared and the timed rounds."""
    _check_settings(threads, batch, side, rounds, min_run_time, tolerance, max_rounds, max_spread)
    backends = check_backends(list(backends))
    device = torch.device(device)
    items = {_key(m): m if isinstance(m, OwnModel) else str(m) for m in models}
    require(len(items) > 0, "no model to profile")
    baseline_given = baseline is not None
    baseline = _key(baseline) if baseline is not None else next(iter(items))
    recursive = None if recursive is None else _key(recursive)
    keys = list(dict.fromkeys([baseline] + list(items) + ([recursive] if recursive is not None else [])))
    paths = [items.get(k, k) for k in keys]
    allocator_state = alloc.configure(allocator)
    load_before = load_average()
    with contextlib.ExitStack() as stack:
        stack.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(threads)
        cands = load_candidates(paths, batch, side, device)  # the baseline first
        if "compile" in backends:  # every model compiles the same forward code: allow a graph each, fail loudly
            import torch._dynamo as dynamo

            stack.enter_context(dynamo.config.patch(recompile_limit=max(8, 2 * len(cands)),
                                                           fail_on_recompile_limit_hit=True))
        refs = _recursive_for(cands, None if recursive is None else str(recursive))
        for role, named in (("baseline", baseline if baseline_given else None), ("recursive", recursive)):
            if named is not None:
                _check_comparable(next(c for c in cands if c.path == str(named)), cands, role)
        entries, runners = [], {}
        with bar(cands, desc=f"preparing {len(cands)} model(s) on {', '.join(backends)}", unit="model",
                 show=progress) as shown:
            for c in shown:
                entries += _prepare_backends(c, backends, threads, device, tolerance, runners, log)
        fns = {key: r.timed for key, r in runners.items()}
        pairs = _pairs(cands, backends, refs, fns)
        log(f"timing {len(fns)} candidate(s): {rounds} paired rounds (up to {max_rounds or 3 * rounds}), "
            f">= {min_run_time:g} s per block")
        macs = {f"{e['name']}|{e['backend']}": e["macs"] for e in entries}
        against_base = [(k, ref) for k, ref in pairs if ref.rpartition("|")[0] == cands[0].name]
        timings, verdict = measure_trusted(fns, pairs, macs, _twins(entries, fns), macs_pairs=against_base,
                                           rounds=rounds, max_rounds=max_rounds,
                                           max_spread=max_spread, min_run_time=min_run_time, load=load_average,
                                           cpus=os.cpu_count(), threads=threads, log=log, progress=progress)
        faults = {key: _faults_per_call(fn) for key, fn in fns.items()}
    base_name = cands[0].name
    for e in entries:
        _add_timing(e, timings, faults, verdict, base_name, refs.get(e["family"]))
    dev_versions = versions()
    return {"models": entries, "baseline": cands[0].name, "threads": threads, "batch": batch, "side": side,
            "device": str(device), "hardware": hardware(device), "torch": dev_versions["torch"],
            "versions": dev_versions, "allocator": allocator_state.to_json(),
            "timer": {"method": METHOD, "rounds": rounds, "max_rounds": max_rounds or 3 * rounds,
                      "max_spread": max_spread, "min_run_time_s": min_run_time, "confidence": CONFIDENCE},
            "timing": verdict.to_json(),
            "load_average": {"before": load_before, "after": load_average(), "cpus": os.cpu_count()},
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "tolerance": tolerance, "macs_counter": MACS_COUNTER, "peak_memory": PEAK_MEMORY}


def _prepare_backends(c: Candidate, backends: list[str], threads: int, device: torch.device, tolerance: float,
                      runners: dict, log: Callable[[str], None]) -> list[dict]:
    """The entries of one model (cost, then each backend built and verified); verified
    backends are added to ``runners`` under ``"NAME|BACKEND"``."""
    cost = forward_cost(lambda: c.bound(c.y))
    common = {"model": c.path, "name": c.name, "family": c.family, "sharing": c.spec.get("config", {}).get("sharing"),
              "role": c.role, "input_shape": list(c.y.shape), "params": count_parameters(c.bound.model), **cost}
    entries = []
    for b in backends:
        entry = {**common, "backend": b, "status": "ok", "error": None, "max_abs_error": None, "setup_s": None}
        log(f"preparing {c.name} on {b}")
        try:
            runner = prepare(b, c.bound, c.y, threads, device)
            entry["setup_s"] = runner.setup_s
            entry["max_abs_error"] = verify(runner.run, c.bound, [c.y, c.y_check])
            if not entry["max_abs_error"] <= tolerance:
                raise SpadeError(f"output differs from eager by {entry['max_abs_error']:.3g} (tolerance {tolerance:g})")
            runners[f"{c.name}|{b}"] = runner
        except Exception as exc:  # a backend that fails is reported, never hidden
            entry.update(status="failed", error=failure_reason(exc))
            log(f"  {b} failed for {c.name}: {entry['error']}")
        entries.append(entry)
    return entries


def _faults_per_call(timed: Callable, calls: int = 2) -> float | None:
    before = alloc.page_faults()
    for _ in range(calls):
        timed()
    after = alloc.page_faults()
    return None if before is None else (after - before) / calls


def _pairs(cands: list[Candidate], backends: list[str], refs: dict, fns: dict) -> list[tuple[str, str]]:
    """Every timed ``(candidate, reference)`` pair: against the baseline (same backend and
    eager) and against the family's recursive model."""
    out = []
    for c in cands:
        for b in backends:
            key = f"{c.name}|{b}"
            if key not in fns:
                continue
            ref = refs.get(c.family)
            for other in (f"{cands[0].name}|{b}", f"{cands[0].name}|eager", None if ref is None else f"{ref.name}|{b}"):
                if other in fns and other != key and (key, other) not in out:
                    out.append((key, other))
    return out


def _twins(entries: list[dict], fns: dict) -> list[list[str]]:
    """Groups of timed candidates with one architecture (same family, sharing, cost, input, backend)."""
    groups: dict[tuple, list[str]] = {}
    for e in entries:
        key = f"{e['name']}|{e['backend']}"
        if key in fns:
            sig = (e["backend"], e["family"], e["sharing"], e["macs"], e["params"], tuple(e["input_shape"]))
            groups.setdefault(sig, []).append(key)
    return [g for g in groups.values() if len(g) > 1]


def _add_timing(e: dict, timings: dict[str, Timing], faults: dict, verdict: Verdict, baseline: str, ref) -> None:
    fields = ("median_ms", "iqr_ms", "min_ms", "cpu_median_ms", "runs", "calls", "round_ms", "round_cpu_ms",
              "page_faults_per_call", "speedup", "speedup_ci", "recursive", "speedup_vs_recursive",
              "speedup_vs_recursive_ci", "speedup_vs_baseline_eager", "flags")
    e.update(dict.fromkeys(fields))
    e["recursive"] = None if ref is None else ref.name
    key = f"{e['name']}|{e['backend']}"
    if key not in timings:
        return
    e.update(timings[key].to_json())
    e["page_faults_per_call"] = faults[key]
    e["flags"] = verdict.flags.get(key, [])
    for prefix, other in (("speedup", f"{baseline}|{e['backend']}"),
                          ("speedup_vs_recursive", None if ref is None else f"{ref.name}|{e['backend']}"),
                          ("speedup_vs_baseline_eager", f"{baseline}|eager")):
        if other == key:
            e[prefix] = 1.0
            if prefix != "speedup_vs_baseline_eager":
                e[f"{prefix}_ci"] = [1.0, 1.0]
        elif other in timings:
            s = speedups(timings, [(key, other)], verdict.clock)[(key, other)]
            e[prefix] = s.median
            if prefix != "speedup_vs_baseline_eager":
                e[f"{prefix}_ci"] = [s.low, s.high]
