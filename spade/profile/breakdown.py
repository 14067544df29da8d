"""Where the time of one call goes: ``torch.profiler`` time per part, and the Amdahl ceiling.

Every convolution of the network gets a ``record_function`` scope named by its widths
(``conv 32->32 3x3``, forward hooks) and every operator method of the physics (``A``,
``A_adjoint``, ``A_dagger``, ``AtA``, ``prox_l2``, ...) a ``physics`` scope (instance
attributes wrapping the bound methods, removed afterwards). Each profiled operator's
*self* CPU time goes to the innermost scope around it; operators outside every scope go
by their outermost operator's name to

* ``glue``: element-wise work (thresholds, activations, residual adds, step sizes);
* ``layout``: views, copies, concatenations, block (un)shuffles, allocation;
* ``other``: any other operator;

and the time of the call itself outside any operator (Python, dispatch, hooks) is
``python``. The parts add up to the profiled time of a call by construction; the
profiled time is then compared with the latency measured without the profiler
(``agreement`` = profiled / measured, the profiler's own overhead included).

Amdahl ceilings: ``total / (total - convs)`` (the priors' layers cost nothing) and
``total / (physics + python + other)`` (the priors' layers and the element-wise /
layout glue around them cost nothing).
"""
from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from typing import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from ..errors import require
from . import allocator as alloc
from .conditions import hardware, load_average, versions
from .latency import measure_interleaved
from .profiler import load_candidates

CONV, PHYSICS, CALL = "spade::conv ", "spade::physics", "spade::call"
#: physics methods timed as the physics (those a physics object has)
PHYSICS_METHODS = ("A", "A_adjoint", "A_dagger", "AtA", "prox_l2", "data_consistency", "prox", "solve")
GLUE_OPS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "relu", "relu_", "sign", "abs", "clamp",
            "clamp_min", "clamp_max", "where", "neg", "sigmoid", "tanh", "softplus", "exp", "pow", "sqrt", "rsqrt",
            "leaky_relu", "gelu", "prelu", "hardtanh", "threshold", "maximum", "minimum", "addcmul", "lerp",
            "rsub", "mean", "sum", "softshrink", "silu", "square", "reciprocal"}
LAYOUT_OPS = {"view", "reshape", "permute", "contiguous", "clone", "copy_", "cat", "stack", "unfold", "fold",
              "pixel_shuffle", "pixel_unshuffle", "transpose", "t", "_unsafe_view", "as_strided", "expand",
              "narrow", "slice", "select", "squeeze", "unsqueeze", "flatten", "unflatten", "chunk", "split",
              "empty", "empty_like", "zeros", "zeros_like", "ones_like", "full", "to", "_to_copy", "pad",
              "constant_pad_nd", "alias", "detach", "lift_fresh", "resolve_conj", "resolve_neg",
              "empty_strided", "new_empty", "new_zeros", "fill_", "zero_", "repeat", "index_select", "roll"}


def conv_label(m: nn.modules.conv._ConvNd) -> str:
    """``conv IN->OUT KxK`` (``convT`` for transposed, ``/gG`` for grouped)."""
    kind = "convT" if m.transposed else "conv"
    groups = f" /g{m.groups}" if m.groups > 1 else ""
    return f"{kind} {m.in_channels}->{m.out_channels} {'x'.join(map(str, m.kernel_size))}{groups}"


@contextlib.contextmanager
def scopes(model: nn.Module, physics: nn.Module | None):
    """Profiler scopes on every convolution of ``model`` and the methods of ``physics``."""
    handles, open_scopes = [], []
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            label = CONV + conv_label(m)

            def enter(mod, args, label=label):
                ctx = record_function(label)
                ctx.__enter__()
                open_scopes.append(ctx)

            def leave(mod, args, out):
                open_scopes.pop().__exit__(None, None, None)

            handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    patched = []
    if physics is not None:
        for name in PHYSICS_METHODS:
            method = getattr(physics, name, None)
            if callable(method) and name not in vars(physics):
                def wrapped(*args, _method=method, _name=name, **kwargs):
                    with record_function(f"{PHYSICS} {_name}"):
                        return _method(*args, **kwargs)
                object.__setattr__(physics, name, wrapped)
                patched.append(name)
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for name in patched:
            object.__delattr__(physics, name)


def _op_name(name: str) -> str:
    return name.split("::", 1)[-1]


def part_of(event) -> str | None:
    """The part an event's self time belongs to (module docstring); None outside the calls."""
    chain, e = [], event
    while e is not None and e.name != CALL:
        chain.append(e)
        e = e.cpu_parent
    if e is None:
        return None
    for e in chain:  # innermost first
        if e.name.startswith(CONV):
            return e.name[len(CONV):]
        if e.name.startswith(PHYSICS):
            return "physics"
    if not chain:
        return "python"
    top = _op_name(chain[-1].name)
    if top in GLUE_OPS:
        return "glue"
    if top in LAYOUT_OPS:
        return "layout"
    return "other"


def profile_parts(fn: Callable[[], object], calls: int = 3) -> tuple[dict[str, float], float]:
    """``({part: ms per call}, profiled ms per call)`` of ``fn`` (scopes already set)."""
    fn()  # warm-up outside the profiler
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            with record_function(CALL):
                fn()
    parts: dict[str, float] = defaultdict(float)
    total = 0.0
    for e in prof.events():
        if e.name == CALL:
            total += e.cpu_time_total
        part = part_of(e)
        if part is not None:  # None: profiler bookkeeping outside the calls
            parts[part] += e.self_cpu_time_total
    return {k: v / calls / 1e3 for k, v in parts.items()}, total / calls / 1e3


