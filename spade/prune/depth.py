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
least are removed together.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import require
from ..metrics import psnr
from . import calls


@dataclass
class DepthResult:
    """What depth pruning removed and why."""

    unit: str  #: "iteration", "stage" or "entry of <list name>"
    total: int  #: units before
    removed: list[int]  #: indices of the removed units (in the original numbering)
    psnr_full: float | None = None  #: PSNR (dB) of the model before, on the data
    psnr_drop: dict[int, float] = field(default_factory=dict)  #: PSNR drop when each unit alone is removed

    def to_json(self) -> dict:
        return {"unit": self.unit, "total": self.total, "removed": self.removed, "psnr_full": self.psnr_full,
                "psnr_drop": {str(k): v for k, v in self.psnr_drop.items()}}


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


def prune_depth(model: nn.Module, depth: int, batches=None, depth_in: str | None = None) -> tuple[nn.Module, DepthResult]:
    """Remove ``depth`` units; returns the new model and what was removed."""
    if _declared(model, depth_in):
        unit, total, interchangeable = model.depth_units()
    else:
        depth_in = iteration_list(model, depth_in)
        unit, total, interchangeable = f"entry of {depth_in}", len(model.get_submodule(depth_in)), False
    require(isinstance(depth, int) and 1 <= depth < total,
            f"depth {depth} is out of range: this model has {total} {unit}s, remove 1 to {total - 1}")
    if interchangeable:
        removed = list(range(total - depth, total))
        return remove_units(model, removed, depth_in), DepthResult(unit, total, removed)
    require(batches is not None, f"depth pruning ranks the {unit}s on data: give data (--data)")
    batches = list(batches)
    full = psnr_on(model, batches)
    drops = {i: full - psnr_on(remove_units(model, [i], depth_in), batches) for i in range(total)}
    removed = sorted(sorted(drops, key=lambda i: (drops[i], i))[:depth])
    return remove_units(model, removed, depth_in), DepthResult(unit, total, removed, full, drops)
