"""The physics protocol shared by every measurement operator.

A physics object knows the forward model ``y = A x + n`` and nothing about networks:

* ``A(x)`` / ``A_adjoint(y)``: the linear operator and its adjoint for the real inner
  product ``<u, v> = sum(u * v)`` (complex data are stored as real tensors, so this is
  the real part of the complex inner product);
* ``A_dagger(y)``: the starting point of a reconstruction (zero-filled, ``Qinit``,
  bicubic, ...);
* ``prox_l2(z, y, gamma)``: the data-consistency step
  ``argmin_x 1/2 ||A x - y||^2 + 1/(2 gamma) ||x - z||^2``;
* ``simulate(x, noise_level, seed)``: measurements with additive Gaussian noise.

Operators are ``nn.Module`` s so that their tensors (masks, kernels, matrices) follow
``.to(device)``; they hold no trainable parameters.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def batch_scalar(value, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-sample (B,) value as a tensor broadcastable to ``like`` (B, ...)."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def _batch_dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-sample real inner product, shape (B, 1, ..., 1) broadcastable to ``u``."""
    d = (u * v).flatten(1).sum(1)
    return d.view(-1, *([1] * (u.dim() - 1)))


class LinearPhysics(nn.Module):
    """Base class of the linear measurement operators.

    Subclasses implement :meth:`A`, :meth:`A_adjoint`, :meth:`settings` and
    :meth:`from_settings`; they may override :meth:`A_dagger` and :meth:`prox_l2` with
    closed forms.
    """

    #: registry name, stored in model files (``"mri"``, ``"sr"``, ``"cs"``)
    kind: str = ""

    def __init__(self, noise_level: float = 0.0):
        super().__init__()
        if not noise_level >= 0:
            from ..errors import SpadeError

            raise SpadeError(f"noise level {noise_level} is negative: give a value >= 0")
        self.noise_level = float(noise_level)

    # --- operator -------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """Starting point of a reconstruction; the adjoint unless a subclass knows better."""
        return self.A_adjoint(y)

    def AtA(self, x: torch.Tensor) -> torch.Tensor:
        """The normal operator ``A^T A x``."""
        return self.A_adjoint(self.A(x))

    # --- data consistency -----------------------------------------------------------
    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float | torch.Tensor,
                max_iter: int = 100, tol: float = 1e-7) -> torch.Tensor:
        """``argmin_x 1/2 ||A x - y||^2 + 1/(2 gamma) ||x - z||^2``.

        Generic solver: conjugate gradients on ``(I + gamma A^T A) x = z + gamma A^T y``,
        batched (one step size per sample), stopping when every sample's relative
        residual is below ``tol``.
        """
        gamma = batch_scalar(gamma, z)
        b = z + gamma * self.A_adjoint(y)

        def op(v):
            return v + gamma * self.AtA(v)

        x = z.clone()
        r = b - op(x)
        p = r.clone()
        rs = _batch_dot(r, r)
        b_norm = _batch_dot(b, b).clamp_min(torch.finfo(z.dtype).tiny)
        for _ in range(max_iter):
            if bool((rs / b_norm).max() <= tol * tol):
                break
            Ap = op(p)
            alpha = rs / _batch_dot(p, Ap).clamp_min(torch.finfo(z.dtype).tiny)
            x = x + alpha * p
            r = r - alpha * Ap
            rs_new = _batch_dot(r, r)
            p = r + (rs_new / rs.clamp_min(torch.finfo(z.dtype).tiny)) * p
            rs = rs_new
        return x

    # --- measurements ---------------------------------------------------------------
    def noise(self, y: torch.Tensor, sigma: float, generator: torch.Generator | None) -> torch.Tensor:
        """Add white Gaussian noise of standard deviation ``sigma`` to ``y``."""
        if sigma == 0:
            return y
        n = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        return y + sigma * n

    def simulate(self, x: torch.Tensor, noise_level: float | None = None,
                 seed: int | None = None) -> torch.Tensor:
        """Measurements ``A x + noise``; the same ``seed`` gives the same noise.

        ``noise_level`` defaults to the operator's own; ``seed=None`` draws from the
        global generator.
        """
        sigma = self.noise_level if noise_level is None else float(noise_level)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=x.device)
            generator.manual_seed(int(seed))
        return self.noise(self.A(x), sigma, generator)

    # --- shapes ---------------------------------------------------------------------
    def image_shape(self, y: torch.Tensor) -> tuple[int, ...]:
        """Shape (B, C, H, W) of the image that measurements ``y`` come from."""
        return tuple(self.A_adjoint(y).shape)

    # --- (de)serialisation ----------------------------------------------------------
    def settings(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """JSON-serialisable settings (everything but the tensors of :meth:`tensors`)."""
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        """Tensors needed to rebuild the operator (masks, matrices, kernels)."""
        return {name: buf.detach().cpu() for name, buf in self.named_buffers(recurse=False)
                if name not in self._derived_buffers()}

    def _derived_buffers(self) -> set[str]:
        """Buffers recomputed from the others on construction (not stored)."""
        return set()

    @classmethod
    def from_settings(cls, settings: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "LinearPhysics":  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings().items())
