"""Latency-aware widths: a measured latency table and a greedy plan under a latency budget.

**The table.** Every convolution of the network is timed *in isolation* at each pair of
candidate widths its prunable groups can take (the input shape it sees in the model,
same batch, threads and backend; glibc's allocator pinned as the profiler does, see
:mod:`spade.profile.allocator`), so the pruner knows e.g. that 24 channels cost as much
as 32 on this CPU and 16 is fast. Entries are cached in a JSON file the user keeps,
under a *target key* (CPU, backend, threads, torch version) and a *layer key* (layer
type, kernel, stride, padding, groups, input shape with its channels, output channels)::

    {"format": "spade-latency-table", "version": 1,
     "targets": {"<cpu>|eager|threads=1|allocator=glibc:pinned|torch=2.13.0": {"<layer key>": ms, ...}}}

**The prediction.** ``latency(widths) = fixed + scale * sum over convolutions of
table[c_in, c_out]``. The unpruned model and its convolutions at full width are timed
interleaved when planning: ``fixed`` (physics, glue, everything else) is the model's
time minus its convolutions' times, and ``scale`` their times now over the cached
entries (a shared machine is slower or faster than when the table was made).

**The plan** (:func:`plan_widths`, a pure function): from full widths, repeatedly move
the one group to the lower candidate width with the largest predicted milliseconds saved
per unit of importance removed (the sum of the importance of the channels it loses, the
least important first; every lower candidate is considered, so a plateau such as 32 -> 24
never blocks 32 -> 16) until the prediction meets the target. Candidate widths are the
multiples of a group's step (8 for groups of 16 channels or more), so ``round_to`` follows
from the table. How many iterations to keep is planned around this, per depth, by
:func:`spade.jobs.latency_budget.plan_and_prune`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import SpadeError, require
from ..fileio import write_text
from ..profile import allocator as alloc
from ..profile.conditions import cpu_name
from ..profile.latency import measure_interleaved
from . import calls, criteria
from .graph import Graph

FORMAT, VERSION = "spade-latency-table", 1
BACKENDS = ("eager",)
MODEL, REFERENCE = "the whole model", "the reference model"


@dataclass
class GroupSpec:
    """A prunable group: its name, full width, candidate widths and channel importance."""

    name: str
    width: int
    candidates: list[int]  #: ascending, the full width last
    scores: list[float]  #: importance of each channel (any order)


@dataclass
class ConvSpec:
    """A convolution: its channels follow ``in_group`` / ``out_group`` (None: fixed)."""

    name: str
    c_in: int
    c_out: int
    in_group: str | None
    out_group: str | None
    signature: str  #: layer type, kernel, stride, padding, dilation, groups, bias
    in_shape: tuple  #: the input it sees in the model (N, C, ...)

    def shape(self, c_in: int) -> list[int]:
        return [self.in_shape[0], c_in, *self.in_shape[2:]]

    def key(self, c_in: int, c_out: int) -> str:
        return f"{self.signature} in={self.shape(c_in)} out={c_out}"


@dataclass
class Plan:
    """Chosen widths ``{group: width}`` and the predicted latencies (ms)."""

    widths: dict[str, int]
    predicted_ms: float
    full_ms: float
    target_ms: float
    fixed_ms: float
    moves: list = field(default_factory=list)  #: [[group, from, to, ms saved, importance lost], ...]
    scale: float = 1.0  #: table entries were multiplied by this (machine speed now / when cached)

    def to_json(self) -> dict:
        return asdict(self)


def candidates(width: int, channel_groups: int = 1) -> list[int]:
    """Widths a group may take: multiples of its step (8 from 16 channels up, else width/4
    rounded to the channel groups), the full width included."""
    step = 8 if width >= 16 else max(1, width // 4)
    step = channel_groups * math.ceil(step / channel_groups)
    return sorted({w for w in range(step, width, step)} | {width})


def predict(convs: list[ConvSpec], table: dict[str, float], widths: dict[str, int], fixed_ms: float) -> float:
    """Predicted latency (ms) of the model with groups at ``widths`` (module docstring)."""
    total = fixed_ms
    for c in convs:
        c_in = widths.get(c.in_group, c.c_in) if c.in_group else c.c_in
        c_out = widths.get(c.out_group, c.c_out) if c.out_group else c.c_out
        total += table[c.key(c_in, c_out)]
    return total


def plan_widths(groups: list[GroupSpec], convs: list[ConvSpec], table: dict[str, float], fixed_ms: float,
                target_ms: float) -> Plan:
    """Greedy widths meeting ``target_ms`` by importance per measured millisecond (module
    docstring); raises :class:`SpadeError` when even the narrowest widths miss it."""
    widths = {g.name: g.width for g in groups}
    ranked = {g.name: sorted(g.scores) for g in groups}
    full = predict(convs, table, widths, fixed_ms)
    now, moves = full, []
    while now > target_ms:
        best = None
        for g in groups:
            w = widths[g.name]
            for cand in (c for c in g.candidates if c < w):
                saved = now - predict(convs, table, {**widths, g.name: cand}, fixed_ms)
                lost = sum(ranked[g.name][g.width - w:g.width - cand])
                value = saved / max(lost, 1e-12)
                if saved > 0 and (best is None or value > best[0]):
                    best = (value, g.name, w, cand, saved, lost)
        if best is None:
            narrow = predict(convs, table, {g.name: g.candidates[0] for g in groups}, fixed_ms)
            raise SpadeError(f"the target {target_ms:.1f} ms cannot be met: the narrowest widths are predicted at "
                             f"{narrow:.1f} ms ({full / narrow:.2f}x faster than {full:.1f} ms; the physics and "
                             f"glue take {fixed_ms:.1f} ms): ask for less")
        _, name, w, cand, saved, lost = best
        widths[name] = cand
        now -= saved
        moves.append([name, w, cand, round(saved, 4), round(lost, 6)])
    return Plan(widths, now, full, target_ms, fixed_ms, moves)


# ----------------------------------------------------------------------------- the table
def target_key(backend: str, threads: int) -> str:
    """The machine + backend + threads + allocator + torch version a table entry holds for."""
    state = alloc.configure("pinned")
    return f"{cpu_name()}|{backend}|threads={threads}|allocator={state.name}:{state.mode}|torch={torch.__version__}"


def load_table(path: str | os.PathLike | None) -> dict:
    """The table file's contents (an empty table when ``path`` is None or absent)."""
    empty = {"format": FORMAT, "version": VERSION, "targets": {}}
    if path is None or not Path(path).exists():
        return empty
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpadeError(f"cannot read the latency table {path}: {exc}: delete it or name another file") from None
    require(isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("targets"), dict),
            f"{path} is not a SPADE latency table (format '{FORMAT}'): delete it or name another file")
    return data


