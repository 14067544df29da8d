"""LISTA (Gregor & LeCun, ICML 2010) for sparse recovery, with a prunable hidden width.

ISTA for ``min 1/2 ||A x - y||^2 + lam ||x||_1`` iterates
``x <- soft(W y + S x, theta)`` with ``W = A^T / L``, ``S = I - A^T A / L`` and
``theta = lam / L``; LISTA learns ``W``, ``S`` and the thresholds of a fixed number of
layers, from ``x_0 = 0``. Codes are vectors (B, n), measurements (B, m).

Prunable width. ``S = I - W A`` is the identity minus a matrix of rank <= m, so each
layer writes it as ``S x = x - U (V x)`` with ``V``: n -> ``hidden`` and ``U``:
``hidden`` -> n (two ``nn.Linear`` layers). With ``hidden = m`` this represents every
``S`` of that form exactly, with the parameter count of the classic layer
(``n m`` for ``W`` plus ``2 n m`` = ``n^2`` for ``S`` at m = n/2). The code dimension
n and the measurement dimension m are tied to ``A`` and cannot change; the hidden width
is what a pruner removes (a rank reduction of ``A^T A``). A layer is

    x <- soft( W y + x - U (V x), theta_k )

Initialisation: at the first forward pass the weights are set from the physics' matrix
so that the untrained network is exactly ``layers`` iterations of ISTA with ``lam``:
``W = A^T / L``, ``V = diag(s) Q^T`` (the top ``hidden`` singular values and right
singular vectors of ``A``), ``U = V^T / L``, ``theta_k = lam / L``. The buffer
``initialised`` records that this happened (a loaded model is never re-initialised);
:meth:`LISTA.initialise` does it explicitly.

Thresholds belong to iteration positions (one scalar parameter per position, in every
mode), weights to blocks: ``untied`` (every layer owns W, U, V: Chen et al.'s LISTA),
``tied`` (Gregor & LeCun's shared weights, per-layer thresholds as in TiLISTA),
``recursive`` (S stages x R recursions; the modulation scales the hidden features V x).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import require
from ..physics.sparse import soft_threshold
from .base import ReconstructionNet
from .registry import register
from .sharing import Sharing, sharing_presets


class LISTALayer(nn.Module):
    """``soft(W y + x - U(V x), theta)``; ``scales[0]`` (1, hidden) multiplies ``V x``."""

    def __init__(self, m: int, n: int, hidden: int):
        super().__init__()
        self.encoder = nn.Linear(m, n, bias=False)  # W
        self.analysis = nn.Linear(n, hidden, bias=False)  # V
        self.synthesis = nn.Linear(hidden, n, bias=False)  # U

    def forward(self, x, y, theta, scales=None):
        h = self.analysis(x)
        if scales is not None:
            h = h * scales[0]
        return soft_threshold(self.encoder(y) + x - self.synthesis(h), theta)


@register("lista", physics=("sparse",), protocol="nmse",
          description="LISTA: unrolled ISTA for sparse codes, S = I - U V through a prunable hidden width",
          presets=sharing_presets(stages=4, recursions=4), depth_key="layers")
class LISTA(ReconstructionNet):
    """LISTA (see module docstring). ``model(y, physics)`` with ``y`` (B, m) -> codes (B, n)."""

    def __init__(self, layers: int = 16, m: int = 250, n: int = 500, hidden: int = 250, lam: float = 0.1,
                 sharing: str = "untied", stages: int = 4, recursions: int = 4):
        super().__init__()
        require(hidden >= 1 and m >= 1 and n >= 1, f"LISTA sizes m={m}, n={n}, hidden={hidden} must be >= 1")
        require(lam > 0, f"LISTA lam={lam} must be > 0")
        self.m, self.n, self.lam = int(m), int(n), float(lam)
        self.sharing = Sharing(lambda: LISTALayer(m, n, hidden), mode=sharing, iterations=layers, stages=stages,
                               recursions=recursions, mod_width=hidden, mod_heads=1)
        self.thresholds = nn.ParameterList(nn.Parameter(torch.zeros(1)) for _ in range(self.sharing.max_iterations))
        self.register_buffer("initialised", torch.tensor(False))
        self._ready = False

    @torch.no_grad()
    def initialise(self, physics) -> None:
        """Set the weights to ISTA's for ``physics.matrix`` (see module docstring)."""
        a = physics.matrix.double()
        lip = float(torch.linalg.matrix_norm(a, ord=2) ** 2)
        _, s, vh = torch.linalg.svd(a, full_matrices=False)  # A = U diag(s) Vh
        for layer in self.sharing.blocks:
            hidden = layer.analysis.weight.shape[0]
            v = torch.zeros(hidden, self.n, dtype=torch.float64, device=a.device)
            k = min(hidden, s.numel())
            v[:k] = s[:k, None] * vh[:k]
            layer.encoder.weight.copy_(a.T / lip)
            layer.analysis.weight.copy_(v)
            layer.synthesis.weight.copy_(v.T / lip)
        for theta in self.thresholds:
            theta.fill_(self.lam / lip)
        self.initialised.fill_(True)
        self._ready = True

    def forward(self, y: torch.Tensor, physics, return_aux: bool = False):
        require(y.dim() == 2 and y.shape[1] == self.m and getattr(physics, "n", None) == self.n,
                f"this LISTA maps {self.m} measurements to {self.n}-dimensional codes; the physics gives "
                f"y of shape {tuple(y.shape)} for codes of size {getattr(physics, 'n', '?')}: build it with m, n to match")
        if not self._ready:
            if not bool(self.initialised):
                self.initialise(physics)
            self._ready = True
        x = y.new_zeros(y.shape[0], self.n)
        iterates = []
        for k, (layer, scales) in enumerate(self.sharing.schedule()):
            x = layer(x, y, self.thresholds[k], scales)
            iterates.append(x)
        return (x, {"iterates": iterates}) if return_aux else x
