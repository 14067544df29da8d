"""``prune(model, example_inputs, ...)``: a smaller copy of any ``nn.Module``.

The model passed in is left untouched (a deep copy is pruned). Channels tied to the
physics (see :mod:`spade.prune.graph`) keep their width; every other group of coupled
layers loses ``ratio`` of its channels (``scope="uniform"``) or the least important
``ratio`` of all prunable channels go (``scope="global"``), ranked by ``importance``,
in ``steps`` equal steps (the importance is recomputed after each). ``depth`` first
removes that many unrolled iterations (see :mod:`spade.prune.depth`).

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) for one
inference call on the example input: every convolution (transposed included) and
matrix product, the physics' own operators included (e.g. block CS's sampling matrix);
FFTs, element-wise operations and normalisation are not counted.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import SpadeError, require
from ..models.io import layer_widths
from . import calls, criteria, width
from .depth import DepthResult, prune_depth
from .graph import Graph

SCOPES = ("uniform", "global")


@dataclass
class PruneRecord:
    """What a prune did (JSON-serialisable through :meth:`to_json`)."""

    settings: dict[str, Any]  #: criterion, ratio, scope, steps, round_to, depth, protect, seed
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    widths_before: dict[str, list[int]]  #: {layer: [in, out]}
    widths_after: dict[str, list[int]]
    seconds: float
    history: list = field(default_factory=list)  #: torch-pruning history [[root layer, True, [channels]], ...]
    interfaces: dict[str, str] = field(default_factory=dict)  #: {group of layers: why it keeps its width}
    groups: dict[str, list[int]] = field(default_factory=dict)  #: {group: [width before, width after]}
    depth: dict | None = None  #: what depth pruning removed (see DepthResult)
    data_samples: int = 0  #: samples used by a data-driven criterion

    def to_json(self) -> dict:
        return asdict(self)

    def spec_entry(self) -> dict:
        """The summary stored in a pruned model file's spec (``pruning``)."""
        keys = ("params_before", "params_after", "macs_before", "macs_after", "seconds", "interfaces", "depth",
                "data_samples")
        return {**self.settings, **{k: getattr(self, k) for k in keys}}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example) -> int:
    """Multiply-accumulates of one inference call (see module docstring)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), calls.kept_state(model), calls.unrolled_checkpoints(), counter:
        model.eval()
        calls.guarded(model, example)
    return int(counter.get_total_flops() // 2)


def check_settings(ratio, importance, scope, steps, round_to, depth, data) -> None:
    require(isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0 <= ratio < 1,
            f"pruning ratio {ratio!r} is outside [0, 1): give the fraction of channels to remove, e.g. 0.5")
    require(importance in criteria.CRITERIA,
            f"unknown importance criterion '{importance}': choose one of {list(criteria.CRITERIA)}")
    require(scope in SCOPES, f"unknown scope '{scope}': choose one of {list(SCOPES)}")
    require(isinstance(steps, int) and steps >= 1, f"steps = {steps!r}: give a whole number >= 1")
    require(round_to is None or (isinstance(round_to, int) and round_to >= 1),
            f"round_to = {round_to!r}: give a whole number >= 1 (or none)")
    require(depth is None or (isinstance(depth, int) and depth >= 1),
            f"depth = {depth!r}: give the number of iterations to remove (>= 1)")
    require(importance not in criteria.DATA_CRITERIA or ratio == 0 or data is not None,
            f"the '{importance}' criterion ranks channels on data: give data (batches of (inputs, target); "
            "--data on the command line)")


def _resolve_protect(original: nn.Module, protect: Sequence) -> list[str]:
    """Names (in ``original``) of the modules and parameters to protect."""
    module_names = {m: n for n, m in original.named_modules()}
    param_names = {p: n for n, p in original.named_parameters()}
    names = []
    for item in protect:
        if isinstance(item, nn.Parameter):
            require(item in param_names, "a protected parameter is not a parameter of the model")
            names.append(param_names[item])
        elif isinstance(item, nn.Module):
            require(item in module_names, f"a protected {type(item).__name__} is not part of the model")
            names.append(module_names[item])
        else:
            name = str(item)
            known = set(module_names.values()) | set(param_names.values())
            if name not in known:
                top = sorted(n for n in module_names.values() if n and "." not in n)
                raise SpadeError(f"cannot protect '{name}': the model has no module or parameter of that name "
                                 f"(top-level modules: {top})")
            names.append(name)
    return names


def _protected(model: nn.Module, names: list[str]) -> set:
    found = set()
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    for name in names:
        if name in modules:
            found.update(modules[name].modules())
            found.update(modules[name].parameters())
        elif name in params:
            found.add(params[name])
    return found


def _scores(graph: Graph, group, importance) -> torch.Tensor | None:
    imp = importance(graph.full_group(group))
    return None if imp is None else imp.detach().float().cpu()


def prune(model: nn.Module, example_inputs, ratio: float = 0.5, importance: str = "l1", scope: str = "uniform",
          steps: int = 1, round_to: int | None = None, depth: int | None = None, protect: Sequence = (),
          data: Iterable | None = None, depth_in: str | None = None, seed: int = 0,
          widths: dict[str, int] | None = None) -> tuple[nn.Module, PruneRecord]:
    """Prune a copy of ``model``; returns ``(smaller model, PruneRecord)``.

    Args:
        model: any ``nn.Module`` (left untouched).
        example_inputs: a tensor (``model(t)``), tuple (``model(*t)``), dict
            (``model(**d)``) or function ``fn(model)``; SPADE models take ``(y, physics)``.
        ratio: fraction of channels to remove, in [0, 1).
        importance: ``l1``, ``l2``, ``taylor``, ``hessian``, ``lamp`` or ``random``.
        scope: ``uniform`` or ``global`` (see :mod:`spade.prune.width`).
        steps: prune in this many equal steps, re-scoring in between.
        round_to: round kept widths to a multiple of this.
        depth: remove this many unrolled iterations/stages first.
        protect: module or parameter names (or objects) whose channels must stay (with
            ``depth``, names are looked up again in the model left after depth pruning).
        data: ``(inputs, target)`` batches for taylor/hessian and depth ranking.
        depth_in: name of the ``ModuleList`` of iterations (models outside the registry).
        seed: seed of the random criterion.
        widths: ``{group name: kept width}`` chosen by the caller (e.g. a latency plan,
            :mod:`spade.prune.latency`) instead of ``ratio``/``scope``; groups not named
            keep their width. ``importance`` still picks which channels go.
    """
    check_settings(ratio, importance, scope, steps, round_to, depth, data)
    calls.check_example(example_inputs)
    start = time.perf_counter()
    names = _resolve_protect(model, protect)
    try:
        work = copy.deepcopy(model)
    except Exception as exc:
        raise SpadeError(f"cannot copy the model to prune it: {type(exc).__name__}: {exc}") from None
    batches = list(data) if data is not None else None
    trainable = {n: p.requires_grad for n, p in work.named_parameters()}
    widths_before, params_before = layer_widths(work), count_params(work)
    macs_before = count_macs(work, example_inputs)
    depth_result: DepthResult | None = None
    if depth:
        work, depth_result = prune_depth(work, depth, batches, depth_in)
    graph = Graph(work, example_inputs, _protected(work, names))
    prunable = [g for g in graph.groups if g.interface is None and g.width > g.channel_groups]
    if ratio > 0 and not prunable:
        reasons = "; ".join(f"{g.name}: {g.interface or 'too narrow'}" for g in graph.groups[:4])
        raise SpadeError(f"nothing to prune in {type(model).__name__}: every layer keeps its width ({reasons})")
    original = {g.key: g.width for g in prunable}
    samples = 0
    if widths:
        unknown = sorted(set(widths) - {g.name for g in prunable})
        require(not unknown, f"widths name groups that cannot be pruned: {unknown[:3]}")
    if ratio > 0 or widths:
        scorer = criteria.make_importance(importance)
        for step in range(1, steps + 1):
            samples = _prune_step(graph, prunable, original, scorer, importance, ratio * step / steps, scope,
                                  round_to, batches, seed + step, widths)
    for name, p in work.named_parameters():  # pruned layers get new parameters: keep frozen ones frozen
        p.requires_grad_(trainable.get(name, True))
    record = PruneRecord(
        settings={"criterion": importance, "ratio": ratio, "scope": scope, "steps": steps, "round_to": round_to,
                  "depth": depth, "depth_in": depth_in, "protect": names, "seed": seed, "widths": widths},
        params_before=params_before, params_after=count_params(work), macs_before=macs_before,
        macs_after=count_macs(work, example_inputs), widths_before=widths_before, widths_after=layer_widths(work),
        seconds=round(time.perf_counter() - start, 3), history=graph.history(),
        interfaces={g.name: g.interface for g in graph.groups if g.interface},
        groups={g.name: [original.get(g.key, g.width), g.width] for g in graph.groups},
        depth=None if depth_result is None else depth_result.to_json(), data_samples=samples)
    return work, record


def _prune_step(graph, prunable, original, scorer, importance, ratio, scope, round_to, batches, seed,
                widths=None) -> int:
    model = graph.model
    samples = 0
    if importance in criteria.DATA_CRITERIA:
        samples = criteria.set_gradients(model, importance, batches)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            scores = {g.key: _scores(graph, g, scorer) for g in prunable}
    finally:
        criteria.clear_gradients(model)
    scored = [g for g in prunable if scores[g.key] is not None]
    current = {g.key: g.width for g in scored}
    groups = {g.key: g.channel_groups for g in scored}
    if widths:
        keep = {g.key: min(widths.get(g.name, g.width), g.width) for g in scored}
    elif scope == "global":
        slots = {g.key: width.slot_scores(scores[g.key], g.channel_groups) for g in scored}
        keep = width.global_widths(original, current, groups, slots, ratio, round_to)
    else:
        keep = width.uniform_widths(original, current, groups, ratio, round_to)
    for g in scored:
        if keep[g.key] < g.width:
            graph.prune(g, width.channels_to_remove(scores[g.key], g.width, keep[g.key], g.channel_groups))
    return samples
