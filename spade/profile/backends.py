"""Backends that run a network bound to its physics, each checked against eager.

=============  ==========================================================================
backend        what runs
=============  ==========================================================================
eager          ``model(y, physics)`` in inference mode
channels-last  weights and 4-D input in ``torch.channels_last`` memory format
compile        ``torch.compile(fullgraph=True)`` (inductor), compiled on the example input
onnxruntime    ONNX export (dynamo exporter, :mod:`.onnx_export`) run by ONNX Runtime
=============  ==========================================================================

A backend is a function ``prepare(bound, y, threads, device) -> (run, timed)``: ``run``
maps any input of the example's shape to the backend's output (used to verify it),
``timed`` is one call on the example input as it is timed. :func:`prepare` builds one
and :func:`verify` compares it with eager on several inputs: the profiler reports a
backend's time only when ``max |backend - eager| <= tolerance * max(1, max |eager|)``.
More backends are added with :func:`register_backend`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import SpadeError
from .onnx_export import INPUT, export_onnx, run_session, session

#: default verification tolerance, relative to max(1, max |eager output|)
TOLERANCE = 1e-3


class Bound(nn.Module):
    """A network with its physics bound in: ``forward(y) -> model(y, physics)``."""

    def __init__(self, model: nn.Module, physics: nn.Module):
        super().__init__()
        self.model = model
        self.physics = physics

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.model(y, self.physics)


Prepare = Callable[[Bound, torch.Tensor, int, torch.device], tuple[Callable, Callable]]
BACKENDS: dict[str, tuple[Prepare, str]] = {}


def register_backend(name: str, description: str) -> Callable[[Prepare], Prepare]:
    """Decorator that adds a backend under ``name``."""

    def wrap(fn: Prepare) -> Prepare:
        BACKENDS[name] = (fn, description)
        return fn

    return wrap


def _in_inference(module: Callable) -> Callable:
    def run(v):
        with torch.inference_mode():
            return module(v)
    return run


@register_backend("eager", "PyTorch eager, inference mode")
def _eager(bound, y, threads, device):
    run = _in_inference(bound)
    return run, lambda: run(y)


@register_backend("channels-last", "PyTorch eager, weights and input in channels-last memory format")
def _channels_last(bound, y, threads, device):
    cl = copy.deepcopy(bound).to(memory_format=torch.channels_last)
    forward = _in_inference(cl)

    def convert(v):
        return v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v

    y_cl = convert(y)
    return (lambda v: forward(convert(v))), (lambda: forward(y_cl))


@register_backend("compile", "torch.compile(fullgraph=True), inductor")
def _compile(bound, y, threads, device):
    compiled = _in_inference(torch.compile(bound, fullgraph=True, dynamic=False))
    compiled(y)  # compile now, not inside the first timed block
    return compiled, lambda: compiled(y)


@register_backend("onnxruntime", "ONNX export (dynamo exporter) + ONNX Runtime, no thread spinning")
def _onnxruntime(bound, y, threads, device):
    sess = session(export_onnx(bound, y), threads, device)
    feed = {INPUT: y.detach().cpu().numpy()}
    return (lambda v: run_session(sess, v).to(device)), (lambda: sess.run(None, feed))


@dataclass
class Runner:
    """A prepared backend (see module docstring); ``setup_s``: export/compile time."""

    name: str
    run: Callable[[torch.Tensor], torch.Tensor]
    timed: Callable[[], object]
    setup_s: float


def check_backends(names: list[str]) -> list[str]:
    """Validate backend names (``all`` = every registered backend)."""
    if names == ["all"]:
        return list(BACKENDS)
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise SpadeError(f"unknown backend {unknown or names}: choose from {list(BACKENDS)} or 'all'")
    return list(dict.fromkeys(names))


def prepare(name: str, bound: Bound, y: torch.Tensor, threads: int, device: torch.device) -> Runner:
    """Build backend ``name`` for ``bound`` on the example ``y`` (may raise anything)."""
    fn, _ = BACKENDS[name]
    start = time.perf_counter()
    run, timed = fn(bound, y, threads, device)
    return Runner(name, run, timed, time.perf_counter() - start)


def verify(run: Callable[[torch.Tensor], torch.Tensor], bound: Bound, inputs: list[torch.Tensor]) -> float:
    """``max |run(y) - eager(y)| / max(1, max |eager(y)|)`` over the ``inputs`` y."""
    worst = 0.0
    for y in inputs:
        with torch.inference_mode():
            ref = bound(y).float()
        out = run(y).float().to(ref.device)
        if out.shape != ref.shape:
            raise SpadeError(f"backend output has shape {tuple(out.shape)}, eager {tuple(ref.shape)}")
        scale = max(1.0, float(ref.abs().max()))
        for what, t in (("eager", ref), ("backend", out)):  # max() below would drop a NaN
            if not bool(torch.isfinite(t).all()):
                raise SpadeError(f"the {what} output holds NaN or infinite values")
        worst = max(worst, float((out - ref).abs().max()) / scale)
    return worst
