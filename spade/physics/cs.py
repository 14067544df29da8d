"""Block compressive sensing: every ``b x b`` block (b = 33) is measured as ``y = Phi x``.

Conventions (those of ISTA-Net+ / COAST)
----------------------------------------
* image ``x``: (B, 1, H, W) with H and W multiples of the block size; blocks are taken
  in row-major order and each block is flattened row-major, so a block's measurement is
  ``y_blk = Phi @ x_blk.reshape(-1)``;
* measurements ``y``: (B, m, H/b, W/b): one m-vector per block, in place of the block;
* ``Phi``: (m, b*b); ``Qinit``: (b*b, m), the linear starting point ``x0_blk = Qinit y_blk``
  fitted by least squares on training blocks (:func:`least_squares_qinit`).

The whole operator is two strided convolutions (no loop over blocks). Images whose size
is not a multiple of ``b`` are padded first with :func:`pad_to_blocks`. A batch of
one-block images (N, 1, b, b), whose measurements are (N, m, 1, 1), is measured with
plain matrix products instead (:meth:`BlockCS.split_blocks` gives a network that batch
and the function that reassembles the image, so it can iterate on the blocks without
cutting and reassembling the image at every iteration).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SpadeError, require
from .arrays import read_array
from .base import LinearPhysics, batch_scalar

BLOCK = 33

#: measurement counts of the official ISTA-Net+ / COAST releases (ratio in % -> rows of Phi)
OFFICIAL_ROWS = {1: 10, 4: 43, 10: 109, 25: 272, 30: 327, 40: 436, 50: 545}


def check_ratio(ratio: float) -> float:
    require(isinstance(ratio, (int, float)) and 0 < ratio <= 1,
            f"sampling ratio {ratio} is outside (0, 1]: give e.g. 0.25 for 25%")
    return float(ratio)


def n_measurements(ratio: float, block_size: int = BLOCK) -> int:
    """Rows of Phi for a sampling ratio (the official counts for the released ratios)."""
    ratio = check_ratio(ratio)
    n = block_size * block_size
    percent = ratio * 100
    if block_size == BLOCK and abs(percent - round(percent)) < 1e-9 and round(percent) in OFFICIAL_ROWS:
        return OFFICIAL_ROWS[round(percent)]
    return max(1, int(round(ratio * n)))


def gaussian_phi(ratio: float, block_size: int = BLOCK, seed: int = 0) -> torch.Tensor:
    """Gaussian sampling matrix (m, b*b) with orthonormal rows."""
    m = n_measurements(ratio, block_size)
    gen = torch.Generator().manual_seed(int(seed))
    g = torch.randn(block_size * block_size, m, generator=gen, dtype=torch.float64)
    q, _ = torch.linalg.qr(g)  # (n, m), orthonormal columns
    return q.T.contiguous().float()


def least_squares_qinit(phi: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``Qinit`` (n, m) minimising ``sum ||x - Qinit Phi x||^2`` over training blocks.

    ``blocks``: (N, n) flattened training blocks, N >= m. Closed form
    ``Qinit = X Y^T (Y Y^T)^-1`` with ``Y = Phi X`` (ISTA-Net+'s initialisation).
    """
    phi = phi.double()
    x = blocks.double().T  # (n, N)
    require(x.shape[0] == phi.shape[1], f"training blocks have {x.shape[0]} pixels, Phi expects {phi.shape[1]}")
    require(x.shape[1] >= phi.shape[0],
            f"{x.shape[1]} training blocks are too few to fit Qinit for {phi.shape[0]} measurements")
    y = phi @ x
    # Qinit^T solves (Y Y^T) Qinit^T = Y X^T
    qt = torch.linalg.solve(y @ y.T, y @ x.T)
    return qt.T.contiguous().float()


def _load_matrix(path, key: str) -> torch.Tensor:
    array = np.asarray(read_array(path, key, key, suffixes=(".mat",)), dtype=np.float64)
    require(array.ndim == 2, f"'{key}' in {path} has shape {array.shape}: expected a matrix")
    return torch.from_numpy(array).float()


