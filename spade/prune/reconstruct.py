"""Reconstruction at prune time: re-fit the pruned layers to the unpruned network's outputs.

After width pruning, every convolution or linear layer whose weight lost rows or columns
is re-fitted in closed form so that, on a few calibration measurements, its output
matches the output of the same-named layer of the unpruned network at the kept output
channels (channel pruning with reconstruction: He et al. 2017, ThiNet)::

    W = argmin ||X W^T - Y||^2 + lam ||W - W0||^2,   lam = ridge * mean(diag(X^T X))

``X`` (rows = output positions, columns = ``in_channels x kh x kw`` of ``F.unfold``,
plus a column of ones for a bias) holds the layer's inputs in the *pruned* network,
``Y`` the unpruned layer's outputs, ``W0`` the pruned weights (ridge pulls towards them).
Layers are fitted one after another in the order the network first calls them, each on
the inputs of the network whose earlier layers are already re-fitted, so that errors do
not pile up. ``X^T X`` and ``X^T Y`` are accumulated in float64 over the calibration
batches; each pass of the pruned network stops as soon as the layer has seen its last
call. The unpruned layers' outputs (at the kept channels) are captured in one pass per
batch when they fit in ``CACHE_BYTES``, else layer by layer like the inputs.

Which unpruned channels a pruned layer kept is read by replaying the pruning history on
a copy of the unpruned network whose weights hold their own (out, in) indices.
No labels are used: only the measurements of the calibration batches.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpadeError, require
from ..progress import bar
from . import calls
from .graph import Graph

#: layers that can be re-fitted (plain, ungrouped convolutions and linear layers)
FITTED = (nn.Conv2d, nn.Linear)
_BASE = 1 << 12  # probe weights hold out * _BASE + in (exact in float32 for up to 4096 channels)
_ROWS = 1 << 16  # rows of X unfolded at a time
CACHE_BYTES = 2 << 30  #: memory for the unpruned layers' outputs captured in one pass per batch


@dataclass
class ReconstructRecord:
    """What reconstruction did (JSON-serialisable through :meth:`to_json`)."""

    ridge: float
    samples: int  #: calibration batches
    layers: dict[str, list[float]] = field(default_factory=dict)  #: {layer: [rel. error before, after]}
    skipped: dict[str, str] = field(default_factory=dict)  #: {layer: why it was not re-fitted}
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def _fittable(module: nn.Module) -> str | None:
    """Why ``module`` cannot be re-fitted, or None."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return "grouped convolution"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return f"padding {module.padding!r} ({module.padding_mode}) is not unfolded: give it as numbers, zeros mode"
    return None


def kept_channels(reference: nn.Module, example, history: list) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{layer: (kept output channels, kept input channels)}`` (indices into ``reference``)
    of every conv/linear layer after ``history`` (:meth:`Graph.history`) is applied."""
    probe = copy.deepcopy(reference)
    graph = Graph(probe, example)
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, FITTED):
                w = module.weight
                out_i = torch.arange(w.shape[0], dtype=w.dtype).reshape(-1, *[1] * (w.dim() - 1))
                in_i = torch.arange(w.shape[1], dtype=w.dtype).reshape(1, -1, *[1] * (w.dim() - 2))
                w.copy_(out_i * _BASE + in_i)
    graph.replay(history)
    graph.release()
    kept = {}
    for name, module in probe.named_modules():
        if isinstance(module, FITTED):
            code = module.weight.detach().reshape(module.weight.shape[0], module.weight.shape[1], -1)[..., 0]
            kept[name] = ((code[:, 0] // _BASE).long(), (code[0] % _BASE).long())
    return kept


def _call_order(model: nn.Module, names: list[str], batch) -> tuple[list[str], dict[str, int]]:
    """``names`` in the order ``model`` first calls them, and how often each is called."""
    order, counts = [], {}
    modules = dict(model.named_modules())

    def hook(name):
        def fn(*_):
            if name not in counts:
                order.append(name)
            counts[name] = counts.get(name, 0) + 1
        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    try:
        calls.guarded(model, batch)
    finally:
        for h in handles:
            h.remove()
    return order, counts


def _rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(positions, fan-in) matrix of the layer's input (im2col for convolutions)."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    cols = F.unfold(x, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _targets(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """(positions, out channels) matrix of a layer's output."""
    return y.reshape(-1, y.shape[-1]) if isinstance(module, nn.Linear) else y.movedim(1, -1).reshape(-1, y.shape[1])


def _at_kept(module: nn.Module, y: torch.Tensor, out_idx: torch.Tensor) -> torch.Tensor:
    """An unpruned layer's output at the output channels its pruned copy kept."""
    return y.index_select(-1 if isinstance(module, nn.Linear) else 1, out_idx)


def _reference_outputs(reference: nn.Module, names: list[str], kept: dict, batches: list,
                       counts: dict[str, int]) -> list[dict[str, list[torch.Tensor]]] | None:
    """Per batch, ``{layer: outputs of its calls}`` of the unpruned network at the kept
    output channels, from one pass per batch; None as soon as they would exceed
    ``CACHE_BYTES`` (each batch's pass may hold its share)."""
    modules = dict(reference.named_modules())
    share = CACHE_BYTES // max(1, len(batches))
    cached: list[dict[str, list[torch.Tensor]]] = []
    for inputs, _ in batches:
        store, held = {n: [] for n in names}, [0]

        def hook(name):
            def fn(module, _, out):
                if len(store[name]) < counts.get(name, 0):
                    y = _at_kept(module, calls.first_tensor(out).detach(), kept[name][0])
                    held[0] += y.numel() * y.element_size()
                    if held[0] > share:
                        raise calls.Stop
                    store[name].append(y)
            return fn

        calls.run_hooked(reference, inputs, [(modules[n], hook(n)) for n in names], "reconstruction")
        if held[0] > share:
            return None
        cached.append(store)
    return cached


