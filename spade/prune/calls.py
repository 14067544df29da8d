"""Running a model on an example input, the same way everywhere in the pruner.

An example input is a tensor (``model(t)``), a tuple or list of positional inputs
(``model(*t)``), a dict of keyword inputs (``model(**d)``) or a function
``fn(model) -> output``. The batch axis of a tensor is kept as it is: a (1, C, H, W)
example is passed as (1, C, H, W).

A model may declare ``trace_kwargs`` (a dict of keyword arguments): they are added when
tracing a positional or keyword example, so that branches that only run for a training
penalty (e.g. ISTA-Net+'s symmetry constraint, ``return_aux=True`` on SPADE's networks)
are part of the graph and keep consistent widths.

During tracing and gradient passes, reentrant checkpoints
(``torch.utils.checkpoint.checkpoint(..., use_reentrant=True)``) run their function
directly: a reentrant checkpoint runs it under ``no_grad`` and would hide the layers
inside it from the dependency graph (and from gradients).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils import checkpoint as _checkpoint

from ..errors import SpadeError

Example = Any  # torch.Tensor | tuple | list | dict | Callable[[nn.Module], Any]


def check_example(example: Example, what: str = "example input") -> None:
    """Raise a SpadeError unless ``example`` is one of the accepted forms."""
    if isinstance(example, (torch.Tensor, tuple, list, dict)) or callable(example):
        return
    raise SpadeError(f"the {what} is a {type(example).__name__}: give a tensor, a tuple of positional "
                     "inputs, a dict of keyword inputs, or a function fn(model)")


def run(model: nn.Module, example: Example, **extra) -> Any:
    """``model`` applied to ``example`` (``extra`` keyword arguments added)."""
    if isinstance(example, torch.Tensor):
        return model(example, **extra)
    if isinstance(example, (tuple, list)):
        return model(*example, **extra)
    if isinstance(example, dict):
        return model(**example, **extra)
    return example(model)


def trace_extras(model: nn.Module, example: Example) -> dict:
    """Keyword arguments added when tracing: the model's own ``trace_kwargs``."""
    declared = getattr(model, "trace_kwargs", None)
    if isinstance(declared, dict) and not callable(example) and not isinstance(example, torch.Tensor):
        return dict(declared)
    return {}


def guarded(model: nn.Module, example: Example, **extra) -> Any:
    """:func:`run`, with any failure reported as a SpadeError that keeps the original message."""
    try:
        return run(model, example, **extra)
    except SpadeError as exc:
        raise SpadeError(f"the model failed on the example input: {exc}") from exc
    except Exception as exc:  # the user's model: any error is reported with its own message
        raise SpadeError(f"the model failed on the example input: {type(exc).__name__}: {exc}") from exc


def tensors_of(output: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) output of tuples, lists and dicts."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for o in output for t in tensors_of(o)]
    if isinstance(output, dict):
        return [t for o in output.values() for t in tensors_of(o)]
    return []


def first_tensor(output: Any) -> torch.Tensor:
    """The reconstruction: the first tensor of a model's output."""
    found = tensors_of(output)
    if not found:
        raise SpadeError(f"the model returned {type(output).__name__}, which holds no tensor")
    return found[0]


class Stop(Exception):
    """Raised by a hook of :func:`run_hooked` to end the pass early (not an error)."""


def run_hooked(model: nn.Module, example: Example, hooks: list[tuple[nn.Module, Callable]],
               what: str = "the pass") -> None:
    """One pass of ``model`` on ``example`` with forward ``hooks`` ``(module, fn)``
    registered for its duration; a hook may raise :class:`Stop` to end it. A failure of
    the model is a SpadeError prefixed with ``what``."""
    handles = [module.register_forward_hook(fn) for module, fn in hooks]
    try:
        run(model, example)
    except Stop:
        pass
    except Exception as exc:
        raise SpadeError(f"{what}: the model failed on a calibration batch: {type(exc).__name__}: {exc}") from None
    finally:
        for handle in handles:
            handle.remove()


def capture(model: nn.Module, module: nn.Module, example: Example, calls_needed: int = 1, want: str = "out",
            detach: bool = True, what: str = "the pass") -> list[torch.Tensor]:
    """The inputs (``want="in"``: the first argument) or outputs (the first tensor) of
    ``module`` in one pass of ``model`` on ``example``, which stops after the module's
    ``calls_needed``-th call; ``detach=False`` keeps them on the autograd graph. A failure
    of the model is a SpadeError prefixed with ``what``."""
    seen = []

    def fn(_, args, out):
        t = args[0] if want == "in" else first_tensor(out)
        seen.append(t.detach() if detach else t)
        if len(seen) == calls_needed:
            raise Stop

    run_hooked(model, example, [(module, fn)], what)
    return seen


@contextlib.contextmanager
def unrolled_checkpoints() -> Iterator[None]:
    """Make reentrant checkpoints call their function directly (see module docstring)."""
    cls = _checkpoint.CheckpointFunction
    had_own = "apply" in cls.__dict__
    own = cls.__dict__.get("apply")

    def direct(function: Callable, preserve_rng_state: bool, *args):
        return function(*args)

    cls.apply = staticmethod(direct)
    try:
        yield
    finally:
        if had_own:
            cls.apply = own
        else:
            del cls.apply


@contextlib.contextmanager
def kept_state(model: nn.Module) -> Iterator[None]:
    """Restore every module's train/eval flag and every parameter's ``requires_grad``
    (looked up by name, as pruning replaces parameter objects) on exit."""
    modes = {name: m.training for name, m in model.named_modules()}
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        yield
    finally:
        for name, m in model.named_modules():
            if name in modes:
                m.training = modes[name]
        for name, p in model.named_parameters():
            if name in grads:
                p.requires_grad_(grads[name])
