"""Layers written as functional calls on raw parameters, made visible to the pruner.

Research code often keeps convolution weights as bare ``nn.Parameter`` tensors and applies
them with ``F.conv2d(x, self.weight, padding=1)`` (ISTA-Net+, COAST and most releases of
this family). torch-pruning couples channels through layer *modules* (its pruners know
which axis of a ``Conv2d`` weight is the input and which the output); to it such a weight
is an "unwrapped parameter" pruned along one axis only, and the call an element-wise op
(its open issue #167). Rather than rewriting the user's forward code (``torch.fx`` cannot
trace the loops, lists and physics objects of unrolled networks) or registering a pruner
per parameter, SPADE gives each such weight a *shadow layer* while it builds the graph and
prunes:

1. :func:`find` runs the model once and notes every parameter that ``conv{1,2,3}d``,
   ``conv_transpose{1,2,3}d`` or ``linear`` receives as its weight (with its bias) and that
   is not already the weight of a layer module;
2. :class:`Shadows` builds for each a layer of the matching type whose ``weight``/``bias``
   *are* the user's parameters, attached under ``model._spade_functional`` while pruning,
   and a ``TorchFunctionMode`` (:meth:`Shadows.routing`) sends each functional call on a
   shadowed weight through its layer (with that call's stride, padding, dilation, groups),
   so the tracer sees a layer;
3. after pruning, :meth:`Shadows.sync` puts the (new, smaller) parameters back on the
   user's attributes and :meth:`Shadows.release` removes the shadows: the user's class
   runs unchanged on its own, pruned, parameters.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

ATTRIBUTE = "_spade_functional"

# functional call -> (layer type, names of its positional arguments after input, weight, bias)
_CALLS = {
    torch.conv1d: (nn.Conv1d, ("stride", "padding", "dilation", "groups")),
    torch.conv2d: (nn.Conv2d, ("stride", "padding", "dilation", "groups")),
    torch.conv3d: (nn.Conv3d, ("stride", "padding", "dilation", "groups")),
    torch.conv_transpose1d: (nn.ConvTranspose1d, ("stride", "padding", "output_padding", "groups", "dilation")),
    torch.conv_transpose2d: (nn.ConvTranspose2d, ("stride", "padding", "output_padding", "groups", "dilation")),
    torch.conv_transpose3d: (nn.ConvTranspose3d, ("stride", "padding", "output_padding", "groups", "dilation")),
    F.linear: (nn.Linear, ()),
}
_TUPLE_ARGS = ("stride", "padding", "dilation", "output_padding")


def _call_args(func, args, kwargs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict]:
    """``(input, weight, bias, {setting: value})`` of a functional layer call."""
    names = ("input", "weight", "bias") + _CALLS[func][1]
    values = dict(zip(names, args))
    values.update(kwargs)
    settings = {k: values[k] for k in _CALLS[func][1] if k in values}
    return values.get("input"), values.get("weight"), values.get("bias"), settings


@dataclass
class Use:
    """A raw parameter used as a functional layer's weight."""

    func: object
    weight: nn.Parameter
    bias: nn.Parameter | None
    groups: int
    owners: list = field(default_factory=list)  #: [(module, attribute)] holding the weight
    bias_owners: list = field(default_factory=list)
    name: str = ""  #: qualified name of the weight in the model


class _Finder(TorchFunctionMode):
    def __init__(self, candidates: dict):
        super().__init__()
        self.candidates = candidates  # id(param) -> param
        self.uses: dict[int, Use] = {}
        self.mixed: set[int] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CALLS:
            _, weight, bias, settings = _call_args(func, args, kwargs)
            if isinstance(weight, nn.Parameter) and id(weight) in self.candidates:
                known = self.uses.get(id(weight))
                bias = bias if isinstance(bias, nn.Parameter) else (None if bias is None else False)
                groups = int(settings.get("groups", 1))
                if bias is False or (known is not None and (known.func is not func or known.bias is not bias
                                                              or known.groups != groups)):
                    self.mixed.add(id(weight))  # a bias that is not a parameter, or uses that differ
                elif known is None:
                    self.uses[id(weight)] = Use(func, weight, bias, groups)
        return func(*args, **kwargs)


