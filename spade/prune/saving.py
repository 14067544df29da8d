"""Saving a pruned bring-your-own model: its ``state_dict`` plus the pruning history.

A model outside SPADE's registry cannot be rebuilt from a spec, so the file holds what
turns a fresh instance of the user's class into the pruned one: the removed
iterations (depth pruning) and torch-pruning's history of removed channels, replayed
on SPADE's dependency graph of the fresh instance (the same corrected graph the
channels were chosen on), then the weights. Read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from ..errors import SpadeError, require
from ..fileio import save_torch
from .api import PruneRecord
from .depth import remove_units
from .graph import Graph

FORMAT = "spade-pruned"
VERSION = 1


def save_pruned(path: str | Path, model: nn.Module, record: PruneRecord) -> None:
    """Write ``model`` (as pruned by :func:`spade.prune.prune`) and its history atomically."""
    depth = record.depth or {}
    history = {"channels": record.history, "removed": depth.get("removed", []),
               "depth_in": record.settings.get("depth_in"), "settings": record.settings}
    blob = {"format": FORMAT, "version": VERSION, "history": json.dumps(history),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    save_torch(blob, path)


def apply_history(model: nn.Module, example_inputs, history: dict) -> nn.Module:
    """A pruned copy of a fresh ``model``: removed iterations, then removed channels."""
    pruned = copy.deepcopy(model)
    if history.get("removed"):
        pruned = remove_units(pruned, history["removed"], history.get("depth_in"))
    if history.get("channels"):
        graph = Graph(pruned, example_inputs)
        graph.replay(history["channels"])
        graph.release()
    return pruned


def load_pruned(path: str | Path, model: nn.Module, example_inputs) -> nn.Module:
    """Rebuild a model saved by :func:`save_pruned` from a fresh, unpruned ``model`` of
    the same class and configuration (left untouched) and an example input."""
    path = Path(path)
    require(path.is_file(), f"pruned model file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpadeError(f"cannot read {path}: not a pruned model file or corrupt ({type(exc).__name__})") from None
    require(isinstance(blob, dict) and blob.get("format") == FORMAT and blob.get("version") == VERSION,
            f"{path} is not a file written by spade.prune.save_pruned")
    pruned = apply_history(model, example_inputs, json.loads(blob["history"]))
    own = pruned.state_dict()
    state = blob["state_dict"]
    bad = sorted(set(own) ^ set(state)) + [k for k in own if k in state and own[k].shape != state[k].shape]
    require(not bad, f"{path} does not fit this model after replaying its history (differs at {bad[:5]}): "
                     "give a fresh instance of the class and configuration that was pruned")
    pruned.load_state_dict(state, strict=True)
    return pruned
