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

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from torch import nn

from ..errors import SpadeError, require
from ..fileio import save_torch
from ..limits import check_count, check_finite, check_finite_number, check_shape, limit, loads_json
from ..physics import LinearPhysics, physics_from_settings
from .adapter import is_factory, source_name
from .registry import create_model, get_family

FORMAT = "spade-model"
VERSION = 1

_CHANNEL_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)

#: constructor arguments that count iterations, blocks or levels (limit MAX_ITERATIONS);
#: every other whole-number argument is a width or size (limit MAX_WIDTH)
ITERATION_ARGUMENTS = {"iterations", "phases", "layers", "cascades", "max_iter", "stages", "recursions", "blocks",
                       "depth", "levels", "sens_levels", "memory"}

Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr, None]


class PhysicsEntry(BaseModel):
    """``spec["physics"]``: the operator's kind and its JSON settings."""

    model_config = ConfigDict(extra="forbid")
    kind: StrictStr
    settings: dict[str, Union[Scalar, list[Scalar]]]


class ModelSpec(BaseModel):
    """The JSON spec of a model file (module docstring); other keys are provenance."""

    model_config = ConfigDict(extra="allow")
    format: Literal["spade-model"]
    version: Literal[1]
    family: StrictStr
    config: dict[str, Scalar]
    shapes: dict[str, list[StrictInt]] = {}
    widths: dict[str, list[StrictInt]] = {}
    physics: Optional[PhysicsEntry] = None
    protocol: Optional[StrictStr] = None
    source: Optional[dict[str, Any]] = None
    pruning: Optional[dict[str, Any]] = None
    finetuning: Optional[dict[str, Any]] = None
    training: Optional[dict[str, Any]] = None


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
    """Write a model file atomically; ``extra`` entries are added to the spec (the
    provenance keys of :class:`ModelSpec` with their types). Returns the spec."""
    spec = model_spec(model, physics, **extra)
    try:
        text = json.dumps(spec)
    except TypeError as exc:
        raise SpadeError(f"model spec is not JSON-serialisable: {exc}") from None
    blob = {"spec": text,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "physics": {} if physics is None else physics.tensors()}
    check_content(json.loads(text), blob, f"the model to write to {path}")
    save_torch(blob, path)
    return spec


def read_spec(path: str | Path) -> tuple[dict[str, Any], dict]:
    """Read a model file's spec and raw content (``weights_only=True``), both validated:
    the spec against :class:`ModelSpec` and the resource limits, the weights and physics
    tensors as finite tensors within the limits (see :func:`check_content`)."""
    path = Path(path)
    require(path.is_file() or not is_factory(path),
            f"{path} names MODULE:FUNCTION, which spade prune, profile, evaluate, finetune and pipeline recipes take: "
            "this needs a SPADE model file")
    require(path.is_file(), f"model file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpadeError(f"cannot read model file {path}: not a SPADE model file or corrupt "
                         f"({exc.__class__.__name__})") from None
    require(isinstance(blob, dict) and isinstance(blob.get("spec"), str) and isinstance(blob.get("state_dict"), dict),
            f"{path} is not a SPADE model file (no spec/state_dict): import foreign weights with 'spade import'")
    spec = loads_json(blob["spec"], f"the spec of model file {path}")
    require(isinstance(spec, dict), f"model file {path} has a corrupt spec (not a JSON object)")
    require(spec.get("format") == FORMAT and spec.get("version") == VERSION,
            f"model file {path} has format {spec.get('format')}/{spec.get('version')}: expected {FORMAT}/{VERSION}")
    check_content(spec, blob, f"model file {path}")
    return spec, blob


def check_content(spec: dict[str, Any], blob: dict, source: str) -> None:
    """Validate a model file's spec and tensors before anything is built from them.

    Types and required keys (:class:`ModelSpec`), constructor arguments against the
    family's signature and the limits, resized shapes within ``MAX_TENSOR_ELEMENTS``,
    weights and physics tensors as finite tensors. Raises a one-line :class:`SpadeError`.
    """
    try:
        ModelSpec.model_validate(spec)
    except ValidationError as exc:
        raise SpadeError(f"{source} has an invalid spec: {_first_error(exc, spec)}") from None
    check_config(spec["family"], spec["config"], source)  # the weight count: when built (check_architecture)
    for name, shape in spec.get("shapes", {}).items():
        check_shape(shape, f"{source}: resized tensor '{name}'")
    physics = spec.get("physics")
    if physics:
        for key, value in physics["settings"].items():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, float):
                    check_finite_number(v, f"{source}: physics setting '{key}'")
                elif isinstance(v, int) and not isinstance(v, bool):
                    check_count(v, "MAX_IMAGE_SIDE", f"{source}: physics setting '{key}'", minimum=0)
    for group in ("state_dict", "physics"):
        tensors = blob.get(group, {})
        require(isinstance(tensors, dict), f"{source}: '{group}' is not a dict of tensors")
        require(len(tensors) <= limit("MAX_TENSORS"), f"{source}: '{group}' holds {len(tensors)} entries, over the "
                f"limit of {limit('MAX_TENSORS')}: set SPADE_MAX_TENSORS to allow more")
        for key, value in tensors.items():
            require(isinstance(key, str) and isinstance(value, torch.Tensor),
                    f"{source}: {group} entry {str(key)[:60]!r} is a {type(value).__name__}, not a tensor")
            require(value.layout == torch.strided and value.device.type == "cpu" and not value.is_complex(),
                    f"{source}: {group} tensor '{key}' is not a dense real CPU tensor "
                    f"({value.layout}, {value.dtype}, {value.device})")
            check_shape(list(value.shape), f"{source}: {group} tensor '{key}'")
            check_finite(value, f"{source}: {group} tensor '{key}'")
    if "coil_maps" in blob.get("physics", {}):
        check_count(blob["physics"]["coil_maps"].shape[0], "MAX_COILS", f"{source}: the number of coils")


