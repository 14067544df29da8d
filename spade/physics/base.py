"""The physics protocol shared by every measurement operator.

A physics object knows the forward model ``y = A x + n`` and nothing about networks:

* ``A(x)`` / ``A_adjoint(y)``: the linear operator and its adjoint for the real inner
  product ``<u, v> = sum(u * v)`` (complex data are stored as real tensors, so this is
  the real part of the complex inner product);
* ``A_dagger(y)``: the starting point of a reconstruction (zero-filled, ``Qinit``,
  bicubic, ...);
* ``gradient_step(x, y, step)``: ``x - step A^T (A x - y)``, the data step of every
  unrolled gradient scheme;
* ``prox_l2(z, y, gamma)``: the data-consistency step
  ``argmin_x 1/2 ||A x - y||^2 + 1/(2 gamma) ||x - z||^2``;
* ``split_blocks(y, b)``: when the operator measures every ``b x b`` block of an image
  on its own with the same operator (block CS), the measurements as a batch of one-block
  problems and the function that puts the blocks back together; None otherwise;
* ``simulate(x, noise_level, seed)``: measurements with noise from its noise model
  (:mod:`spade.physics.noise`);
* the images it measures: :meth:`~LinearPhysics.image_shape`, the network's domain
  (:meth:`~LinearPhysics.to_domain` / :meth:`~LinearPhysics.to_image`), how a test image
  is cropped and padded to fit (:meth:`~LinearPhysics.crop_image`,
  :meth:`~LinearPhysics.pad_image`), the training patch (:meth:`~LinearPhysics.default_patch`,
  :meth:`~LinearPhysics.check_patch`) and its evaluation protocols (``protocols``);
* the operators of a training run: :meth:`~LinearPhysics.step` (a fixed operator is its
  own every step; a random one, such as :class:`~spade.physics.cs.RandomBlockCS`, draws a
  new one) and :meth:`~LinearPhysics.references` (the fixed operators to validate on).

Every subclass that sets ``kind`` registers itself in :data:`KINDS` (the name stored in
model files and used by :func:`~spade.physics.config.build_physics`), so a new kind of
physics is one module of this package. Operators are ``nn.Module`` s so that their
tensors (masks, kernels, matrices) follow ``.to(device)``; they hold no trainable
parameters.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..errors import SpadeError, require
from .noise import GaussianNoise

#: physics kinds by name (``"mri"``, ``"sr"``, ``"cs"``, ``"sparse"``, ...), filled by subclassing
KINDS: dict[str, type["LinearPhysics"]] = {}


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

    Subclasses set ``kind``, ``protocols`` and ``config_keys`` and implement :meth:`A`,
    :meth:`A_adjoint`, :meth:`settings`, :meth:`from_settings` and :meth:`from_config`;
    they override :meth:`A_dagger` and :meth:`prox_l2` with closed forms and the image
    methods where the defaults (any image size, the image is the network's input) do not
    hold.
    """

    #: registry name, stored in model files (``"mri"``, ``"sr"``, ``"cs"``, ``"sparse"``)
    kind: str = ""
    #: evaluation protocols this operator can be scored under, the default first
    protocols: tuple[str, ...] = ()
    #: keys :meth:`from_config` accepts (besides ``kind`` and ``noise_level``)
    config_keys: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind:
            known = KINDS.get(kind)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise SpadeError(f"physics kind '{kind}' is defined twice ({known.__module__}.{known.__qualname__} "
                                 f"and {cls.__module__}.{cls.__qualname__}): give the new one another kind")
            KINDS[kind] = cls

    def __init__(self, noise_level: float = 0.0):
        super().__init__()
        self.noise_model = GaussianNoise(noise_level)
        self.noise_level = self.noise_model.sigma

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

    def gradient_step(self, x: torch.Tensor, y: torch.Tensor, step) -> torch.Tensor:
        """``x - step A^T (A x - y)``: a gradient step on ``1/2 ||A x - y||^2``; ``step`` a
        scalar, a (1,) parameter or per-sample (B,) values."""
        return x - step * self.A_adjoint(self.A(x) - y)

    def split_blocks(self, y: torch.Tensor, block_size: int) -> tuple[torch.Tensor, Callable] | None:
        """``(y_blocks, join)`` when this operator measures every ``block_size`` square
        block of the image on its own, the same way: ``y_blocks`` holds the measurements
        of each block as a batch of one-block problems (this operator measures a batch of
        one-block images), ``join`` maps reconstructed blocks (N, C, b, b) back to the
        images (B, C, H, W). A network whose priors also work block by block can then
        iterate on the batch of blocks. None (the default): the operator mixes blocks."""
        return None

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
    def noise_for(self, noise_level: float | None = None) -> GaussianNoise:
        """The operator's own noise model, or white Gaussian noise of ``noise_level``."""
        return self.noise_model if noise_level is None else GaussianNoise(noise_level)

    def noise(self, y: torch.Tensor, model: GaussianNoise, seed: int | None = None) -> torch.Tensor:
        """``y`` plus noise drawn from ``model`` (subclasses restrict where noise lands)."""
        return model(y, seed)

    def simulate(self, x: torch.Tensor, noise_level: float | None = None,
                 seed: int | None = None) -> torch.Tensor:
        """Measurements ``A x + noise``; the same ``seed`` gives the same noise.

        ``noise_level`` (white Gaussian noise of that standard deviation) replaces the
        operator's own noise model; ``seed=None`` draws from the model's generator.
        """
        return self.noise(self.A(x), self.noise_for(noise_level), seed)

    # --- images ---------------------------------------------------------------------
    def image_shape(self, side: int | None = None, channels: int = 1) -> tuple[int, ...]:
        """Shape (C, H, W) of the images this operator measures (before
        :meth:`to_domain`); ``side`` chooses the size of size-free operators and
        ``channels`` the colour channels where the operator allows a choice."""
        require(side is not None, f"{type(self).__name__} measures images of any size: give a side")
        self.check_patch(side, "image side")
        return (channels, side, side)

    def to_domain(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] -> the network's input domain (the same here)."""
        return x

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """A network output (B, C', H, W) -> the image (B, C, H, W) that is scored."""
        return x

    def crop_image(self, x: torch.Tensor) -> torch.Tensor:
        """The part (..., h, w) of an image (..., H, W) that is measured and scored."""
        return x

    def pad_image(self, x: torch.Tensor) -> torch.Tensor:
        """A cropped image (B, C, h, w) padded right/bottom to a size the operator
        measures; reconstructions are cropped back to (h, w)."""
        return x

    def default_patch(self) -> int:
        """Side of the square training patches (a size :meth:`check_patch` accepts)."""
        return 96

    def check_patch(self, size: int, what: str = "patch size") -> int:
        """``size`` if the operator measures ``size x size`` images, else a SpadeError
        that calls it ``what``."""
        require(isinstance(size, int) and size >= 1, f"{what} {size} must be a whole number >= 1")
        return size

    # --- operators of a training run --------------------------------------------------
    def step(self, seed: int | None = None) -> "LinearPhysics":
        """The operator of the next training step: this one (random operators draw a new
        one, ``seed`` restarting their generator)."""
        return self

    def references(self) -> list["LinearPhysics"]:
        """The fixed operators to validate on and to save with a model: this one."""
        return [self]

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

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LinearPhysics":  # pragma: no cover - abstract
        """An operator from recipe / command-line settings (keys checked by
        :func:`~spade.physics.config.build_physics`)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings().items())
