"""Depth pruning: remove whole unrolled iterations (or stages), the least useful first.

The *units* that can go are what the model declares, the same way for every model:

* a model that defines ``depth_units() -> (unit, count, interchangeable)`` and
  ``without_units(removed) -> new model`` removes its own units (SPADE's networks do:
  iterations, or the stages of a recursive network, rebuilt with the smaller count);
  ``interchangeable`` units (one block called K times) need no ranking: the last ones go;
* any other module: a ``nn.ModuleList`` of identical modules that the forward pass
  iterates (``for cascade in self.cascades``), named by ``depth_in`` or found as the
  only outermost such list; removed entries are deleted from the list.

Units are ranked by their measured contribution: the PSNR drop on the data when the unit
alone is removed (one evaluation per unit); the ``depth`` units whose removal costs the
least are removed together. With ``refit`` (reconstruction on, :mod:`spade.prune.unit_refit`)
the unit after each removed one is then re-fitted to the unpruned network's output there.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import require
from ..metrics import psnr
from . import calls
from .unit_refit import UnitRefitRecord, refit_units


@dataclass
class DepthResult:
    """What depth pruning removed and why."""

    unit: str  #: "iteration", "stage" or "entry of <list name>"
    total: int  #: units before
    removed: list[int]  #: indices of the removed units (in the original numbering)
    psnr_full: float | None = None  #: PSNR (dB) of the model before, on the data
    psnr_drop: dict[int, float] = field(default_factory=dict)  #: PSNR drop when each unit alone is removed
    refit: dict | None = None  #: the re-fit of the units after removed ones (UnitRefitRecord), if asked
    psnr_after: float | None = None  #: PSNR (dB) on the data after removal and re-fit (with ``refit``)

    def to_json(self) -> dict:
        return {"unit": self.unit, "total": self.total, "removed": self.removed, "psnr_full": self.psnr_full,
                "psnr_drop": {str(k): v for k, v in self.psnr_drop.items()}, "refit": self.refit,
                "psnr_after": self.psnr_after}


def psnr_on(model: nn.Module, batches) -> float:
    """Mean PSNR (dB, data range = max |ground truth|) of the model's reconstructions."""
    values = []
    with torch.no_grad(), calls.kept_state(model):
        model.eval()
        for inputs, target in batches:
            out = calls.first_tensor(calls.guarded(model, inputs))
            values.append(psnr(out.float(), target.float(), float(target.abs().max())))
    require(bool(values), "depth pruning needs data to rank the iterations, but no batch was given")
    return sum(values) / len(values)


def _declared(model: nn.Module, depth_in: str | None) -> bool:
    """Whether the model's own ``depth_units``/``without_units`` are used."""
    return depth_in is None and callable(getattr(model, "depth_units", None)) \
        and callable(getattr(model, "without_units", None))


# --- other models: a list of iterations ---------------------------------------------
def _identical(modules: nn.ModuleList) -> bool:
    first = modules[0]
    shapes = [(k, tuple(v.shape)) for k, v in first.state_dict().items()]
    return len(modules) >= 2 and all(
        type(m) is type(first) and [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == shapes for m in modules)


def iteration_list(model: nn.Module, depth_in: str | None = None) -> str:
    """Name of the ``nn.ModuleList`` of iterations (see module docstring)."""
    if depth_in is not None:
        try:
            found = model.get_submodule(depth_in)
        except AttributeError:
            found = None
        require(isinstance(found, nn.ModuleList) and len(found) >= 2,
                f"'{depth_in}' is not a list of at least two modules in {type(model).__name__}")
        return depth_in
    lists = [n for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) and _identical(m)]
    outer = [n for n in lists if not any(n != o and n.startswith(o + ".") for o in lists)]
    require(len(outer) == 1,
            f"{type(model).__name__} has {'no' if not outer else 'several'} list(s) of identical modules "
            f"{outer}: name the list of iterations with depth_in=NAME (--depth-in)")
    return outer[0]


