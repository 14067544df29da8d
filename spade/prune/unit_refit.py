"""Reconstruction after depth pruning: re-fit the unit that follows each removed one.

Once iterations (units) are removed, the kept unit that ran after them receives an
earlier iterate than it was trained on. Each kept unit whose predecessor was removed
(the first kept unit too, when unit 0 went) has its own parameters re-fitted, in the
order the network runs, so that its output on the calibration measurements matches the
output of the same unit in the unpruned network::

    theta_j = argmin  sum_b ||u_j(theta; its input in the pruned network) - u_o(unpruned)||^2
                      / sum_b ||u_o(unpruned)||^2          (o: the unit's original index)

solved by L-BFGS (full batch over the calibration measurements, starting from the kept
weights, at most ``iterations`` steps; the result is kept only if it lowers the error):
an ISTA-Net+ phase re-fits its step size, threshold and transforms, a VarNet cascade its
U-Net and DC weight. Every unit is fitted on the inputs of the already re-fitted network,
so errors do not pile up. Only units that are modules of their own and run once per
call can be re-fitted (the blocks of an untied network, the entries of a list of
iterations; :func:`spade.prune.depth.unit_modules`). No labels are used.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..errors import require
from ..progress import bar
from . import calls

#: L-BFGS steps per re-fitted unit
ITERATIONS = 20


@dataclass
class UnitRefitRecord:
    """What the re-fit did (JSON through :meth:`to_json`)."""

    samples: int
    units: dict[str, list[float]] = field(default_factory=dict)  #: {"kept index (was o)": [rel. error before, after]}
    skipped: str | None = None  #: why no unit could be re-fitted
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def _output(model: nn.Module, unit: nn.Module, inputs, detach: bool = False) -> torch.Tensor:
    """The first tensor ``unit`` returns in a pass of ``model`` on ``inputs`` (the pass stops there)."""
    seen = calls.capture(model, unit, inputs, 1, "out", detach=detach, what="depth re-fit")
    require(bool(seen), "depth re-fit: a unit was not called on a calibration batch")
    return seen[0]


def _calls_per_pass(model: nn.Module, units: list[nn.Module], inputs) -> list[int]:
    counts = [0] * len(units)
    handles = [u.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
               for i, u in enumerate(units)]
    try:
        with torch.no_grad():
            calls.guarded(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return counts


def _sq(t: torch.Tensor) -> torch.Tensor:
    return (torch.view_as_real(t) if t.is_complex() else t).pow(2).sum()


def refit_units(pruned: nn.Module, reference: nn.Module, kept: list[int], pruned_units: list[nn.Module],
                reference_units: list[nn.Module], batches: list, iterations: int = ITERATIONS) -> UnitRefitRecord:
    """Re-fit, in place, the units of ``pruned`` that follow a removed one (module docstring).

    Args:
        pruned: the depth-pruned network (changed in place).
        reference: the network before depth pruning (left as it is).
        kept: the original index of each of ``pruned``'s units, in order.
        pruned_units / reference_units: the unit modules of both networks.
        batches: calibration ``(inputs, target)`` batches; only ``inputs`` are used.
    """
    require(bool(batches), "depth re-fit needs calibration data: give data (--data on the command line)")
    require(len(kept) == len(pruned_units), "depth re-fit: one original index per kept unit")
    start = time.perf_counter()
    record = UnitRefitRecord(samples=len(batches))
    todo = [j for j, o in enumerate(kept) if o > 0 and o - 1 not in kept]
    with calls.kept_state(pruned), calls.kept_state(reference):
        pruned.eval()
        reference.eval()
        counts = _calls_per_pass(pruned, pruned_units, batches[0][0])
        if any(counts[j] != 1 for j in todo):
            record.skipped = "a unit runs more than once per call (shared blocks): nothing re-fitted"
            return record
        for p in pruned.parameters():
            p.requires_grad_(False)
        with bar(todo, desc=f"re-fitting {len(todo)} unit(s) after removed ones", unit="unit") as units:
            for j in units:
                o = kept[j]
                with torch.no_grad():
                    targets = [_output(reference, reference_units[o], inputs, detach=True) for inputs, _ in batches]
                norm = float(sum(_sq(t) for t in targets)) or 1.0
                record.units[f"{j} (was {o})"] = _fit(pruned, pruned_units[j], batches, targets, norm, iterations)
    record.seconds = round(time.perf_counter() - start, 3)
    return record


def _fit(model, unit, batches, targets, norm, iterations) -> list[float]:
    """L-BFGS on ``unit``'s parameters; returns [relative error before, after]."""
    params = [p for p in unit.parameters() if p.is_floating_point()]
    if not params:
        return []
    saved = [p.detach().clone() for p in params]

    def error(grad: bool) -> float:
        total = 0.0
        with torch.set_grad_enabled(grad):
            for (inputs, _), t in zip(batches, targets):
                loss = _sq(_output(model, unit, inputs) - t) / norm
                if grad:
                    loss.backward()
                total += float(loss.detach())
        return total

    before = error(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        return torch.tensor(error(True))

    opt.step(closure)
    for p in params:
        p.requires_grad_(False)
        p.grad = None
    after = error(False)
    if not after < before:  # keep the kept weights when the fit did not help
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        after = before
    return [before, after]