def summarise(parts: dict[str, float], total_ms: float, measured_ms: float | None) -> dict:
    """Parts grouped (convs by width, physics, glue, layout, python, other) with the ceilings."""
    fixed = ("physics", "glue", "layout", "python", "other")
    convs = {k: v for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if k not in fixed}
    conv_ms = sum(convs.values())
    get = {k: parts.get(k, 0.0) for k in fixed}
    rest = get["physics"] + get["python"] + get["other"]
    parts_sum = conv_ms + sum(get.values())
    return {"convs": convs, "conv_ms": conv_ms, **{f"{k}_ms": v for k, v in get.items()},
            "parts_sum_ms": parts_sum, "profiled_ms": total_ms, "measured_ms": measured_ms,
            "agreement": None if not measured_ms else parts_sum / measured_ms,
            "ceiling_convs_free": parts_sum / max(parts_sum - conv_ms, 1e-9),
            "ceiling_priors_free": parts_sum / max(rest, 1e-9)}


def breakdown_models(models: list[str], batch: int = 1, threads: int = 1, side: int | None = None,
                     calls: int = 3, rounds: int = 3, min_run_time: float = 0.5, allocator: str = "pinned",
                     log: Callable[[str], None] = lambda msg: None) -> dict:
    """Breakdown of every model file (eager, CPU), with its latency measured interleaved."""

    require(calls >= 1, f"calls must be >= 1 (got {calls})")
    require(threads >= 1 and batch >= 1 and rounds >= 1, "threads, batch and rounds must be >= 1")
    state = alloc.configure(allocator)
    load_before = load_average()
    with contextlib.ExitStack() as stack:
        stack.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(threads)
        cands = load_candidates([str(m) for m in models], batch, side, torch.device("cpu"))
        runs = {c.name: _runner(c) for c in cands}
        log(f"timing {len(cands)} model(s): {rounds} interleaved rounds")
        timings = measure_interleaved(runs, rounds=rounds, min_run_time=min_run_time)
        entries = []
        for c in cands:
            log(f"profiling {c.name}")
            with scopes(c.bound.model, c.bound.physics):
                parts, total = profile_parts(runs[c.name], calls)
            entries.append({"model": c.path, "name": c.name, "role": c.role, "input_shape": list(c.y.shape),
                            **summarise(parts, total, timings[c.name].median * 1e3)})
    return {"models": entries, "backend": "eager", "threads": threads, "batch": batch, "side": side,
            "calls_profiled": calls, "hardware": hardware(torch.device("cpu")), "versions": versions(),
            "allocator": state.to_json(),
            "load_average": {"before": load_before, "after": load_average(), "cpus": os.cpu_count()}}


def _runner(c) -> Callable[[], object]:
    def run():
        with torch.inference_mode():
            return c.bound(c.y)
    return run


def render_text(result: dict) -> str:
    """The breakdown as a table: one column per model, ms per call and share."""
    ms = result["models"]
    la = result["load_average"]
    lines = [f"time per part (torch.profiler self CPU time, eager, batch {result['batch']}, threads "
             f"{result['threads']}, {result['calls_profiled']} profiled calls; load average {la['before']} / "
             f"{la['after']} on {la['cpus']} CPUs)", ""]
    width = max(14, *(len(m["name"]) for m in ms))
    lines.append(f"{'part':<24}" + "".join(f"{m['name'][:width]:>{width + 10}}" for m in ms))
    rows = sorted({k for m in ms for k in m["convs"]}, key=lambda k: -max(m["convs"].get(k, 0) for m in ms))
    keys = [(f"  {k}", lambda m, k=k: m["convs"].get(k, 0.0)) for k in rows]
    keys = [("convs (priors' layers)", lambda m: m["conv_ms"])] + keys + [
        (label, lambda m, f=f: m[f]) for label, f in
        (("physics", "physics_ms"), ("glue (element-wise)", "glue_ms"), ("layout / allocation", "layout_ms"),
         ("python / dispatch", "python_ms"), ("other ops", "other_ms"))]
    for label, get in keys:
        lines.append(f"{label:<24}" + "".join(
            f"{get(m):>{width + 2}.2f} ms {get(m) / m['parts_sum_ms']:>4.0%}" for m in ms))
    lines.append(f"{'sum of parts':<24}" + "".join(f"{m['parts_sum_ms']:>{width + 2}.2f} ms     " for m in ms))
    lines.append(f"{'measured (no profiler)':<24}" + "".join(
        f"{m['measured_ms']:>{width + 2}.2f} ms     " for m in ms))
    lines.append(f"{'sum / measured':<24}" + "".join(f"{m['agreement']:>{width + 9}.2f}  " for m in ms))
    lines.append(f"{'ceiling: convs free':<24}" + "".join(f"{m['ceiling_convs_free']:>{width + 8}.2f}x  "
                                                          for m in ms))
    lines.append(f"{'ceiling: priors free':<24}" + "".join(f"{m['ceiling_priors_free']:>{width + 8}.2f}x  "
                                                           for m in ms))
    return "\n".join(lines)