def _statistics(module, pruned, targets, batches, counts, name):
    """``X^T X``, ``X^T Y`` and ``Y^T Y`` of layer ``name`` over ``batches``; ``targets(b)``
    gives the unpruned layer's outputs (kept channels) on batch ``b``."""
    bias = module.bias is not None
    d = module.weight[0].numel() + int(bias)
    xtx = torch.zeros(d, d, dtype=torch.float64)
    xty = torch.zeros(d, module.weight.shape[0], dtype=torch.float64)
    yty = torch.zeros((), dtype=torch.float64)
    for b, (inputs, _) in enumerate(batches):
        xs = calls.capture(pruned, module, inputs, counts[name], "in", what="reconstruction")
        ys = targets(b)
        require(len(xs) == len(ys), f"reconstruction: layer {name} runs {len(xs)} times in the pruned network "
                                    f"but {len(ys)} times in the unpruned one")
        for x, y in zip(xs, ys):
            step = max(1, _ROWS * x.shape[0] // max(1, _targets(module, y).shape[0]))  # samples per chunk
            for i in range(0, x.shape[0], step):
                a = _rows(module, x[i:i + step]).double()
                t = _targets(module, y[i:i + step]).double()
                if bias:
                    a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)
                xtx += a.T @ a
                xty += a.T @ t
                yty += (t * t).sum()
    return xtx, xty, yty


def _solve(xtx, xty, w0, ridge) -> torch.Tensor:
    lam = ridge * float(torch.diagonal(xtx).mean().clamp_min(1e-12))
    eye = torch.eye(xtx.shape[0], dtype=xtx.dtype)
    try:
        return torch.linalg.solve(xtx + lam * eye, xty + lam * w0.T)
    except RuntimeError as exc:
        raise SpadeError(f"reconstruction: the least-squares system is singular ({exc}): raise the ridge") from None


def _error(xtx, xty, yty, w) -> float:
    """Relative output error ``||X W - Y||^2 / ||Y||^2`` from the statistics."""
    err = yty - 2 * (w * xty).sum() + (w * (xtx @ w)).sum()
    return float(err.clamp_min(0) / yty.clamp_min(1e-30))


def reconstruct(pruned: nn.Module, reference: nn.Module, example, history: list, batches: list,
                ridge: float = 1e-3) -> ReconstructRecord:
    """Re-fit, in place, the layers of ``pruned`` whose weights lost rows or columns.

    Args:
        pruned: the width-pruned network (changed in place).
        reference: the same network before width pruning (module names match).
        example: the example input the pruning was traced on.
        history: the pruning history (:meth:`Graph.history`) that turned ``reference`` into
            ``pruned``.
        batches: calibration ``(inputs, target)`` batches; only ``inputs`` are used.
        ridge: regularisation, relative to the mean diagonal of ``X^T X``.
    """
    require(isinstance(ridge, (int, float)) and ridge > 0, f"ridge = {ridge!r}: give a number > 0, e.g. 1e-3")
    require(bool(batches), "reconstruction needs calibration data: give data (--data on the command line)")
    start = time.perf_counter()
    record = ReconstructRecord(ridge=float(ridge), samples=len(batches))
    ref_modules, modules = dict(reference.named_modules()), dict(pruned.named_modules())
    changed = [n for n, m in modules.items() if isinstance(m, FITTED) and n in ref_modules
               and m.weight.shape != ref_modules[n].weight.shape]
    if not changed:
        return record
    names = []
    for n in changed:
        why = _fittable(modules[n])
        if why:
            record.skipped[n] = why
        else:
            names.append(n)
    kept = kept_channels(reference, example, history)
    with torch.no_grad(), calls.kept_state(pruned), calls.kept_state(reference):
        pruned.eval()
        reference.eval()
        order, counts = _call_order(pruned, names, batches[0][0])
        _, ref_counts = _call_order(reference, names, batches[0][0])
        for n in names:
            if n not in counts:
                record.skipped[n] = "not called by the model"
        for n in order:
            out_idx, in_idx = kept[n]
            require(len(out_idx) == modules[n].weight.shape[0] and len(in_idx) == modules[n].weight.shape[1],
                    f"reconstruction: the pruning history does not give the widths of layer {n}")
        cached = _reference_outputs(reference, order, kept, batches, ref_counts)

        def targets(name):  # batch index -> the unpruned layer's outputs at the kept channels
            if cached is not None:
                return lambda b: cached[b][name]
            module = ref_modules[name]
            return lambda b: [_at_kept(module, y, kept[name][0]) for y in calls.capture(
                reference, module, batches[b][0], ref_counts.get(name, 0), "out", what="reconstruction")]

        with bar(order, desc=f"re-fitting {len(order)} layer(s)", unit="layer") as layers:
            for n in layers:
                module = modules[n]
                xtx, xty, yty = _statistics(module, pruned, targets(n), batches, counts, n)
                w0 = module.weight.detach().reshape(module.weight.shape[0], -1).double()
                if module.bias is not None:
                    w0 = torch.cat([w0, module.bias.detach().double()[:, None]], dim=1)
                w = _solve(xtx, xty, w0, ridge)
                record.layers[n] = [_error(xtx, xty, yty, w0.T), _error(xtx, xty, yty, w)]
                if module.bias is not None:
                    module.bias.copy_(w[-1].to(module.bias.dtype))
                    w = w[:-1]
                module.weight.copy_(w.T.reshape(module.weight.shape).to(module.weight.dtype))
    record.seconds = round(time.perf_counter() - start, 3)
    return record
