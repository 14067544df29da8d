"""Deep equilibrium model for MRI (``deq-mri``; Gilton et al. 2021).

The reconstruction is the fixed point ``x* = f(x*)`` of one map

    f(x) = P( x - eta A^H (A x - y) )

with a learned step ``eta`` and one residual ResNet/EDSR prior ``P`` (the step of
``du-mri``, :class:`~spade.models.du.GradientStep`). The fixed point is found from the
zero-filled image by Anderson acceleration (:func:`anderson`), without building a graph.
Training uses Jacobian-free backpropagation (Fung et al. 2022): the output is one more,
differentiable application ``f(x*)`` whose gradient ignores the dependence of ``x*`` on
the parameters.

Solver settings (``memory``, ``damping``, ``tol``, ``max_iter``, ``anderson_reg``) are
constructor arguments, hence part of a saved model's spec: a pruned model keeps its
parent's tolerance unless rebuilt with another one. After every forward pass
``last_residual`` (relative residual ``||f(x) - x|| / ||f(x)||`` of the returned point,
norms over the batch) and ``last_iterations`` (evaluations of ``f`` by the solver) report how the solve
went; ``return_aux=True`` adds them (and the residual history) to ``aux``.

Nothing in Jacobian-free training forces the learned map to be a contraction: after the
short trainings of the tests the relative residual reaches 1e-3 within about ten
evaluations but can level off between 1e-4 and 1e-3 (the map is close to the identity
on the k-space the mask does not sample); the solver then returns its best point after
``max_iter`` evaluations and says so in ``last_residual``.

Sharing: a DEQ applies one map until it stops changing, so it is ``tied`` by nature.
``untied`` or ``recursive`` weights would make the map depend on the iteration index and
there would be no fixed point to find; they are refused with an error.
"""
from __future__ import annotations

import torch

from ..errors import require
from .base import ReconstructionNet
from .du import GradientStep
from .priors import ResNetPrior, require_channels
from .registry import register


def check_solver(memory: int, damping: float, tol: float, max_iter: int) -> None:
    require(memory >= 1 and max_iter >= 1 and tol > 0 and 0 < damping <= 1,
            f"fixed-point solver settings memory={memory}, max_iter={max_iter}, tol={tol}, damping={damping}: "
            "need memory >= 1, max_iter >= 1, tol > 0 and 0 < damping <= 1")


@torch.no_grad()
def anderson(f, x0: torch.Tensor, memory: int = 5, damping: float = 1.0, tol: float = 1e-3, max_iter: int = 30,
             reg: float = 1e-4):
    """Anderson acceleration of the fixed-point iteration ``x <- f(x)`` (batched).

    With the last ``n <= memory`` points ``x_i`` and residuals ``g_i = f(x_i) - x_i``, the
    weights ``alpha`` minimise ``||sum_i alpha_i g_i||`` subject to ``sum alpha = 1``
    (normal equations regularised by ``reg`` times their mean diagonal, per sample), and
    the next point is ``sum_i alpha_i (x_i + damping g_i)``. Stops when the relative
    residual ``||f(x) - x|| / ||f(x)||`` (norms over the whole batch) is at most ``tol``
    or after ``max_iter`` evaluations of ``f``.

    Returns ``(x, f(x), residual, evaluations, history)`` for the evaluated point with
    the smallest residual; ``history`` lists the residual of every evaluation.
    """
    check_solver(memory, damping, tol, max_iter)
    batch = x0.shape[0]
    xs, gs, history = [], [], []
    best = None
    x = x0
    for k in range(1, max_iter + 1):
        fx = f(x)
        g = fx - x
        residual = float(g.norm() / fx.norm().clamp_min(1e-12))
        history.append(residual)
        if best is None or residual < best[2]:
            best = (x, fx, residual)
        if residual <= tol:
            break
        xs.append(x.reshape(batch, -1))
        gs.append(g.reshape(batch, -1))
        if len(xs) > memory:
            xs.pop(0)
            gs.pop(0)
        G = torch.stack(gs, dim=2).double()  # (B, d, n)
        H = G.transpose(1, 2) @ G  # (B, n, n)
        n = H.shape[-1]
        ridge = reg * H.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-30)
        H = H + ridge[:, None, None] * torch.eye(n, dtype=H.dtype, device=H.device)
        alpha = torch.linalg.solve(H, torch.ones(batch, n, 1, dtype=H.dtype, device=H.device))
        alpha = (alpha / alpha.sum(dim=1, keepdim=True)).to(x.dtype)  # (B, n, 1)
        X = torch.stack(xs, dim=2)
        x = ((X + damping * torch.stack(gs, dim=2)) @ alpha).reshape(x0.shape)
    return best[0], best[1], best[2], k, history


@register("deq-mri", physics=("mri",), protocol="fastmri",
          description="deep equilibrium model: one ResNet prior at an Anderson fixed point, Jacobian-free training",
          presets={"tied": {}})
class DEQMRI(ReconstructionNet):
    """Deep equilibrium model (see module docstring). ``model(y, physics)``."""

    #: why no static graph (ONNX) can hold this network (read by the exporter)
    onnx_unsupported = ("deq-mri runs its Anderson solver until the residual falls below tol, a loop whose "
                        "length depends on the data, which a static ONNX graph cannot hold")

    def __init__(self, width: int = 32, blocks: int = 2, res_scale: float = 1.0, image_channels: int = 2,
                 memory: int = 5, damping: float = 1.0, tol: float = 1e-3, max_iter: int = 30,
                 anderson_reg: float = 1e-4, sharing: str = "tied"):
        super().__init__()
        require(sharing == "tied", f"deq-mri has no '{sharing}' mode: a deep equilibrium model is the fixed point "
                                   "of one shared map, so its only sharing mode is 'tied'")
        check_solver(memory, damping, tol, max_iter)
        self.image_channels = image_channels
        self.memory, self.damping, self.tol, self.max_iter = int(memory), float(damping), float(tol), int(max_iter)
        self.anderson_reg = float(anderson_reg)
        self.step = GradientStep(ResNetPrior(image_channels, width, blocks, res_scale))
        self.last_residual: float | None = None
        self.last_iterations: int | None = None

    def forward(self, y: torch.Tensor, physics, return_aux: bool = False):
        x0 = physics.A_dagger(y)
        require_channels(x0, self.image_channels, "deq-mri")

        def f(x):
            return self.step(x, y, physics)

        x, fx, residual, evaluations, history = anderson(f, x0, self.memory, self.damping, self.tol, self.max_iter,
                                                         self.anderson_reg)
        self.last_residual, self.last_iterations = residual, evaluations
        out = f(x.detach()) if torch.is_grad_enabled() else fx
        if not return_aux:
            return out
        return out, {"iterates": [out], "residual": residual, "iterations": evaluations, "residuals": history}