def find(model: nn.Module, run) -> list[Use]:
    """The raw parameters ``model`` applies as functional layers in ``run()`` (see module doc)."""
    in_layers = {id(p) for m in model.modules() if isinstance(m, tuple(t for t, _ in _CALLS.values()))
                 for p in m.parameters(recurse=False)}
    candidates = {id(p): p for p in model.parameters() if id(p) not in in_layers}
    if not candidates:
        return []
    finder = _Finder(candidates)
    with torch.no_grad(), finder:
        run()
    uses = [u for k, u in finder.uses.items() if k not in finder.mixed]
    by_id = {id(u.weight): u for u in uses}
    bias_ids = {id(u.bias): u for u in uses if u.bias is not None}
    for mname, module in model.named_modules():
        for attr, p in module._parameters.items():
            if p is None:
                continue
            if id(p) in by_id:
                use = by_id[id(p)]
                use.owners.append((module, attr))
                use.name = use.name or (f"{mname}.{attr}" if mname else attr)
            if id(p) in bias_ids:
                bias_ids[id(p)].bias_owners.append((module, attr))
    return uses


def _shadow(use: Use) -> nn.Module:
    layer_type = _CALLS[use.func][0]
    w = use.weight
    with torch.device("meta"):
        if layer_type is nn.Linear:
            layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
        elif issubclass(layer_type, nn.modules.conv._ConvTransposeNd):
            layer = layer_type(w.shape[0], w.shape[1] * use.groups, tuple(w.shape[2:]), groups=use.groups, bias=False)
        else:
            layer = layer_type(w.shape[1] * use.groups, w.shape[0], tuple(w.shape[2:]), groups=use.groups, bias=False)
    layer.weight = use.weight
    if use.bias is not None:
        layer.bias = use.bias
    return layer


class _Router(TorchFunctionMode):
    def __init__(self, layers: dict):
        super().__init__()
        self.layers = layers  # id(weight) -> layer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CALLS:
            x, weight, _, settings = _call_args(func, args, kwargs)
            layer = self.layers.get(id(weight))
            if layer is not None:
                for key, value in settings.items():
                    if key in _TUPLE_ARGS and isinstance(value, int):
                        value = (value,) * (layer.weight.dim() - 2)
                    setattr(layer, key, value)
                return layer(x)
        return func(*args, **kwargs)


class Shadows:
    """The shadow layers of a model's functional uses (see module docstring)."""

    def __init__(self, model: nn.Module, uses: list[Use]):
        self.model = model
        self.uses = uses
        self.layers = [_shadow(u) for u in uses]
        self.names = {}  #: shadow layer -> name of the user's weight
        if uses:
            holder = nn.ModuleDict({f"w{i}": layer for i, layer in enumerate(self.layers)})
            setattr(model, ATTRIBUTE, holder)
            self.names = {layer: use.name for layer, use in zip(self.layers, uses)}

    def routing(self):
        """Context in which functional calls on shadowed weights run through their layers."""
        if not self.uses:
            return contextlib.nullcontext()
        return _Router({id(layer.weight): layer for layer in self.layers})

    def sync(self) -> None:
        """Put each layer's current parameters back on the user's attributes."""
        for use, layer in zip(self.uses, self.layers):
            for module, attr in use.owners:
                module._parameters[attr] = layer.weight
            for module, attr in use.bias_owners:
                module._parameters[attr] = layer.bias

    def release(self) -> None:
        """Sync, and detach the shadow layers from the model."""
        self.sync()
        if self.uses and hasattr(self.model, ATTRIBUTE):
            delattr(self.model, ATTRIBUTE)
