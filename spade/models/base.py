"""The common shape of SPADE's reconstruction networks.

Every network is called as ``model(y, physics)`` and returns the reconstruction, an
image of the shape ``physics.A_adjoint(y)`` has. ``model(y, physics, return_aux=True)``
returns ``(x, aux)`` where ``aux["iterates"]`` lists the image after every unrolled
iteration and ``aux["regularizer"]`` (when present) is a scalar training penalty of the
architecture itself (e.g. ISTA-Net+'s symmetry constraint), already weighted.

The constructor arguments of a model are its configuration (``model.config``); they are
recorded automatically so that a model file can rebuild the architecture.

What the pruner needs is declared on the model, as any user's model can declare it
(see :mod:`spade.prune.depth` and :mod:`spade.prune.calls`): ``trace_kwargs`` (the
keyword arguments that make every training branch run while tracing), ``iterates_kwargs``
(those that give the iterates without a training penalty, for a school teacher), and
``depth_units()`` / ``without_units(removed)`` (the unrolled iterations that depth
pruning may remove; the family declares which constructor argument sets their number).
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..errors import SpadeError, require
from .io import resize_tensors
from .registry import create_model, get_family
from .sharing import Sharing


class ReconstructionNet(nn.Module):
    """Base class: records constructor arguments in ``config``; subclasses set ``family``."""

    family: str = ""
    #: keyword arguments under which every branch of the network runs (traced by the pruner)
    trace_kwargs = {"return_aux": True}
    #: keyword arguments that return ``(x, aux)`` with the iterates, no training penalty
    #: needed (a distillation teacher's call)
    iterates_kwargs = {"return_aux": True}

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        except TypeError:  # copy/deepcopy create the object without arguments
            return obj
        bound.apply_defaults()
        config = {k: v for k, v in bound.arguments.items() if k != "self"}
        object.__setattr__(obj, "_config", config)
        return obj

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable values)."""
        return dict(self._config)

    def reconfigured(self, **changes) -> dict[str, Any]:
        """This model's configuration with some arguments changed."""
        cfg = self.config
        cfg.update(changes)
        return cfg

    def _sharing(self) -> tuple[str, Sharing]:
        found = [(n, m) for n, m in self.named_modules() if isinstance(m, Sharing)]
        if len(found) != 1 or not get_family(self.family).depth_key:
            raise SpadeError(f"{self.family} has no unrolled iterations (blocks under one sharing mode) to remove or copy")
        return found[0]

    def depth_units(self) -> tuple[str, int, bool]:
        """``(unit, count, interchangeable)``: the unrolled units (iterations; stages of a
        recursive network), how many there are, and whether they all share one block (then
        any ``count - d`` of them are the same network)."""
        sharing = self._sharing()[1]
        return ("stage" if sharing.mode == "recursive" else "iteration"), sharing.stages, sharing.mode == "tied"

    def unit_modules(self) -> list[nn.Module] | None:
        """The block of each unit, in order (depth re-fit, :mod:`spade.prune.unit_refit`),
        or None when units share blocks (tied, recursive)."""
        sharing = self._sharing()[1]
        return list(sharing.blocks) if sharing.mode == "untied" else None

    def inherit_blocks(self, teacher: "ReconstructionNet") -> list[int]:
        """Start from a trained ``teacher`` of the same family and widths (e.g. a recursive
        network from the untied one it is distilled from): block ``s`` of this model's
        ``S`` takes the weights of the teacher's block at the middle of the ``s``-th of
        ``S`` equal spans of its ``K`` (K = 9, S = 3: blocks 1, 4, 7); every other tensor
        of the same name and shape is copied too (the modulation keeps its start: scales
        of 1). Returns the teacher blocks used."""
        require(teacher.family == self.family, f"a {self.family} model cannot start from a {teacher.family} model")
        prefix, mine = self._sharing()
        _, theirs = teacher._sharing()
        picks = [round((s + 0.5) * len(theirs.blocks) / len(mine.blocks) - 0.5) for s in range(len(mine.blocks))]
        for s, k in enumerate(picks):
            try:
                mine.blocks[s].load_state_dict(theirs.blocks[k].state_dict())
            except RuntimeError as e:
                raise SpadeError(f"the teacher's blocks do not fit this {self.family} model (other widths or "
                                 f"channels?): {str(e).splitlines()[0]}") from None
        own, blocks = self.state_dict(), f"{prefix}.blocks."
        rest = {k: v for k, v in teacher.state_dict().items()
                if not k.startswith(blocks) and k in own and own[k].shape == v.shape and ".modulation." not in f".{k}"}
        self.load_state_dict(rest, strict=False)
        return picks

    def without_units(self, removed: list[int]) -> "ReconstructionNet":
        """A new model without the units ``removed``: rebuilt with the smaller count (the
        family's ``depth_key``; ``stages`` when recursive), the kept blocks' weights (pruned
        widths included) copied."""
        prefix, sharing = self._sharing()
        keep = [i for i in range(sharing.stages) if i not in removed]
        key = "stages" if sharing.mode == "recursive" else get_family(self.family).depth_key
        new = create_model(self.family, **self.reconfigured(**{key: len(keep)}))
        blocks = f"{prefix}.blocks."
        state = {}
        for name, value in self.state_dict().items():
            if name.startswith(blocks) and sharing.mode != "tied":
                index, rest = name[len(blocks):].split(".", 1)
                if int(index) in keep:
                    state[f"{blocks}{keep.index(int(index))}.{rest}"] = value
            else:
                state[name] = value
        own = new.state_dict()
        resize_tensors(new, {k: list(v.shape) for k, v in state.items() if k in own and own[k].shape != v.shape})
        new.load_state_dict(state, strict=True)
        return new.to(next(self.parameters()).device).train(self.training)