def check_architecture(family: str, config: dict[str, Any], source: str) -> None:
    """Check constructor arguments (:func:`check_config`), then build the architecture on
    the ``meta`` device (no memory) and check its weight count against ``MAX_TENSOR_ELEMENTS``."""
    check_config(family, config, source)
    with torch.device("meta"):
        plan = create_model(family, **config)
    total = sum(t.numel() for t in plan.state_dict().values())
    require(total <= limit("MAX_TENSOR_ELEMENTS"),
            f"{source}: the architecture has {total:,} weights, over the limit of {limit('MAX_TENSOR_ELEMENTS'):,}: "
            "set SPADE_MAX_TENSOR_ELEMENTS to allow more")


def _first_error(exc: ValidationError, spec: dict) -> str:
    """The first schema error as ``'key.path' what is wrong`` (union members left out)."""
    err = exc.errors()[0]
    if err["type"] == "missing":
        return f"'{'.'.join(map(str, err['loc']))}' is missing"
    parts, node = [], spec
    for item in err["loc"]:  # the path through the data, without pydantic's union-member names
        if isinstance(node, dict) and item in node or isinstance(node, list) and isinstance(item, int):
            node = node[item]
            parts.append(str(item))
        else:
            break
    what = err["msg"].lower() if len(parts) == len(err["loc"]) else "has a wrong type"
    return f"'{'.'.join(parts) or 'spec'}' {what} (got {type(node).__name__} {repr(node)[:40]})"


def check_config(family: str, config: dict[str, Any], source: str) -> None:
    """Constructor arguments of ``family``: the annotated types, finite numbers, counts
    and widths within the limits."""
    sig = inspect.signature(get_family(family).cls.__init__)
    for key, value in config.items():
        param = sig.parameters.get(key)
        if param is None or key == "self":
            continue  # create_model names unknown settings with the allowed ones
        what = f"{source}: setting '{key}' of model '{family}'"
        types = str(param.annotation)
        if value is None:
            require("None" in types, f"{what} must not be null")
        elif isinstance(value, bool):
            require("bool" in types, f"{what} must be {types} (got {value!r})")
        elif isinstance(value, int) and "int" in types:
            check_count(value, "MAX_ITERATIONS" if key in ITERATION_ARGUMENTS else "MAX_WIDTH", what, minimum=0)
        elif isinstance(value, (int, float)):
            require("float" in types, f"{what} must be {types} (got {value!r})")
            check_finite_number(value, what)
        else:
            require("str" in types, f"{what} must be {types} (got {value!r})")


def build_from_spec(spec: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str = "model") -> nn.Module:
    """Rebuild the architecture of a spec and load ``state_dict`` into it strictly."""
    check_architecture(spec["family"], spec["config"], source)
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
    bad = [f"{k} {v.dtype} vs {own[k].dtype}" for k, v in state_dict.items() if v.dtype != own[k].dtype]
    require(not bad, f"{source} has tensors of the wrong type: {bad[:5]}")
    model.load_state_dict(state_dict, strict=True)
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model file: rebuilt model (eval mode), its physics (or None) and spec."""
    spec, blob = read_spec(path)
    model = build_from_spec(spec, blob["state_dict"], source=f"model file {path}").to(device).eval()
    physics = None
    if spec.get("physics"):
        try:
            physics = physics_from_settings(spec["physics"]["kind"], spec["physics"]["settings"],
                                            blob.get("physics", {})).to(device)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            # the settings and tensors come from the file: a missing or wrong-typed one is the file's fault
            raise SpadeError(f"model file {path} has physics '{spec['physics']['kind']}' that cannot be rebuilt: "
                             f"{type(exc).__name__} {str(exc)[:100]}") from None
    return LoadedModel(model, physics, spec)


def model_name(path: str | Path) -> str:
    """The name a model file goes by in tables, records and logs: its stem, or its
    folder's name for a file called ``model`` (``runs/x/train/foo/model.spade`` -> ``foo``,
    as ``spade train`` writes it); a user's ``MODULE:FUNCTION[@FILE]``: FILE's stem, or
    MODULE:FUNCTION."""
    if is_factory(path):
        return source_name(str(path))
    p = Path(path)
    return p.parent.name if p.stem == "model" and p.parent.name else p.stem


def model_names(paths: list[str | Path]) -> list[str]:
    """:func:`model_name` of each file; the path itself where two files would share a name."""
    names = [model_name(p) for p in paths]
    return [n if names.count(n) == 1 else str(p) for p, n in zip(paths, names)]
