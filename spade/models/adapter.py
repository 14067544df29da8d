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
``(model, example_inputs)``: how the command line reaches a user's network.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import SpadeError, require


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    items = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else ()
    for item in items:
        try:
            return _first_tensor(item)
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
        x = _first_tensor(self.call(self.model, y, physics))
        return (x, {"iterates": [x]}) if return_aux else x


def is_factory(spec: str) -> bool:
    """Whether a model argument names ``module:function`` rather than a file."""
    return ":" in spec and not Path(spec).exists()


def from_factory(spec: str) -> tuple[nn.Module, Any]:
    """``(model, example_inputs)`` from ``"package.module:function"`` (the function is
    called without arguments)."""
    module_name, sep, function = spec.partition(":")
    require(bool(sep and module_name and function),
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
