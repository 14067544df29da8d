"""Parameter sharing across unrolled iterations: a *mode* of any iteration scheme.

* ``untied`` — every iteration owns its block (deep unfolding);
* ``tied`` — one block called K times;
* ``recursive`` — S stages x R recursions ("Recursions Are All You Need"): stage ``s``
  is applied ``r_s`` times in a row; while training, each ``r_s`` is drawn uniformly
  from 1..R for every forward pass, at test time ``r_s = R``. A small *modulation unit*
  receives ``[conditioning..., total iterations / (S R), current index / (S R)]`` and
  produces per-channel scales that the blocks apply, so a shared block can behave
  differently at each iteration.

A scheme asks :meth:`Sharing.schedule` for the sequence of ``(block, scales)`` to run;
``scales`` is ``None`` when the mode has no modulation, else a list of ``heads``
tensors of shape (1, width). Families that condition every block on an external value
(COAST on the sampling ratio) pass it as ``cond``; in the untied and tied modes this
value then drives a single linear layer per head (``cond_inputs -> width``), in the
recursive mode the modulation MLP.

Modulation layers start at zero weights and unit bias: before training every scale is 1.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import require

MODES = ("untied", "tied", "recursive")


def sharing_presets(stages: int, recursions: int) -> dict[str, dict]:
    """The presets of a family that has every sharing mode: ``untied`` (its defaults),
    ``tied``, and ``recursive`` with ``stages`` x ``recursions``."""
    return {"untied": {}, "tied": {"sharing": "tied"},
            "recursive": {"sharing": "recursive", "stages": stages, "recursions": recursions}}


class Modulation(nn.Module):
    """``heads`` independent maps ``n_in -> width`` (a linear layer, or an MLP
    ``n_in -> hidden -> ReLU -> width`` when ``hidden`` is given)."""

    def __init__(self, n_in: int, width: int, heads: int = 1, hidden: int | None = None):
        super().__init__()
        self.heads = nn.ModuleList()
        for _ in range(heads):
            if hidden:
                head = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, width))
            else:
                head = nn.Sequential(nn.Linear(n_in, width))
            nn.init.zeros_(head[-1].weight)
            nn.init.ones_(head[-1].bias)
            self.heads.append(head)

    def forward(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """``cond`` (n_in,) -> list of ``heads`` tensors (1, width)."""
        c = cond.reshape(1, -1)
        return [head(c) for head in self.heads]


class Sharing(nn.Module):
    """The blocks of an unrolled network under one sharing mode (see module docstring).

    Args:
        make_block: builds one block (called once per owned block).
        mode: ``untied``, ``tied`` or ``recursive``.
        iterations: K, the number of iterations (untied, tied).
        stages, recursions: S and R (recursive).
        cond_inputs: length of the external conditioning vector (0 for none).
        mod_width: channels each modulation head scales (required when modulated).
        mod_heads: number of modulation heads (scale vectors per iteration).
    """

    def __init__(self, make_block: Callable[[], nn.Module], mode: str = "untied", iterations: int | None = None,
                 stages: int | None = None, recursions: int | None = None, cond_inputs: int = 0,
                 mod_width: int | None = None, mod_heads: int = 1):
        super().__init__()
        require(mode in MODES, f"unknown sharing mode '{mode}': choose one of {list(MODES)}")
        self.mode = mode
        if mode == "recursive":
            require(stages is not None and recursions is not None and stages >= 1 and recursions >= 1,
                    f"recursive sharing needs stages >= 1 and recursions >= 1 (got {stages}, {recursions})")
            self.stages, self.recursions = int(stages), int(recursions)
            n_blocks = self.stages
        else:
            require(iterations is not None and iterations >= 1,
                    f"{mode} sharing needs iterations >= 1 (got {iterations})")
            self.stages, self.recursions = int(iterations), 1
            n_blocks = self.stages if mode == "untied" else 1
        self.blocks = nn.ModuleList(make_block() for _ in range(n_blocks))
        self.cond_inputs = int(cond_inputs)
        if mode == "recursive":
            require(mod_width is not None, "recursive sharing needs the modulation width")
            self.modulation = Modulation(self.cond_inputs + 2, mod_width, mod_heads, hidden=mod_width)
        elif self.cond_inputs > 0:
            self.modulation = Modulation(self.cond_inputs, mod_width, mod_heads)
        else:
            self.modulation = None
        self.last_counts: list[int] = []

    @property
    def max_iterations(self) -> int:
        return self.stages * self.recursions

    def counts(self) -> list[int]:
        """Iterations per owned block position for this forward pass (see module docstring)."""
        if self.mode != "recursive":
            return [1] * self.stages
        if self.training and self.recursions > 1:
            return [int(r) for r in torch.randint(1, self.recursions + 1, (self.stages,))]
        return [self.recursions] * self.stages

    def schedule(self, cond: torch.Tensor | None = None) -> list[tuple[nn.Module, list[torch.Tensor] | None]]:
        """The ``(block, scales)`` pairs to apply in order."""
        counts = self.counts()
        self.last_counts = counts
        total = sum(counts)
        steps = []
        index = 0
        require(self.cond_inputs == 0 or cond is not None,
                f"this network is conditioned on {self.cond_inputs} value(s) (e.g. the sampling ratio): pass cond")
        static = None
        if self.modulation is not None:
            weight = next(self.modulation.parameters())
            device, dtype = weight.device, weight.dtype
            if self.mode != "recursive":
                static = self.modulation(cond.reshape(-1).to(device, dtype))
        for s, r in enumerate(counts):
            block = self.blocks[s] if self.mode != "tied" else self.blocks[0]
            for _ in range(r):
                index += 1
                if self.mode == "recursive":
                    position = torch.tensor([total / self.max_iterations, index / self.max_iterations],
                                            device=device, dtype=dtype)
                    c = position if cond is None else torch.cat([cond.reshape(-1).to(position), position])
                    steps.append((block, self.modulation(c)))
                else:
                    steps.append((block, static))
        return steps
