"""SPADE model files: one file = architecture spec (JSON) + weights + physics tensors.

The file is a ``torch.save`` of a plain dict ``{"spec": str, "state_dict": {...},
"physics": {...}}`` and is read with ``torch.load(weights_only=True)``: loading never
unpickles classes nor runs code from the file. The spec holds:

* ``family`` and ``config`` (constructor arguments) — the unpruned architecture;
* ``shapes`` — every parameter/buffer whose shape differs from that architecture
  (channels removed by the pruner), and ``widths`` — (in, out) of every conv/linear
  layer, for reports;
* ``physics`` — ``{"kind", "settings"}`` of the operator the model was built for (its
  tensors, e.g. a mask or Phi, are stored under ``"physics"``);
* free-form provenance: ``source``, ``pruning``, ``training``...

Loading rebuilds the architecture from ``family``/``config``, resizes the layers listed
in ``shapes`` and loads the weights strictly; any mismatch is reported by name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SpadeError, require
from ..fileio import atomic_path
from ..physics import LinearPhysics, physics_from_settings
from .registry import create_model

FORMAT = "spade-model"
VERSION = 1

_CHANNEL_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


@dataclass
class LoadedModel:
    """What :func:`load_model` returns."""

    model: nn.Module
    physics: LinearPhysics | None
    spec: dict[str, Any] = field(default_factory=dict)


def layer_widths(model: nn.Module) -> dict[str, list[int]]:
    """``{layer name: [in, out]}`` for every convolution and linear layer."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, _CHANNEL_LAYERS):
            if isinstance(m, nn.Linear):
                out[name] = [m.in_features, m.out_features]
            else:
                out[name] = [m.in_channels, m.out_channels]
    return out


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.state_dict(keep_vars=True))


def changed_shapes(model: nn.Module, reference: nn.Module) -> dict[str, list[int]]:
    """Parameters/buffers of ``model`` whose shape differs from ``reference``."""
    ref = _tensors(reference)
    return {k: list(v.shape) for k, v in _tensors(model).items() if k in ref and tuple(ref[k].shape) != tuple(v.shape)}


def sync_layer_attributes(model: nn.Module) -> None:
    """Set channel-count attributes of layers from their weight shapes (after resizing)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.out_features, m.in_features = m.weight.shape
        elif isinstance(m, (nn.ConvTranspose2d,)):
            m.in_channels = m.weight.shape[0]
            m.out_channels = m.weight.shape[1] * m.groups
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            m.out_channels = m.weight.shape[0]
            m.in_channels = m.weight.shape[1] * m.groups
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            ref = m.weight if m.weight is not None else m.running_mean
            if ref is not None:  # a norm without affine parameters or statistics has no width
                m.num_features = ref.shape[0]
        elif isinstance(m, nn.GroupNorm) and m.weight is not None:
            m.num_channels = m.weight.shape[0]


def resize_tensors(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Replace the named parameters/buffers by uninitialised tensors of the given shapes."""
    for name, shape in shapes.items():
        module_name, _, attr = name.rpartition(".")
        try:
            module = model.get_submodule(module_name)
        except AttributeError:
            raise SpadeError(f"model file lists a resized tensor '{name}' that the architecture does not have") from None
        old = getattr(module, attr, None)
        require(isinstance(old, torch.Tensor), f"model file lists a resized tensor '{name}' that the architecture does not have")
        new = torch.empty(shape, dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module.register_buffer(attr, new, persistent=attr not in module._non_persistent_buffers_set)
    sync_layer_attributes(model)


def model_spec(model: nn.Module, physics: LinearPhysics | None = None, **extra) -> dict[str, Any]:
    """The JSON spec of a model (see module docstring)."""
    family = getattr(model, "family", "")
    require(bool(family) and hasattr(model, "config"),
            f"{model.__class__.__name__} is not a SPADE model: save a bring-your-own model with "
            "spade.prune.save_pruned (state_dict + pruning history)")
    reference = create_model(family, **model.config)
    spec = {"format": FORMAT, "version": VERSION, "family": family, "config": model.config,
            "shapes": changed_shapes(model, reference), "widths": layer_widths(model),
            "physics": None if physics is None else {"kind": physics.kind, "settings": physics.settings()}}
    spec.update(extra)
    return spec


def save_model(path: str | Path, model: nn.Module, physics: LinearPhysics | None = None, **extra) -> dict:
    """Write a model file atomically; ``extra`` entries are added to the spec. Returns the spec."""
    spec = model_spec(model, physics, **extra)
    try:
        text = json.dumps(spec)
    except TypeError as exc:
        raise SpadeError(f"model spec is not JSON-serialisable: {exc}") from None
    blob = {"spec": text,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "physics": {} if physics is None else physics.tensors()}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return spec


def read_spec(path: str | Path) -> tuple[dict[str, Any], dict]:
    """Read a model file's spec and raw content (``weights_only=True``)."""
    path = Path(path)
    require(path.is_file(), f"model file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpadeError(f"cannot read model file {path}: not a SPADE model file or corrupt "
                         f"({exc.__class__.__name__})") from None
    require(isinstance(blob, dict) and isinstance(blob.get("spec"), str) and isinstance(blob.get("state_dict"), dict),
            f"{path} is not a SPADE model file (no spec/state_dict): import foreign weights with 'spade import'")
    try:
        spec = json.loads(blob["spec"])
    except json.JSONDecodeError:
        raise SpadeError(f"model file {path} has a corrupt spec") from None
    require(spec.get("format") == FORMAT and spec.get("version") == VERSION,
            f"model file {path} has format {spec.get('format')}/{spec.get('version')}: expected {FORMAT}/{VERSION}")
    return spec, blob


def build_from_spec(spec: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str = "model") -> nn.Module:
    """Rebuild the architecture of a spec and load ``state_dict`` into it strictly."""
    model = create_model(spec["family"], **spec["config"])
    resize_tensors(model, spec.get("shapes", {}))
    expected = set(model.state_dict())
    got = set(state_dict)
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    require(not missing and not unexpected,
            f"{source} does not match its architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
    own = model.state_dict()
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
    require(not bad, f"{source} has tensors of the wrong shape: {bad[:5]}")
    model.load_state_dict(state_dict, strict=True)
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model file: rebuilt model (eval mode), its physics (or None) and spec."""
    spec, blob = read_spec(path)
    model = build_from_spec(spec, blob["state_dict"], source=f"model file {path}").to(device).eval()
    physics = None
    if spec.get("physics"):
        physics = physics_from_settings(spec["physics"]["kind"], spec["physics"]["settings"],
                                        blob.get("physics", {})).to(device)
    return LoadedModel(model, physics, spec)
