"""A third-party unrolled network, written the way a user would, without SPADE in mind.

A small end-to-end variational network for multi-coil MRI: a sensitivity network
estimates coil maps from the centre of k-space, then cascades of U-Net priors on the
coil-combined image alternate with a soft data-consistency step in k-space. It takes
several positional inputs (k-space and mask), uses complex FFTs and masks, residual
U-Net priors with skip concatenations, and a learned DC weight per cascade.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fft2c(x):  # (..., H, W, 2) real/imag -> same, centred orthonormal FFT
    z = torch.view_as_complex(x.contiguous())
    z = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(z, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    return torch.view_as_real(z)


def ifft2c(x):
    z = torch.view_as_complex(x.contiguous())
    z = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(z, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    return torch.view_as_real(z)


def complex_mul(a, b):
    re = a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1]
    im = a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0]
    return torch.stack((re, im), dim=-1)


def complex_conj(a):
    return torch.stack((a[..., 0], -a[..., 1]), dim=-1)


class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2))

    def forward(self, x):
        return self.layers(x)


class UNet(nn.Module):
    """Two-level U-Net with skip concatenations and transposed-convolution up-sampling."""

    def __init__(self, cin, cout, chans=8):
        super().__init__()
        self.down1 = ConvBlock(cin, chans)
        self.down2 = ConvBlock(chans, 2 * chans)
        self.bottom = ConvBlock(2 * chans, 4 * chans)
        self.up2 = nn.ConvTranspose2d(4 * chans, 2 * chans, 2, stride=2)
        self.dec2 = ConvBlock(4 * chans, 2 * chans)
        self.up1 = nn.ConvTranspose2d(2 * chans, chans, 2, stride=2)
        self.dec1 = ConvBlock(2 * chans, chans)
        self.out = nn.Conv2d(chans, cout, 1)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(F.avg_pool2d(d1, 2))
        b = self.bottom(F.avg_pool2d(d2, 2))
        u2 = self.dec2(torch.cat([self.up2(b), d2], dim=1))
        u1 = self.dec1(torch.cat([self.up1(u2), d1], dim=1))
        return self.out(u1)


class SensitivityNet(nn.Module):
    """Coil maps from the centre of k-space: U-Net on each coil image, then normalised."""

    def __init__(self, chans=4, acs=8):
        super().__init__()
        self.acs = acs
        self.unet = UNet(2, 2, chans)

    def forward(self, kspace):
        b, c, h, w, _ = kspace.shape
        centre = torch.zeros_like(kspace)
        lo, hi = w // 2 - self.acs // 2, w // 2 + self.acs // 2
        centre[:, :, :, lo:hi] = kspace[:, :, :, lo:hi]
        images = ifft2c(centre).reshape(b * c, h, w, 2).permute(0, 3, 1, 2)
        maps = self.unet(images).permute(0, 2, 3, 1).reshape(b, c, h, w, 2)
        rss = torch.sqrt((maps ** 2).sum(dim=(1, 4), keepdim=True) + 1e-12)
        return maps / rss


class Cascade(nn.Module):
    """One unrolled iteration: soft data consistency plus a residual U-Net prior."""

    def __init__(self, chans=8):
        super().__init__()
        self.prior = UNet(2, 2, chans)
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(self, k, k0, mask, maps):
        image = complex_mul(ifft2c(k), complex_conj(maps)).sum(dim=1)  # (B, H, W, 2)
        x = image.permute(0, 3, 1, 2)
        refined = (x + self.prior(x)).permute(0, 2, 3, 1)  # residual prior
        model_term = fft2c(complex_mul(refined.unsqueeze(1), maps))
        dc = torch.where(mask, k - k0, torch.zeros_like(k)) * self.dc_weight
        return k - dc - (model_term - k)


class VarNetLite(nn.Module):
    """``model(masked_kspace, mask) -> magnitude image (B, H, W)``; k-space (B, C, H, W, 2),
    mask (1, 1, 1, W, 1) bool."""

    def __init__(self, cascades=3, chans=8, sens_chans=4):
        super().__init__()
        self.sens_net = SensitivityNet(sens_chans)
        self.cascades = nn.ModuleList([Cascade(chans) for _ in range(cascades)])

    def forward(self, masked_kspace, mask):
        maps = self.sens_net(masked_kspace)
        k = masked_kspace.clone()
        for cascade in self.cascades:
            k = cascade(k, masked_kspace, mask, maps)
        return torch.sqrt((ifft2c(k) ** 2).sum(dim=(1, 4)))


def example_inputs(batch=1, coils=4, size=32, seed=0):
    """``(masked_kspace, mask)`` of a smooth random image, 4x equispaced undersampling."""
    gen = torch.Generator().manual_seed(seed)
    image = F.avg_pool2d(torch.rand(batch, 1, size, size, 2, generator=gen).permute(0, 1, 4, 2, 3).reshape(
        batch, 2, size, size), 5, stride=1, padding=2).reshape(batch, 1, 2, size, size).permute(0, 1, 3, 4, 2)
    coil = torch.randn(1, coils, size, size, 2, generator=gen) * 0.1 + 1
    kspace = fft2c(complex_mul(image, coil))
    mask = torch.zeros(1, 1, 1, size, 1, dtype=torch.bool)
    mask[..., ::4, :] = True
    mask[..., size // 2 - 4:size // 2 + 4, :] = True
    return kspace * mask, mask