def load_phi(path, block_size: int = BLOCK) -> torch.Tensor:
    """Read an official sampling matrix (key ``phi``), shape (m, b*b)."""
    phi = _load_matrix(path, "phi")
    n = block_size * block_size
    require(phi.shape[1] == n and 1 <= phi.shape[0] <= n,
            f"Phi in {path} has shape {tuple(phi.shape)}: expected (m, {n}) with 1 <= m <= {n}")
    return phi


def load_qinit(path, phi: torch.Tensor) -> torch.Tensor:
    """Read an official initialisation matrix (key ``Qinit``), checked against ``phi``.

    ``Qinit`` must have shape (b*b, m) and, being a least-squares fit, satisfy
    ``Phi Qinit = I``: a matrix fitted for another Phi fails that test.
    """
    q = _load_matrix(path, "Qinit")
    m, n = phi.shape
    require(tuple(q.shape) == (n, m),
            f"Qinit in {path} has shape {tuple(q.shape)}: expected ({n}, {m}) to match Phi ({m} x {n})")
    err = torch.linalg.matrix_norm(phi.double() @ q.double() - torch.eye(m, dtype=torch.float64)) / m ** 0.5
    require(float(err) < 1e-3,
            f"Qinit in {path} does not belong to this Phi (|Phi Qinit - I| = {float(err):.3g}): "
            "use the Initialization_Matrix file of the same ratio")
    return q


def pad_to_blocks(x: torch.Tensor, block_size: int = BLOCK, rule: str = "ista") -> torch.Tensor:
    """Zero-pad (B, C, H, W) on the right and bottom to whole blocks.

    ``rule="ista"``: pad by ``b - (size mod b)`` (a full extra block when the size is
    already a multiple; the official ISTA-Net+ protocol); ``rule="minimal"``: to the next
    multiple only.
    """
    h, w = x.shape[-2:]
    if rule == "ista":
        ph, pw = block_size - h % block_size, block_size - w % block_size
    elif rule == "minimal":
        ph, pw = -h % block_size, -w % block_size
    else:
        raise SpadeError(f"unknown padding rule '{rule}': use 'ista' or 'minimal'")
    return F.pad(x, (0, pw, 0, ph))


