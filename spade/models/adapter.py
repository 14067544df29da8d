"""A user's own network, called the SPADE way: ``Adapter(model, call)(y, physics)``.

The pruner takes any module and example input, but fine-tuning, evaluation and profiling
call a network as ``model(y, physics)`` (``return_aux=True`` giving ``(x, aux)``). An
adapter says once how to call the user's class from the measurements and the physics,
with no subclassing and no change to that class::

    net = Adapter(VarNet(), call=lambda m, y, physics: m(kspace_of(y), mask_of(physics), 8))

The adapter's only module is ``model`` (so its parameters are the user's, prefixed
``model.``); its output is the first tensor the call returns (a list output such as
ISTA-Net+'s ``[x, symmetry losses]`` gives ``x``). ``aux["iterates"]`` holds that output
only: the user's network exposes no intermediate iterations.

:func:`from_factory` loads a ``"module:function"`` whose function returns
``(model, example_inputs)``: how the command line and recipes reach a user's network.
One function serves every command: ``spade prune`` and ``spade profile`` take any model
and example; ``spade evaluate`` and ``spade finetune`` (and pipeline recipes) also need
the model called as ``model(y, physics)`` with a SPADE physics, so the function returns
``(Adapter(net, call), (y, physics))`` (or a network that is called that way already).
``"module:function@FILE"`` names the function's network turned into the pruned or
fine-tuned one saved in FILE (``spade.load_pruned``: weights + pruning history); the
code always comes from the command line or recipe, never from the file.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import SpadeError, require
from ..physics import LinearPhysics


def first_tensor(output: Any) -> torch.Tensor:
    """The first tensor of a model's output (a tensor, or nested lists / tuples / dicts)."""
    if isinstance(output, torch.Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else ()
    for item in items:
        try:
            return first_tensor(item)
        except SpadeError:
            continue
    raise SpadeError(f"the adapted model returned {type(output).__name__}, which holds no tensor")


class Adapter(nn.Module):
    """``model`` called as ``call(model, y, physics)`` (see module docstring)."""

    def __init__(self, model: nn.Module, call: Callable[[nn.Module, Any, Any], Any]):
        super().__init__()
        require(isinstance(model, nn.Module), f"Adapter wraps an nn.Module, got {type(model).__name__}")
        require(callable(call), "Adapter needs call=lambda model, y, physics: model(...)")
        self.model = model
        self.call = call

    def forward(self, y, physics, return_aux: bool = False):
        x = first_tensor(self.call(self.model, y, physics))
        return (x, {"iterates": [x]}) if return_aux else x


#: ``package.module:function`` with an optional ``@FILE``
_SOURCE = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)(?:@(.+))?$")


def _called_plainly(model, y, physics):
    return model(y, physics)


def reconstruction_net(model: nn.Module) -> nn.Module:
    """``model`` if it takes ``return_aux`` (as SPADE's networks and adapters do), else an
    :class:`Adapter` calling it as ``model(y, physics)``: what the fine-tuning loop calls."""
    params = inspect.signature(model.forward).parameters
    if "return_aux" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return model
    return Adapter(model, _called_plainly)


def is_factory(spec) -> bool:
    """Whether a model argument names ``module:function[@FILE]`` rather than a file."""
    spec = str(spec)
    return ":" in spec and not Path(spec).exists()


def split_source(spec: str) -> tuple[str, str | None]:
    """``("module:function", FILE or None)`` of ``"module:function[@FILE]"``."""
    found = _SOURCE.match(str(spec))
    require(found is not None, f"'{spec}' is not MODULE:FUNCTION or MODULE:FUNCTION@FILE (e.g. mynets.varnet:build, "
                               "a function returning (model, example_inputs), or mynets.varnet:build@pruned.pt)")
    return f"{found.group(1)}:{found.group(2)}", found.group(3)


def source_name(spec: str) -> str:
    """How reports and profiles name a user's model: the file's stem, or MODULE:FUNCTION."""
    factory, file = split_source(spec)
    return Path(file).stem if file else factory


@contextlib.contextmanager
def importable_from(folder: str | Path | None):
    """Modules in ``folder`` importable while the block runs (a recipe's own folder)."""
    if folder is None or str(folder) in sys.path:
        yield
        return
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))


def from_factory(spec: str) -> tuple[nn.Module, Any]:
    """``(model, example_inputs)`` from ``"package.module:function"`` (the function is
    called without arguments)."""
    module_name, sep, function = spec.partition(":")
    require(bool(sep and module_name and function) and "@" not in function,
            f"'{spec}' is not MODULE:FUNCTION (e.g. mynets.varnet:build, a function returning (model, example))")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpadeError(f"cannot import '{module_name}' for {spec}: {exc} (is it on PYTHONPATH?)") from None
    factory = getattr(module, function, None)
    require(callable(factory), f"{module_name} has no function '{function}'")
    try:
        made = factory()
    except Exception as exc:  # the user's code: report its own message
        raise SpadeError(f"{spec}() failed: {type(exc).__name__}: {exc}") from None
    require(isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module),
            f"{spec}() must return (model, example_inputs), got {type(made).__name__}")
    return made


@dataclass
class OwnModel:
    """A user's network from ``module:function[@FILE]``, loaded: what ``load_model`` gives
    for a model file (``model``, ``physics``, ``spec``) plus its ``example`` inputs.

    ``spec``: ``family`` (the function, so a pruned copy and its original compare as one
    family), ``widths`` and, from FILE, its ``pruning`` / ``finetuning`` records."""

    source: str
    model: nn.Module
    example: Any
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return source_name(self.source)

    @property
    def physics(self) -> LinearPhysics | None:
        """The SPADE physics of a ``(y, physics)`` example, else None."""
        ex = self.example
        if isinstance(ex, (tuple, list)) and len(ex) == 2 and isinstance(ex[1], LinearPhysics):
            return ex[1]
        return None

    def require_physics(self, what: str) -> LinearPhysics:
        """The physics, or a one-line refusal saying what ``what`` needs."""
        physics = self.physics
        require(physics is not None,
                f"{what} needs the model called as model(y, physics) with a SPADE physics, but "
                f"{split_source(self.source)[0]}() returned example inputs {_describe(self.example)}: return "
                "(spade.Adapter(net, call), (y, physics))")
        return physics


def _describe(example) -> str:
    items = example if isinstance(example, (tuple, list)) else [example]
    return "(" + ", ".join(type(i).__name__ for i in items) + ")"
