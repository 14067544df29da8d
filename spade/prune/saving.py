"""Saving a pruned bring-your-own model: its ``state_dict`` plus the pruning history.

A model outside SPADE's registry cannot be rebuilt from a spec, so the file holds what
turns a fresh instance of the user's class into the pruned one: the removed
iterations (depth pruning) and torch-pruning's history of removed channels, replayed
on SPADE's dependency graph of the fresh instance (the same corrected graph the
channels were chosen on), then the weights. A model pruned again keeps the earlier
history under ``previous`` (replayed first). The file also carries an ``info`` record
(JSON: the function the network came from, the pruning and fine-tuning summaries) that
reports read; no code is named or run from the file. Read with
``torch.load(weights_only=True)``.

:func:`load_own` turns a ``module:function[@FILE]`` argument into an
:class:`~spade.models.OwnModel`: the function's network, with FILE's history and weights.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SpadeError, require
from ..fileio import save_torch
from ..models.adapter import OwnModel, from_factory, split_source
from ..models.io import layer_widths
from .api import PruneRecord
from .depth import remove_units
from .graph import Graph

FORMAT = "spade-pruned"
VERSION = 1


def history_of(record: PruneRecord, previous: dict | None = None) -> dict:
    """What replays ``record``'s pruning on a fresh model (after ``previous``, the history
    of the model that was pruned, when it was itself a pruned one)."""
    depth = record.depth or {}
    history = {"channels": record.history, "removed": depth.get("removed", []),
               "depth_in": record.settings.get("depth_in"), "settings": record.settings}
    if previous and (previous.get("channels") or previous.get("removed") or previous.get("previous")):
        history["previous"] = previous
    return history


def write_pruned(path: str | Path, model: nn.Module, history: dict, info: dict | None = None) -> None:
    """Write ``model``'s weights, the ``history`` that rebuilds its shapes and an ``info`` record, atomically."""
    blob = {"format": FORMAT, "version": VERSION, "history": json.dumps(history),
            "info": json.dumps(info or {}, default=str),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    save_torch(blob, path)


def save_pruned(path: str | Path, model: nn.Module, record: PruneRecord, **info: Any) -> None:
    """Write ``model`` (as pruned by :func:`spade.prune.prune`) and its history atomically;
    ``info``: provenance kept with it (e.g. ``source="mynets:build"``)."""
    write_pruned(path, model, history_of(record), {"pruning": record.spec_entry(), **info})


def read_pruned(path: str | Path) -> tuple[dict, dict, dict]:
    """``(history, state_dict, info)`` of a file written by :func:`save_pruned`."""
    path = Path(path)
    require(path.is_file(), f"pruned model file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpadeError(f"cannot read {path}: not a pruned model file or corrupt ({type(exc).__name__})") from None
    require(isinstance(blob, dict) and blob.get("format") == FORMAT and blob.get("version") == VERSION,
            f"{path} is not a file written by spade.prune.save_pruned"
            + (" (it is a SPADE model file: give it without MODULE:FUNCTION@)" if isinstance(blob, dict)
               and "spec" in blob else ""))
    try:
        history, info = json.loads(blob["history"]), json.loads(blob.get("info", "{}"))
    except (TypeError, ValueError) as exc:
        raise SpadeError(f"{path} has a corrupt pruning history ({type(exc).__name__})") from None
    require(isinstance(history, dict) and isinstance(info, dict) and isinstance(blob.get("state_dict"), dict),
            f"{path} has a corrupt pruning history")
    return history, blob["state_dict"], info


def apply_history(model: nn.Module, example_inputs, history: dict) -> nn.Module:
    """A pruned copy of a fresh ``model``: earlier prunings, then removed iterations, then
    removed channels."""
    pruned = copy.deepcopy(model)
    if history.get("previous"):
        pruned = apply_history(pruned, example_inputs, history["previous"])
    if history.get("removed"):
        pruned = remove_units(pruned, history["removed"], history.get("depth_in"))
    if history.get("channels"):
        graph = Graph(pruned, example_inputs)
        graph.replay(history["channels"])
        graph.release()
    return pruned


def _rebuilt(path, model: nn.Module, example_inputs, history: dict, state: dict) -> nn.Module:
    pruned = apply_history(model, example_inputs, history)
    own = pruned.state_dict()
    bad = sorted(set(own) ^ set(state)) + [k for k in own if k in state and own[k].shape != state[k].shape]
    require(not bad, f"{path} does not fit this model after replaying its history (differs at {bad[:5]}): "
                     "give a fresh instance of the class and configuration that was pruned")
    pruned.load_state_dict(state, strict=True)
    return pruned


def load_pruned(path: str | Path, model: nn.Module, example_inputs) -> nn.Module:
    """Rebuild a model saved by :func:`save_pruned` from a fresh, unpruned ``model`` of
    the same class and configuration (left untouched) and an example input."""
    history, state, _ = read_pruned(path)
    return _rebuilt(path, model, example_inputs, history, state)


def _moved(obj, device):
    if isinstance(obj, (torch.Tensor, nn.Module)):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_moved(o, device) for o in obj)
    if isinstance(obj, list):
        return [_moved(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _moved(v, device) for k, v in obj.items()}
    return obj


def load_own(source: str, device: str | torch.device = "cpu") -> OwnModel:
    """``module:function`` (the function's network as it returns it) or
    ``module:function@FILE`` (that network rebuilt as FILE's pruned / fine-tuned one), in
    eval mode on ``device``, with its example inputs; FILE's ``history`` is kept in the
    spec (``spec["history"]``) for the files written from it."""
    factory, file = split_source(source)
    model, example = from_factory(factory)
    spec: dict[str, Any] = {"family": factory, "source": factory}
    if file is not None:
        history, state, info = read_pruned(file)
        made_by = info.get("source")
        require(made_by in (None, factory), f"{file} was pruned from {made_by}, not {factory}: give {made_by}@{file}")
        model = _rebuilt(file, model, example, history, state)
        spec.update({k: v for k, v in info.items() if k in ("pruning", "finetuning", "protocol")})
        spec["history"] = history
    model, example = _moved(model, device).eval(), _moved(example, device)
    physics = OwnModel(source, model, example).physics
    spec["widths"] = layer_widths(model)
    spec["physics"] = None if physics is None else {"kind": physics.kind, "settings": physics.settings()}
    return OwnModel(source, model, example, spec)
