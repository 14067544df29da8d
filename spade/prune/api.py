"""``prune(model, example_inputs, ...)``: a smaller copy of any ``nn.Module``.

The model passed in is left untouched (a deep copy is pruned). Channels tied to the
physics (see :mod:`spade.prune.graph`) keep their width; every other group of coupled
layers loses ``ratio`` of its channels (``scope="uniform"``) or the least important
``ratio`` of all prunable channels go (``scope="global"``), ranked by ``importance``,
in ``steps`` equal steps (the importance is recomputed after each). ``depth`` first
removes that many unrolled iterations (see :mod:`spade.prune.depth`). ``reconstruct``
then re-fits the pruned layers to the unpruned network's outputs on the calibration
``data`` (see :mod:`spade.prune.reconstruct`).

MACs are counted by :class:`spade.macs.MacCounter` (the profiler's counter) for one
inference call on the example input.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..errors import SpadeError, require
from ..macs import MacCounter
from ..models.io import layer_widths
from . import calls, criteria, width
from .depth import DepthResult, prune_depth
from .reconstruct import reconstruct as refit
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
    reconstruct: dict | None = None  #: what reconstruction re-fitted (see ReconstructRecord)

    def to_json(self) -> dict:
        return asdict(self)

    def spec_entry(self) -> dict:
        """The summary stored in a pruned model file's spec (``pruning``)."""
        keys = ("params_before", "params_after", "macs_before", "macs_after", "seconds", "interfaces", "depth",
                "data_samples", "reconstruct")
        return {**self.settings, **{k: getattr(self, k) for k in keys}}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example) -> int:
    """Multiply-accumulates of one inference call (see module docstring)."""
    with torch.no_grad(), calls.kept_state(model), calls.unrolled_checkpoints(), MacCounter() as counter:
        model.eval()
        calls.guarded(model, example)
    return counter.macs


def check_settings(ratio, importance, scope, steps, round_to, depth, data, reconstruct=False) -> None:
    require(isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0 <= ratio < 1,
            f"pruning ratio {ratio!r} is outside [0, 1): give the fraction of channels to remove, e.g. 0.5")
    require(criteria.is_importance(importance) or importance in criteria.CRITERIA,
            f"unknown importance criterion '{importance}': choose one of {list(criteria.CRITERIA)} or give a "
            "torch_pruning.importance.Importance object")
    require(scope in SCOPES, f"unknown scope '{scope}': choose one of {list(SCOPES)}")
    require(isinstance(steps, int) and steps >= 1, f"steps = {steps!r}: give a whole number >= 1")
    require(round_to is None or (isinstance(round_to, int) and round_to >= 1),
            f"round_to = {round_to!r}: give a whole number >= 1 (or none)")
    require(depth is None or (isinstance(depth, int) and not isinstance(depth, bool) and depth >= 1)
            or (isinstance(depth, (list, tuple)) and len(depth) > 0 and all(type(i) is int for i in depth)),
            f"depth = {depth!r}: give the number of iterations to remove (>= 1) or their indices")
    require(criteria.data_kind(importance) is None or ratio == 0 or data is not None,
            f"the '{criteria.label(importance)}' criterion ranks channels on data: give data (batches of (inputs, target); "
            "--data on the command line)")
    require(not reconstruct or data is not None,
            "reconstruction re-fits the pruned layers on calibration measurements: give data (--data on the "
            "command line) or turn reconstruction off")


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
    try:
        imp = importance(graph.full_group(group))
    except Exception as exc:  # a user's criterion: its own message, with the group it failed on
        raise SpadeError(f"the importance criterion {type(importance).__name__} failed on {group.name}: "
                         f"{type(exc).__name__}: {exc}") from None
    if imp is None:
        return None
    require(isinstance(imp, torch.Tensor) and imp.numel() == group.width,
            f"the importance criterion {type(importance).__name__} gave {getattr(imp, 'shape', type(imp).__name__)} "
            f"for {group.name}: it must return one score per channel ({group.width})")
    return imp.detach().float().cpu().flatten()