def _without_entries(model: nn.Module, name: str, removed: list[int]) -> nn.Module:
    new = copy.deepcopy(model)
    entries = new.get_submodule(name)
    for i in sorted(removed, reverse=True):
        del entries[i]
    return new


# --- the public step ----------------------------------------------------------------
def remove_units(model: nn.Module, removed: list[int], depth_in: str | None = None) -> nn.Module:
    """``model`` without the given units (iterations, stages or list entries)."""
    if _declared(model, depth_in):
        return model.without_units(list(removed))
    return _without_entries(model, iteration_list(model, depth_in), removed)


def unit_modules(model: nn.Module, depth_in: str | None = None) -> list[nn.Module] | None:
    """The modules of the units, in order, or None when the units are not modules of their
    own (shared blocks): a declaring model's ``unit_modules()``, else the list entries."""
    if _declared(model, depth_in):
        declared = getattr(model, "unit_modules", None)
        return declared() if callable(declared) else None
    return list(model.get_submodule(iteration_list(model, depth_in)))


def units_of(model: nn.Module, depth_in: str | None = None) -> tuple[str, int, bool, str | None]:
    """``(unit, count, interchangeable, depth_in)`` of the units depth pruning may remove
    (``depth_in`` resolved for a list of iterations, None for a declaring model)."""
    if _declared(model, depth_in):
        return (*model.depth_units(), None)
    depth_in = iteration_list(model, depth_in)
    return f"entry of {depth_in}", len(model.get_submodule(depth_in)), False, depth_in


def rank_units(model: nn.Module, batches, depth_in: str | None = None) -> DepthResult:
    """Each unit's PSNR drop on ``batches`` when it alone is removed (nothing removed yet):
    ``removed`` lists every unit, the cheapest first."""
    unit, total, _, depth_in = units_of(model, depth_in)
    require(batches is not None, f"depth pruning ranks the {unit}s on data: give data (--data)")
    batches = list(batches)
    full = psnr_on(model, batches)
    drops = {i: full - psnr_on(remove_units(model, [i], depth_in), batches) for i in range(total)}
    return DepthResult(unit, total, sorted(drops, key=lambda i: (drops[i], i)), full, drops)


def prune_depth(model: nn.Module, depth: int | list[int], batches=None, depth_in: str | None = None,
                refit: bool = False) -> tuple[nn.Module, DepthResult]:
    """Remove ``depth`` units (the cheapest on ``batches``; interchangeable units: the last
    ones), or the units listed; returns the new model and what was removed. ``refit``:
    re-fit the unit after each removed one on ``batches`` (:mod:`spade.prune.unit_refit`)."""
    unit, total, interchangeable, depth_in = units_of(model, depth_in)
    listed = isinstance(depth, (list, tuple))
    count = len(set(depth)) if listed else depth
    require(isinstance(count, int) and 1 <= count < total,
            f"depth {depth} is out of range: this model has {total} {unit}s, remove 1 to {total - 1}")
    require(not listed or all(isinstance(i, int) and 0 <= i < total for i in depth),
            f"units {depth} to remove: give indices in 0..{total - 1}")
    if listed:
        result = DepthResult(unit, total, sorted(set(depth)))
    elif interchangeable:
        return remove_units(model, list(range(total - depth, total)), depth_in), \
            DepthResult(unit, total, list(range(total - depth, total)))
    else:
        ranked = rank_units(model, batches, depth_in)
        result = DepthResult(unit, total, sorted(ranked.removed[:depth]), ranked.psnr_full, ranked.psnr_drop)
    pruned = remove_units(model, result.removed, depth_in)
    if refit:
        require(batches is not None, f"re-fitting the {unit}s after removed ones needs data: give data (--data)")
        batches = list(batches)
        kept = [i for i in range(total) if i not in result.removed]
        units, original = unit_modules(pruned, depth_in), unit_modules(model, depth_in)
        if units is None or original is None:
            result.refit = UnitRefitRecord(len(batches), skipped=f"the {unit}s are not modules of their own").to_json()
        else:
            result.refit = refit_units(pruned, model, kept, units, original, batches).to_json()
        result.psnr_after = psnr_on(pruned, batches)
    return pruned, result
