"""MoDL written the way its PyTorch releases write it (Aggarwal, Mani & Jacob, TMI 2019):
one DnCNN-style denoiser of conv + BatchNorm + ReLU blocks (``nn.Sequential`` built from
a list, a residual add) shared by every iteration, and a data-consistency step that
solves ``(A^H A + lam I) x = A^H b + lam z`` with ten conjugate-gradient steps on complex
tensors (coil maps, an undersampling mask, orthonormal 2-D FFTs, a ``while`` loop that
stops on the residual). Images travel as real/imaginary channels (``c2r`` / ``r2c``).
Re-typed small for the tests."""
from __future__ import annotations

import torch
import torch.nn as nn


def r2c(x, axis=1):
    """real/imag channels on ``axis`` -> complex tensor without that axis"""
    re, im = torch.unbind(x, dim=axis)
    return torch.complex(re, im)


def c2r(x, axis=1):
    """complex tensor -> real/imag channels on ``axis``"""
    return torch.stack([x.real, x.imag], dim=axis)


def conv_block(in_channels, out_channels):
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()]


class cnn_denoiser(nn.Module):
    def __init__(self, n_layers, nf=64):
        super().__init__()
        layers = []
        layers += conv_block(2, nf)
        for _ in range(n_layers - 2):
            layers += conv_block(nf, nf)
        layers += [nn.Conv2d(nf, 2, 3, padding=1), nn.BatchNorm2d(2)]
        self.nw = nn.Sequential(*layers)

    def forward(self, x):
        idt = x  # (2, nrow, ncol)
        dw = self.nw(x) + idt
        return dw


class myAtA(nn.Module):
    """A^H A + lam I for multi-coil Cartesian MRI"""

    def __init__(self, csm, mask, lam):
        super().__init__()
        self.csm = csm  # complex (B, ncoil, nrow, ncol)
        self.mask = mask  # (B, nrow, ncol)
        self.lam = lam

    def forward(self, im):  # complex (B, nrow, ncol)
        im_coil = self.csm * im.unsqueeze(1)
        k_full = torch.fft.fft2(im_coil, norm="ortho")
        k_u = k_full * self.mask.unsqueeze(1)
        im_u_coil = torch.fft.ifft2(k_u, norm="ortho")
        im_u = torch.sum(im_u_coil * self.csm.conj(), dim=1)
        return im_u + self.lam * im


def myCG(AtA, rhs):
    """conjugate gradients for AtA x = rhs, rhs as real/imag channels"""
    rhs = r2c(rhs, axis=1)
    x = torch.zeros_like(rhs)
    i, r, p = 0, rhs, rhs
    rTr = torch.sum(r.conj() * r).real
    while i < 10 and rTr > 1e-10:
        Ap = AtA(p)
        alpha = rTr / torch.sum(p.conj() * Ap).real
        x = x + alpha * p
        r = r - alpha * Ap
        rTrNew = torch.sum(r.conj() * r).real
        beta = rTrNew / rTr
        p = r + beta * p
        i += 1
        rTr = rTrNew
    return c2r(x, axis=1)


class data_consistency(nn.Module):
    def __init__(self):
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(0.05), requires_grad=True)

    def forward(self, z_k, x0, csm, mask):
        rhs = x0 + self.lam * z_k  # (B, 2, nrow, ncol)
        AtA = myAtA(csm, mask, self.lam)
        rec = myCG(AtA, rhs)
        return rec


class MoDL(nn.Module):
    def __init__(self, n_layers, k_iters, nf=64):
        super().__init__()
        self.k_iters = k_iters
        self.dw = cnn_denoiser(n_layers, nf)
        self.dc = data_consistency()

    def forward(self, x0, csm, mask):
        """x0: A^H b as real/imag channels (B, 2, nrow, ncol); csm: complex coil maps
        (B, ncoil, nrow, ncol); mask: (B, nrow, ncol)"""
        x_k = x0.clone()
        for k in range(self.k_iters):
            z_k = self.dw(x_k)  # denoiser
            x_k = self.dc(z_k, x0, csm, mask)  # data consistency
        return x_k


def physics(size: int = 32, coils: int = 4):
    """SPADE's multi-coil Cartesian MRI with MoDL's uncentred FFT."""
    from spade.physics import build_physics
    return build_physics({"kind": "mri", "shape": [size, size], "coils": coils, "centered": False,
                          "acceleration": 4, "center_fraction": 0.16})


def call(model, y, physics):
    """MoDL from SPADE's ``(y, physics)``: ``A^H y``, the coil maps and the mask."""
    csm = torch.view_as_complex(physics.coil_maps).unsqueeze(0).expand(y.shape[0], -1, -1, -1)
    mask = physics.mask.unsqueeze(0).expand(y.shape[0], -1, -1)
    return model(physics.A_adjoint(y), csm, mask)


def build(n_layers: int = 4, k_iters: int = 3, nf: int = 16):
    """``(model, example_inputs)``: MoDL on its own inputs ``(x0, csm, mask)``."""
    from spade.data import example_pair
    torch.manual_seed(0)
    op = physics()
    _, y = example_pair(op, batch=2)
    csm = torch.view_as_complex(op.coil_maps).unsqueeze(0).expand(2, -1, -1, -1)
    return MoDL(n_layers, k_iters, nf).eval(), (op.A_adjoint(y), csm, op.mask.unsqueeze(0).expand(2, -1, -1))