def blocks_to_batch(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * H/b * W/b, C, b, b), blocks in row-major order."""
    b = block_size
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // b, b, W // b, b).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, C, b, b)


def batch_to_blocks(xb: torch.Tensor, shape) -> torch.Tensor:
    """Inverse of :func:`blocks_to_batch`; ``shape`` is the image shape (B, C, H, W)."""
    B, C, H, W = shape
    b = xb.shape[-1]
    x = xb.reshape(B, H // b, W // b, C, b, b).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, C, H, W)


class BlockCS(LinearPhysics):
    """Block compressive sensing with sampling matrix ``phi`` (see module docstring)."""

    kind = "cs"
    protocols = ("ista-cs",)
    config_keys = frozenset({"ratio", "seed", "phi", "qinit", "block_size"})

    def __init__(self, phi: torch.Tensor, qinit: torch.Tensor | None = None,
                 block_size: int = BLOCK, noise_level: float = 0.0):
        super().__init__(noise_level)
        phi = torch.as_tensor(phi, dtype=torch.float32)
        n = block_size * block_size
        require(phi.dim() == 2 and phi.shape[1] == n and 1 <= phi.shape[0] <= n,
                f"Phi has shape {tuple(phi.shape)}: expected (m, {n}) for {block_size}x{block_size} blocks")
        self.block_size = int(block_size)
        self.register_buffer("phi", phi.contiguous())
        if qinit is not None:
            qinit = torch.as_tensor(qinit, dtype=torch.float32)
            require(tuple(qinit.shape) == (n, phi.shape[0]),
                    f"Qinit has shape {tuple(qinit.shape)}: expected ({n}, {phi.shape[0]})")
            qinit = qinit.contiguous()
        self.register_buffer("qinit", qinit)
        self._eig = None

    @classmethod
    def from_config(cls, config):
        """Settings: ``ratio`` (Gaussian Phi with orthonormal rows, ``seed``) or ``phi`` +
        ``qinit`` (.mat files), ``block_size`` (33), ``noise_level`` (0)."""
        block = int(config.get("block_size", BLOCK))
        noise = float(config.get("noise_level", 0.0))
        if "phi" in config:
            require("qinit" in config, "physics 'cs' with 'phi' needs 'qinit' too")
            phi = load_phi(config["phi"], block)
            return cls(phi, load_qinit(config["qinit"], phi), block, noise_level=noise)
        require("ratio" in config, "physics 'cs' needs a 'ratio' in (0, 1] or 'phi' + 'qinit' files")
        return cls(gaussian_phi(config["ratio"], block, int(config.get("seed", 0))), None, block, noise_level=noise)

    @classmethod
    def gaussian(cls, ratio: float, block_size: int = BLOCK, seed: int = 0, **kwargs) -> "BlockCS":
        """Operator with a random orthonormal Gaussian Phi and ``Qinit = Phi^T``."""
        return cls(gaussian_phi(ratio, block_size, seed), None, block_size, **kwargs)

    @property
    def m(self) -> int:
        return self.phi.shape[0]

    @property
    def ratio(self) -> float:
        return self.m / self.phi.shape[1]

    def _weight(self, matrix_rows: torch.Tensor) -> torch.Tensor:
        b = self.block_size
        return matrix_rows.reshape(-1, 1, b, b)

    def _one_block(self, t: torch.Tensor, side: int) -> bool:
        """Whether ``t`` (N, C, side, side) is a batch of one-block images / measurements."""
        return t.dim() == 4 and t.shape[-2] == side and t.shape[-1] == side

    def A(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block_size
        require(x.dim() == 4 and x.shape[1] == 1 and x.shape[-2] % b == 0 and x.shape[-1] % b == 0,
                f"image has shape {tuple(x.shape)}: expected (B, 1, H, W) with H and W multiples of "
                f"the block size {b} (pad it with spade.physics.pad_to_blocks)")
        if self._one_block(x, b):
            return F.linear(x.reshape(x.shape[0], -1), self.phi).reshape(x.shape[0], self.m, 1, 1)
        return F.conv2d(x, self._weight(self.phi), stride=b)

    def _check_measurements(self, y: torch.Tensor) -> None:
        require(y.dim() == 4 and y.shape[1] == self.m,
                f"measurements have shape {tuple(y.shape)}: expected (B, {self.m}, H/b, W/b)")

    def _blocks_from(self, y: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """``matrix @ y_blk`` for every block, (B, m, h, w) -> (B, 1, h b, w b); ``matrix`` (b*b, m)."""
        b = self.block_size
        if self._one_block(y, 1):
            return F.linear(y.reshape(y.shape[0], -1), matrix).reshape(y.shape[0], 1, b, b)
        return F.conv_transpose2d(y, self._weight(matrix.T), stride=b)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_measurements(y)
        return self._blocks_from(y, self.phi.T)

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        """``Qinit y`` per block (``Phi^T y`` when no Qinit is set)."""
        if self.qinit is None:
            return self.A_adjoint(y)
        self._check_measurements(y)
        return self._blocks_from(y, self.qinit)

    def split_blocks(self, y: torch.Tensor, block_size: int) -> tuple[torch.Tensor, Callable] | None:
        """Every block is measured on its own by Phi: ``y`` (B, m, h, w) -> (B h w, m, 1, 1)
        one-block measurements in row-major block order (that of :func:`blocks_to_batch`),
        and ``join`` = :func:`batch_to_blocks` to (B, C, h b, w b). None for another block size."""
        if block_size != self.block_size:
            return None
        self._check_measurements(y)
        B, m, h, w = y.shape
        b = self.block_size

        def join(xb: torch.Tensor) -> torch.Tensor:
            return batch_to_blocks(xb, (B, xb.shape[1], h * b, w * b))

        return y.permute(0, 2, 3, 1).reshape(B * h * w, m, 1, 1), join

    def prox_l2(self, z, y, gamma, max_iter: int = 0, tol: float = 0.0):
        """Closed form per block: ``(I + gamma Phi^T Phi)^-1 (z + gamma Phi^T y)`` from a
        cached eigendecomposition of ``Phi^T Phi``; ``max_iter``/``tol`` are unused."""
        if self._eig is None or self._eig[0].device != z.device:
            s, v = torch.linalg.eigh((self.phi.double().T @ self.phi.double()))
            self._eig = (s.clamp_min(0).to(z.device), v.to(z.device))
        s, v = self._eig
        gamma = batch_scalar(gamma, z).double()
        rhs = z + gamma.to(z.dtype) * self.A_adjoint(y)
        b = self.block_size
        cols = F.pixel_unshuffle(rhs, b).double()  # (B, b*b, H/b, W/b), row-major blocks
        coef = torch.einsum("nk,bnhw->bkhw", v, cols) / (1.0 + gamma * s.view(1, -1, 1, 1))
        out = torch.einsum("nk,bkhw->bnhw", v, coef)
        return F.pixel_shuffle(out.to(z.dtype), b)

    def image_shape(self, side=None, channels: int = 1):
        """(1, side, side), ``side`` (264 by default) a multiple of the block size."""
        return super().image_shape(side or 264, 1)

    def pad_image(self, x):
        """Zero-padded by ``b - size mod b`` (the ISTA-Net+ protocol, :func:`pad_to_blocks`)."""
        return pad_to_blocks(x, self.block_size, "ista")

    def default_patch(self):
        """Three blocks."""
        return 3 * self.block_size

    def check_patch(self, size, what="patch size"):
        b = self.block_size
        require(size % b == 0, f"{what} {size} is not a multiple of the CS block size {b}")
        return size

    def settings(self) -> dict[str, Any]:
        return {"block_size": self.block_size, "measurements": self.m, "ratio": round(self.ratio, 6),
                "noise_level": self.noise_level, "qinit": self.qinit is not None}

    @classmethod
    def from_settings(cls, settings, tensors):
        return cls(tensors["phi"], tensors.get("qinit"), block_size=settings["block_size"],
                   noise_level=settings.get("noise_level", 0.0))


class RandomBlockCS:
    """Block CS whose sampling ratio (one of ``ratios``) and Gaussian Phi are drawn anew
    by every :meth:`step` (the COAST training protocol).

    Each draw is a seed ``s``, taken from the generator (started with ``seed``) or given
    as ``step(seed=s)``, which also restarts the generator from ``s``. The operator is a
    function of ``s`` alone: the ratio from a generator seeded with ``s``, Phi from
    ``s + 1_000_003``; a training loop that passes a seed made of (run seed, step index)
    gives resumed and distributed runs the same operators. :meth:`references` gives one fixed operator per ratio (Phi seeded by
    ``seed``), for validation and for the saved model (the first one).
    """

    def __init__(self, ratios, block_size: int = BLOCK, noise_level: float = 0.0, seed: int = 0):
        require(len(ratios) > 0, "physics 'cs' ratio list is empty: give e.g. [0.1, 0.25, 0.5]")
        self.ratios = [check_ratio(r) for r in ratios]
        self.block_size, self.noise_level, self.seed = int(block_size), float(noise_level), int(seed)
        self._references = [BlockCS.gaussian(r, self.block_size, self.seed, noise_level=self.noise_level)
                            for r in self.ratios]
        self.generator = torch.Generator().manual_seed(self.seed)

    def step(self, seed: int | None = None) -> BlockCS:
        """The next operator (see the class docstring)."""
        if seed is not None:
            self.generator.manual_seed(int(seed))
        s = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator)) if seed is None else int(seed)
        ratio = self.ratios[int(torch.randint(0, len(self.ratios), (1,), generator=torch.Generator().manual_seed(s)))]
        return BlockCS.gaussian(ratio, self.block_size, (s + 1_000_003) % 2 ** 63, noise_level=self.noise_level)

    def references(self) -> list[BlockCS]:
        return list(self._references)
