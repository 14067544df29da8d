"""Channel importance criteria (torch-pruning's importance classes) and the gradients
that the data-driven ones need.

=========  ==============================================================================
criterion  score of a channel (summed over every layer of its group, normalised per group)
=========  ==============================================================================
l1         ``sum |w|`` (``tp.importance.MagnitudeImportance(p=1)``)
l2         ``sum w^2`` (``MagnitudeImportance(p=2)``)
lamp       LAMP-normalised ``w^2`` (``LAMPImportance``)
random     uniform random (seeded)
taylor     ``sum |w * dL/dw|`` (``TaylorImportance``), first-order loss change
hessian    ``sum w^2 * E[(dL_i/dw)^2]`` (``HessianImportance``), the diagonal-Fisher
           (Optimal Brain Damage) estimate, gradients taken one sample at a time
=========  ==============================================================================

``L`` is the mean squared error between the model's reconstruction of its own
measurements and the ground truth, over a few batches of data.

The names are aliases: ``importance=`` also takes any ``tp.importance.Importance``
object (``__call__(group) -> one score per channel``), torch-pruning's extension point
for new criteria. Instances of its Taylor / Hessian classes get the gradients above.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from ..errors import SpadeError
from . import calls

CRITERIA = ("l1", "l2", "taylor", "hessian", "lamp", "random")
DATA_CRITERIA = ("taylor", "hessian")


def is_importance(obj) -> bool:
    """A torch-pruning importance object (a criterion given as an object, not a name)."""
    return isinstance(obj, tp.importance.Importance)


def label(importance) -> str:
    """The name a criterion is recorded under: the alias, or the object's class name."""
    return type(importance).__name__ if is_importance(importance) else str(importance)


def data_kind(importance) -> str | None:
    """``"taylor"`` / ``"hessian"`` for a criterion that needs gradients on data, else None."""
    if is_importance(importance):
        if isinstance(importance, tp.importance.HessianImportance):
            return "hessian"
        return "taylor" if isinstance(importance, tp.importance.TaylorImportance) else None
    return importance if importance in DATA_CRITERIA else None


def make_importance(name):
    """torch-pruning importance object for a criterion name (an object is returned as is)."""
    if is_importance(name):
        return name
    imp = tp.importance
    table = {
        "l1": lambda: imp.MagnitudeImportance(p=1),
        "l2": lambda: imp.MagnitudeImportance(p=2),
        "lamp": lambda: imp.LAMPImportance(p=2),
        "random": lambda: imp.RandomImportance(),
        "taylor": lambda: imp.TaylorImportance(),
        "hessian": lambda: imp.HessianImportance(),
    }
    if name not in table:
        raise SpadeError(f"unknown importance criterion '{name}': choose one of {list(CRITERIA)}")
    return table[name]()


def _losses(model: nn.Module, inputs, target: torch.Tensor, per_sample: bool) -> list[torch.Tensor]:
    out = calls.first_tensor(calls.guarded(model, inputs))
    if out.shape != target.shape:
        raise SpadeError(f"the model's output has shape {tuple(out.shape)} but the data's ground truth has "
                         f"shape {tuple(target.shape)}")
    if per_sample and out.shape[0] > 1:
        return [F.mse_loss(out[i], target[i]) for i in range(out.shape[0])]
    return [F.mse_loss(out, target)]


def set_gradients(model: nn.Module, criterion: str, batches: Iterable) -> int:
    """Fill ``p.grad`` for a data-driven criterion; returns the number of samples used.

    ``batches``: ``(inputs, target)`` pairs (inputs in any example form). Taylor: the
    gradient of the summed batch losses. Hessian: the mean of squared per-sample
    gradients (torch-pruning's own accumulator keeps only the last sample; this one
    averages them). Parameters the loss does not reach get a zero gradient.
    """
    params = [p for p in model.parameters()]
    squares = [torch.zeros_like(p) for p in params] if criterion == "hessian" else None
    count = 0
    with torch.enable_grad(), calls.kept_state(model), calls.unrolled_checkpoints():
        model.eval()
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        for inputs, target in batches:
            losses = _losses(model, inputs, target, per_sample=squares is not None)
            for i, loss in enumerate(losses):
                if squares is not None:
                    grads = torch.autograd.grad(loss, params, retain_graph=i < len(losses) - 1, allow_unused=True)
                    for s, g in zip(squares, grads):
                        if g is not None:
                            s += g.detach() ** 2
                else:
                    loss.backward(retain_graph=i < len(losses) - 1)
                count += 1
    if count == 0:
        raise SpadeError(f"the '{criterion}' criterion needs data, but no batch was given")
    for i, p in enumerate(params):
        if squares is not None:
            p.grad = squares[i] / count
        elif p.grad is None:
            p.grad = torch.zeros_like(p)
    return count


def clear_gradients(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None
