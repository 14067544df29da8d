"""Depth pruning: remove whole unrolled iterations (or stages), the least useful first.

The *units* that can go are found without knowing the family:

* a SPADE model (registry family with one :class:`~spade.models.sharing.Sharing`):
  untied — its iterations (one block each); recursive — its stages (a stage is R
  recursions of one block); tied — its iterations (all share one block, so any K - d of
  them are the same network: the last ones are dropped, no data needed). The model is
  rebuilt through the registry with the smaller count — the configuration key that sets
  it is found by trying which one changes the number of blocks — and the kept blocks'
  weights (pruned widths included) are copied;
* any other module: a ``nn.ModuleList`` of identical modules that the forward pass
  iterates (``for cascade in self.cascades``), named by ``depth_in`` or found as the
  only outermost such list; removed entries are deleted from the list.

Units are ranked by their measured contribution: the PSNR drop on the data when the unit
alone is removed (one evaluation per unit); the ``depth`` units whose removal costs the
least are removed together.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import SpadeError, require
from ..models.base import ReconstructionNet
from ..models.io import resize_tensors
from ..models.registry import create_model
from ..models.sharing import Sharing
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
            mse = float(torch.mean((out.float() - target.float()) ** 2))
            peak = float(target.abs().max())
            values.append(math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse))
    require(bool(values), "depth pruning needs data to rank the iterations, but no batch was given")
    return sum(values) / len(values)


# --- SPADE models: rebuilt through the registry -------------------------------------
def _sharing(model: nn.Module) -> tuple[str, Sharing] | None:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, Sharing)]
    if not isinstance(model, ReconstructionNet) or len(found) != 1:
        return None
    return found[0]


def _depth_key(model: ReconstructionNet, sharing: Sharing) -> str:
    """The configuration key that sets the number of iterations (stages when recursive)."""
    config = model.config
    for key, value in config.items():
        if type(value) is int and value == sharing.stages and value > 1:
            try:
                trial = create_model(model.family, **{**config, key: value - 1})
            except SpadeError:
                continue
            found = _sharing(trial)
            if found is not None and found[1].stages == value - 1:
                return key
    raise SpadeError(f"cannot find the setting of {model.family} that sets its number of iterations")


def _rebuild(model: ReconstructionNet, keep: list[int]) -> nn.Module:
    """The model with only the units ``keep`` (see module docstring)."""
    prefix, sharing = _sharing(model)
    key = _depth_key(model, sharing)
    new = create_model(model.family, **model.reconfigured(**{key: len(keep)}))
    blocks = f"{prefix}.blocks."
    state = {}
    for name, value in model.state_dict().items():
        if name.startswith(blocks) and sharing.mode != "tied":
            index, rest = name[len(blocks):].split(".", 1)
            if int(index) in keep:
                state[f"{blocks}{keep.index(int(index))}.{rest}"] = value
        else:
            state[name] = value
    own = new.state_dict()
    resize_tensors(new, {k: list(v.shape) for k, v in state.items() if k in own and own[k].shape != v.shape})
    new.load_state_dict(state, strict=True)
    return new.to(next(model.parameters()).device).train(model.training)


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
    found = _sharing(model)
    if found is not None:
        units = found[1].stages
        return _rebuild(model, [i for i in range(units) if i not in removed])
    return _without_entries(model, iteration_list(model, depth_in), removed)


def prune_depth(model: nn.Module, depth: int, batches=None, depth_in: str | None = None) -> tuple[nn.Module, DepthResult]:
    """Remove ``depth`` units; returns the new model and what was removed."""
    found = _sharing(model)
    if found is not None:
        sharing = found[1]
        unit = "stage" if sharing.mode == "recursive" else "iteration"
        total = sharing.stages
    else:
        depth_in = iteration_list(model, depth_in)
        unit, total = f"entry of {depth_in}", len(model.get_submodule(depth_in))
    require(isinstance(depth, int) and 1 <= depth < total,
            f"depth {depth} is out of range: this model has {total} {unit}s, remove 1 to {total - 1}")
    if found is not None and found[1].mode == "tied":
        removed = list(range(total - depth, total))
        return remove_units(model, removed), DepthResult(unit, total, removed)
    require(batches is not None, f"depth pruning ranks the {unit}s on data: give data (--data)")
    batches = list(batches)
    full = psnr_on(model, batches)
    drops = {i: full - psnr_on(remove_units(model, [i], depth_in), batches) for i in range(total)}
    removed = sorted(sorted(drops, key=lambda i: (drops[i], i))[:depth])
    return remove_units(model, removed, depth_in), DepthResult(unit, total, removed, full, drops)