def prune(model: nn.Module, example_inputs, ratio: float = 0.5, importance="l1", scope: str = "uniform",
          steps: int = 1, round_to: int | None = None, depth: int | None = None, protect: Sequence = (),
          data: Iterable | None = None, depth_in: str | None = None, seed: int = 0, reconstruct: bool = False,
          ridge: float = 1e-3, time_limit: float | None = 300.0,
          widths: dict[str, int] | None = None, refit_depth: bool | None = None) -> tuple[nn.Module, PruneRecord]:
    """Prune a copy of ``model``; returns ``(smaller model, PruneRecord)``.

    Args:
        model: any ``nn.Module`` (left untouched).
        example_inputs: a tensor (``model(t)``), tuple (``model(*t)``), dict
            (``model(**d)``) or function ``fn(model)``; SPADE models take ``(y, physics)``.
        ratio: fraction of channels to remove, in [0, 1).
        importance: ``l1``, ``l2``, ``taylor``, ``hessian``, ``lamp`` or ``random``, or a
            ``torch_pruning.importance.Importance`` object (``__call__(group)``).
        scope: ``uniform`` or ``global`` (see :mod:`spade.prune.width`).
        steps: prune in this many equal steps, re-scoring in between.
        round_to: round kept widths to a multiple of this.
        depth: remove this many unrolled iterations/stages first (ranked on ``data``), or
            the ones listed (indices); with ``reconstruct``, the unit after each removed
            one is re-fitted (:mod:`spade.prune.unit_refit`).
        protect: module or parameter names (or objects) whose channels must stay (with
            ``depth``, names are looked up again in the model left after depth pruning).
        data: ``(inputs, target)`` batches for taylor/hessian and depth ranking.
        depth_in: name of the ``ModuleList`` of iterations (models outside the registry).
        seed: seed of the random criterion.
        reconstruct: re-fit the pruned layers on ``data`` (no labels used) so that their
            outputs match the unpruned network's (see :mod:`spade.prune.reconstruct`).
        ridge: the re-fit's ridge, relative to the mean diagonal of ``X^T X``.
        time_limit: seconds allowed for building and analysing the dependency graph
            (None: no limit); past it, a one-line error names the layer it stopped at.

    A pruned copy that no longer runs on the example input (or changes an output's
    shape: e.g. a scale reshaped with a hard-coded channel count) is not returned: the
    groups that break it are found, rolled back (recorded as interfaces, with the
    error) and the rest is pruned again.
        widths: ``{group name: kept width}`` chosen by the caller (e.g. a latency plan,
            :mod:`spade.prune.latency`) instead of ``ratio``/``scope``; groups not named
            keep their width. ``importance`` still picks which channels go.
        refit_depth: re-fit the unit after each removed one (None: as ``reconstruct``).
    """
    check_settings(ratio, importance, scope, steps, round_to, depth, data, reconstruct)
    calls.check_example(example_inputs)
    start = time.perf_counter()
    names = _resolve_protect(model, protect)
    try:
        base = copy.deepcopy(model)
    except Exception as exc:
        raise SpadeError(f"cannot copy the model to prune it: {type(exc).__name__}: {exc}") from None
    batches = list(data) if data is not None else None
    trainable = {n: p.requires_grad for n, p in base.named_parameters()}
    widths_before, params_before = layer_widths(base), count_params(base)
    macs_before = count_macs(base, example_inputs)
    depth_result: DepthResult | None = None
    if depth:
        refit_units = reconstruct if refit_depth is None else refit_depth
        base, depth_result = prune_depth(base, depth, batches, depth_in, refit=refit_units)
    settings = dict(ratio=ratio, importance=importance, scope=scope, steps=steps, round_to=round_to, batches=batches,
                    seed=seed, time_limit=time_limit, widths=widths)
    reference = output_shapes(base, example_inputs)
    work, graph, original, samples = _width_pass(base, example_inputs, names, {}, **settings)
    broken = breakage(work, example_inputs, reference)
    if broken:  # roll back the groups that break the pruned copy, prune the rest again
        culprits = _culprits(base, example_inputs, graph.history(), reference)
        require(bool(culprits), f"the pruned copy of {type(model).__name__} fails on the example input although the "
                                f"model runs on it ({broken}), and no single group explains it: keep layers with protect=")
        refused = {root: f"pruning it breaks the pruned copy on the example input ({error}): rolled back, keep it "
                         "with protect= or make the layer follow its input's width" for root, error in culprits.items()}
        work, graph, original, samples = _width_pass(base, example_inputs, names, refused, **settings)
        broken = breakage(work, example_inputs, reference)
        require(not broken, f"the pruned copy of {type(model).__name__} fails on the example input ({broken}) "
                            f"even without the groups rolled back ({sorted(culprits)}): keep layers with protect=")
    refitted = None
    if reconstruct:  # base: the unpruned network (after depth pruning), the re-fit's reference
        refitted = refit(work, base, example_inputs, graph.history(), batches, ridge).to_json()
    for name, p in work.named_parameters():  # pruned layers get new parameters: keep frozen ones frozen
        p.requires_grad_(trainable.get(name, True))
    record = PruneRecord(
        settings={"criterion": criteria.label(importance), "ratio": ratio, "scope": scope, "steps": steps,
                  "round_to": round_to, "depth": depth, "depth_in": depth_in, "protect": names, "seed": seed,
                  "widths": widths},
        params_before=params_before, params_after=count_params(work), macs_before=macs_before,
        macs_after=count_macs(work, example_inputs), widths_before=widths_before, widths_after=layer_widths(work),
        seconds=round(time.perf_counter() - start, 3), history=graph.history(),
        interfaces={g.name: g.interface for g in graph.groups if g.interface},
        groups={g.name: [original.get(g.key, g.width), g.width] for g in graph.groups},
        depth=None if depth_result is None else depth_result.to_json(), data_samples=samples, reconstruct=refitted)
    return work, record