def conv_specs(model: nn.Module, example, graph: Graph, prunable: dict) -> list[ConvSpec]:
    """Every convolution with the input shape it sees and the groups its channels follow."""
    shapes: dict[nn.Module, tuple] = {}

    def note(mod, args) -> None:
        shapes.setdefault(mod, tuple(args[0].shape))

    handles = [m.register_forward_pre_hook(note) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    try:
        with torch.no_grad(), calls.kept_state(model):
            model.eval()
            calls.guarded(model, example)
    finally:
        for h in handles:
            h.remove()
    follows_in, follows_out = {}, {}
    for g in prunable.values():
        for dep, _ in graph.full_group(g):
            m = dep.target.module
            if isinstance(m, nn.modules.conv._ConvNd):
                if graph.dg.is_out_channel_pruning_fn(dep.handler):
                    follows_out[m] = g.name
                elif graph.dg.is_in_channel_pruning_fn(dep.handler):
                    follows_in[m] = g.name
    out = []
    for name, m in model.named_modules():
        if m in shapes:
            groups = "depthwise" if m.groups == m.in_channels == m.out_channels > 1 else m.groups
            sig = (f"{type(m).__name__} k={list(m.kernel_size)} s={list(m.stride)} p={list(m.padding)} "
                   f"d={list(m.dilation)} g={groups} bias={m.bias is not None}")
            out.append(ConvSpec(name, m.in_channels, m.out_channels, follows_in.get(m), follows_out.get(m), sig,
                                shapes[m]))
    return out


def _layer(c: ConvSpec, c_in: int, c_out: int, like: nn.Module) -> nn.Module:
    groups = c_out if "g=depthwise" in c.signature else like.groups
    return type(like)(c_in, c_out, like.kernel_size, stride=like.stride, padding=like.padding,
                      dilation=like.dilation, groups=groups, bias=like.bias is not None,
                      padding_mode=like.padding_mode).eval()


def measure_layers(model: nn.Module, convs: list[ConvSpec], pairs: dict[str, tuple], threads: int, rounds: int = 3,
                   min_run_time: float = 0.05, extra: dict[str, Callable] | None = None) -> dict[str, float]:
    """Median ms of each layer key in ``pairs`` ``{key: (conv name, c_in, c_out)}``, timed
    interleaved in isolation on its input shape (with the callables ``extra``)."""
    modules = dict(model.named_modules())
    by_name = {c.name: c for c in convs}
    runs = {}
    for key, (name, c_in, c_out) in pairs.items():
        c = by_name[name]
        layer = _layer(c, c_in, c_out, modules[name])
        x = torch.randn(*c.shape(c_in))

        def run(layer=layer, x=x):
            with torch.inference_mode():
                return layer(x)
        runs[key] = run
    runs.update(extra or {})
    if not runs:
        return {}
    timings = measure_interleaved(runs, rounds=rounds, min_run_time=min_run_time)
    return {k: t.median * 1e3 for k, t in timings.items()}


def table_for(model: nn.Module, convs: list[ConvSpec], groups: list[GroupSpec], threads: int, backend: str = "eager",
              path: str | os.PathLike | None = None, log: Callable[[str], None] = lambda m: None, rounds: int = 3,
              min_run_time: float = 0.05) -> dict[str, float]:
    """The entries this model needs (from ``path`` where cached; the rest measured and,
    with ``path``, written back)."""
    require(backend in BACKENDS, f"latency tables are measured on {list(BACKENDS)} (got '{backend}')")
    data = load_table(path)
    key = target_key(backend, threads)
    cached = data["targets"].setdefault(key, {})
    cands = {g.name: g.candidates for g in groups}
    needed = {}
    for c in convs:
        for c_in in cands.get(c.in_group, [c.c_in]):
            for c_out in cands.get(c.out_group, [c.c_out]):
                needed.setdefault(c.key(c_in, c_out), (c.name, c_in, c_out))
    missing = {k: v for k, v in needed.items() if k not in cached}
    log(f"latency table: {len(needed) - len(missing)} of {len(needed)} layer entries cached"
        + (f", measuring {len(missing)}" if missing else ""))
    cached.update(measure_layers(model, convs, missing, threads, rounds, min_run_time))
    if path is not None and missing:
        write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return {k: cached[k] for k in needed}


def group_specs(graph: Graph, importance: str, batches, seed: int) -> tuple[list[GroupSpec], dict]:
    """The prunable groups with their candidate widths and channel importance."""
    prunable = {g.name: g for g in graph.groups if g.interface is None and g.width > g.channel_groups}
    require(prunable, "nothing to prune: every layer keeps its width")
    scorer = criteria.make_importance(importance)
    if importance in criteria.DATA_CRITERIA:
        criteria.set_gradients(graph.model, importance, batches)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            scores = {n: scorer(graph.full_group(g)) for n, g in prunable.items()}
    finally:
        criteria.clear_gradients(graph.model)
    specs = [GroupSpec(n, g.width, candidates(g.width, g.channel_groups), scores[n].detach().float().tolist())
             for n, g in prunable.items() if scores[n] is not None]
    return specs, prunable


def plan_for(model: nn.Module, example, run_model: Callable[[], object], threads: int, speedup: float | None = None,
             ms: float | None = None, importance: str = "l1", batches=None, seed: int = 0, table_path=None,
             backend: str = "eager", rounds: int = 5, min_run_time: float = 0.3,
             log: Callable[[str], None] = lambda m: None, reference: Callable[[], object] | None = None) -> Plan:
    """The plan for ``model`` to run ``speedup`` times faster or in ``ms``.

    ``run_model`` (one call of the unpruned model) is timed interleaved with its
    convolutions at their full widths: that gives ``fixed`` and the factor ``scale`` by
    which the machine is slower (or faster) now than when the cached entries were
    measured; every table entry is multiplied by it. ``reference``: one call of the model
    the ``speedup`` is over (e.g. the network before depth pruning, ``model`` being the one
    without some iterations), timed in the same run; the plan's ``full_ms`` is then its time."""
    graph = Graph(model, example)
    groups, prunable = group_specs(graph, importance, batches, seed)
    convs = conv_specs(model, example, graph, prunable)
    table = table_for(model, convs, groups, threads, backend, table_path, log, rounds, min_run_time / 4)
    full_keys = {c.key(c.c_in, c.c_out): (c.name, c.c_in, c.c_out) for c in convs}
    extra = {MODEL: run_model, **({REFERENCE: reference} if reference is not None else {})}
    now = measure_layers(model, convs, full_keys, threads, rounds, min_run_time, extra=extra)
    full_ms = now.pop(MODEL)
    reference_ms = now.pop(REFERENCE, full_ms)
    convs_now = predict(convs, now, {}, 0.0)
    scale = convs_now / predict(convs, table, {}, 0.0)
    target = ms if ms is not None else reference_ms / speedup
    plan = plan_widths(groups, convs, {k: v * scale for k, v in table.items()}, full_ms - convs_now, target)
    plan.scale = scale
    plan.full_ms = reference_ms
    return plan