def _width_pass(base, example, names, refused, *, ratio, importance, scope, steps, round_to, batches, seed,
                time_limit, widths):
    """Channel pruning of a copy of ``base``: ``(model, graph, {group: width before}, samples)``."""
    work = copy.deepcopy(base)
    graph = Graph(work, example, _protected(work, names), refused=refused, time_limit=time_limit)
    prunable = [g for g in graph.groups if g.interface is None and g.width > g.channel_groups]
    if ratio > 0 and not prunable:
        reasons = "; ".join(f"{g.name}: {g.interface or 'too narrow'}" for g in graph.groups[:4])
        raise SpadeError(f"nothing to prune in {type(base).__name__}: every layer keeps its width ({reasons})")
    original = {g.key: g.width for g in prunable}
    samples = 0
    if widths:  # a group rolled back or kept as an interface keeps its width (recorded as such)
        unknown = sorted(set(widths) - {g.name for g in graph.groups})
        require(not unknown, f"widths name groups that this model does not have: {unknown[:3]}")
    if ratio > 0 or widths:
        scorer = criteria.make_importance(importance)
        for step in range(1, steps + 1):
            samples = _prune_step(graph, prunable, original, scorer, importance, ratio * step / steps, scope,
                                  round_to, batches, seed + step, widths)
    graph.release()
    return work, graph, original, samples


def output_shapes(model: nn.Module, example) -> list[tuple[int, ...]]:
    """Shapes of every tensor of the model's output on ``example`` (inference mode)."""
    with torch.no_grad(), calls.kept_state(model):
        model.eval()
        return [tuple(t.shape) for t in calls.tensors_of(calls.guarded(model, example))]


def breakage(model: nn.Module, example, reference: list) -> str | None:
    """Why a pruned copy no longer works on ``example`` (None: it runs and its outputs
    have the ``reference`` shapes)."""
    try:
        with torch.no_grad(), calls.kept_state(model):
            model.eval()
            shapes = [tuple(t.shape) for t in calls.tensors_of(calls.run(model, example))]
    except Exception as exc:  # the user's code on pruned weights: any error is the answer
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None if shapes == reference else f"output shapes {shapes} instead of {reference}"


def _culprits(base, example, history: list, reference: list) -> dict[str, str]:
    """``{root layer: error}`` of the pruned groups that alone break ``base`` (bisection
    over the history: a group is replayed on a fresh copy)."""
    by_root: dict[str, list] = {}
    for entry in history:
        by_root.setdefault(entry[0], []).append(entry)
    found = {}

    def failure(roots):
        trial = copy.deepcopy(base)
        graph = Graph(trial, example)
        graph.replay([e for r in roots for e in by_root[r]])
        graph.release()
        return breakage(trial, example, reference)

    def search(roots):
        error = failure(roots)
        if error and len(roots) == 1:
            found[roots[0]] = error
        elif error:
            search(roots[:len(roots) // 2])
            search(roots[len(roots) // 2:])

    search(list(by_root))
    return found


def _prune_step(graph, prunable, original, scorer, importance, ratio, scope, round_to, batches, seed,
                widths=None) -> int:
    model = graph.model
    samples = 0
    if criteria.data_kind(importance):
        samples = criteria.set_gradients(model, criteria.data_kind(importance), batches)
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
