"""Plain CNN priors built from ``nn.Conv2d`` (and parameter-free ops), so that a
dependency-graph pruner can see and shrink every hidden channel.

Conventions shared by every prior here:

* input and output images are (B, C, H, W); hidden widths are read from the layers, never
  assumed in ``forward``, so a pruned prior runs unchanged;
* ``scales`` is ``None`` or a list of (1, width) tensors from
  :class:`spade.models.sharing.Modulation` (the recursive sharing mode). ``n_scales``
  says how many the prior consumes and where each one multiplies the features:

  ===========  ======================================================================
  prior        where ``scales`` apply
  ===========  ======================================================================
  DnCNN        one head: the last hidden features, entering the output convolution
  ResNetPrior  one head per residual block: the block's inner features (after its
               first convolution and ReLU)
  UNet         one head: the last decoder features, entering the 1x1 output convolution
  ===========  ======================================================================

* residual priors (``x + net(x)``) start with a zero output convolution: an untrained
  prior is the identity (or adds nothing), so an unrolled network starts as its
  classical iteration and training moves it away from there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import require


def require_channels(x: torch.Tensor, channels: int, family: str) -> None:
    """Clear error when the physics' images do not have the channels a model was built for."""
    require(x.shape[1] == channels,
            f"{family} was built for {channels}-channel images but the physics gives {x.shape[1]} "
            f"(image shape {tuple(x.shape)}): set image_channels={x.shape[1]}")


def _scale(h: torch.Tensor, scales, index: int) -> torch.Tensor:
    return h if scales is None else h * scales[index].reshape(1, -1, 1, 1)


def constant_maps(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, k) or (1, k) values -> (B, k, H, W) constant maps the size of ``like`` (B, C, H, W)."""
    return values.to(like)[:, :, None, None].expand(like.shape[0], -1, *like.shape[-2:])


class DnCNN(nn.Module):
    """DnCNN without batch norm: conv-ReLU, ``depth - 2`` x (conv-ReLU), conv.

    ``residual=True`` returns ``x + net(x)`` (in = out channels); ``scales[0]`` scales the
    last hidden features.
    """

    n_scales = 1

    def __init__(self, channels: int = 2, width: int = 32, depth: int = 5, residual: bool = True):
        super().__init__()
        require(depth >= 2, f"DnCNN depth {depth} must be >= 2")
        self.residual = residual
        self.head = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth - 2))
        self.tail = nn.Conv2d(width, channels, 3, padding=1)
        if residual:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, scales=None) -> torch.Tensor:
        h = F.relu(self.head(x))
        for conv in self.body:
            h = F.relu(conv(h))
        out = self.tail(_scale(h, scales, 0))
        return x + out if self.residual else out


class ResBlock(nn.Module):
    """EDSR residual block: ``h + res_scale * conv(ReLU(conv(h)))``; ``scale`` multiplies
    the inner features."""

    def __init__(self, width: int, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = float(res_scale)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        inner = F.relu(self.conv1(h))
        if scale is not None:
            inner = inner * scale.reshape(1, -1, 1, 1)
        return h + self.res_scale * self.conv2(inner)


class ResNetPrior(nn.Module):
    """Residual ResNet/EDSR prior: head conv, ``blocks`` :class:`ResBlock` s, tail conv,
    plus the input: ``x + tail(blocks(head(x) + embed(extra)))``.

    Args:
        channels: image channels C (in and out).
        width: hidden channels; blocks: number of residual blocks; res_scale: EDSR's
            residual scaling (0.1 in EDSR's large models).
        extra_inputs: number of constant input values (e.g. a noise level), given to
            ``forward`` as ``extra`` (B or 1, extra_inputs); as constant maps they enter
            through a bias-free 1x1 convolution ``embed`` added to the head's output (a
            constant input channel of the head, up to the zero padding at the border).
        shuffle: 1, or a factor s > 1 for a sub-pixel prior: the image is rearranged
            into C s^2 channels at 1/s resolution (``pixel_unshuffle``), processed there,
            and the tail's C s^2 outputs return to full resolution through a
            ``PixelShuffle`` layer. Images whose size is not a multiple of s are padded
            (reflection) and cropped back.
    """

    def __init__(self, channels: int = 1, width: int = 32, blocks: int = 2, res_scale: float = 1.0,
                 extra_inputs: int = 0, shuffle: int = 1):
        super().__init__()
        require(blocks >= 1, f"ResNet prior needs blocks >= 1 (got {blocks})")
        require(shuffle >= 1, f"pixel-shuffle factor {shuffle} must be >= 1")
        self.shuffle = int(shuffle)
        self.extra_inputs = int(extra_inputs)
        s2 = self.shuffle ** 2
        self.head = nn.Conv2d(channels * s2, width, 3, padding=1)
        self.embed = nn.Conv2d(self.extra_inputs, width, 1, bias=False) if self.extra_inputs else None
        self.blocks = nn.ModuleList(ResBlock(width, res_scale) for _ in range(blocks))
        self.tail = nn.Conv2d(width, channels * s2, 3, padding=1)
        self.upsample = nn.PixelShuffle(self.shuffle) if self.shuffle > 1 else nn.Identity()
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def n_scales(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, scales=None, extra: torch.Tensor | None = None) -> torch.Tensor:
        s = self.shuffle
        h_in, w_in = x.shape[-2:]
        z = x
        if s > 1:
            pad_h, pad_w = -h_in % s, -w_in % s
            if pad_h or pad_w:
                z = F.pad(z, (0, pad_w, 0, pad_h), mode="reflect")
            z = F.pixel_unshuffle(z, s)
        h = self.head(z)
        if self.embed is not None:
            require(extra is not None, f"this prior needs {self.extra_inputs} extra input value(s)")
            h = h + self.embed(constant_maps(extra, z))
        for i, block in enumerate(self.blocks):
            h = block(h, None if scales is None else scales[i])
        out = self.upsample(self.tail(h))[..., :h_in, :w_in]
        return x + out


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by a leaky ReLU (the U-Net's unit)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.2))


class UNet(nn.Module):
    """Small U-Net with input normalisation (E2E-VarNet's normalised U-Net).

    Each sample's channels are normalised to zero mean and unit standard deviation, the
    image is zero-padded to a multiple of ``2**levels``, and the U-Net runs: ``levels``
    encoder blocks of widths ``width * 2**l`` with 2x2 average pooling between them, a
    bottleneck of width ``width * 2**levels``, and decoder levels that upsample
    (bilinear), convolve, concatenate the skip connection and apply a :class:`ConvBlock`;
    a 1x1 convolution maps to ``channels``. The output is multiplied back by the input's
    standard deviation. With ``residual=False`` (default) the prior returns that update
    term, ``std * net((x - mean) / std)``; with ``residual=True`` it returns ``x`` plus it.
    The mean is not added back: the prior produces an update, and a zero output
    convolution (the initialisation) makes the update zero. Complex images are two
    channels (real, imaginary), each normalised on its own.
    """

    n_scales = 1

    def __init__(self, channels: int = 2, width: int = 8, levels: int = 3, residual: bool = False):
        super().__init__()
        require(levels >= 1, f"U-Net needs levels >= 1 (got {levels})")
        self.residual = residual
        widths = [width * 2 ** level for level in range(levels + 1)]
        self.encoders = nn.ModuleList([ConvBlock(channels, widths[0])]
                                      + [ConvBlock(widths[i - 1], widths[i]) for i in range(1, levels)])
        self.bottleneck = ConvBlock(widths[levels - 1], widths[levels])
        self.up_convs = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i], 3, padding=1) for i in reversed(range(levels)))
        self.decoders = nn.ModuleList(ConvBlock(2 * widths[i], widths[i]) for i in reversed(range(levels)))
        self.out = nn.Conv2d(widths[0], channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, scales=None) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True) + 1e-6
        h_in, w_in = x.shape[-2:]
        multiple = 2 ** len(self.encoders)
        h = F.pad((x - mean) / std, (0, -w_in % multiple, 0, -h_in % multiple))
        skips = []
        for i, enc in enumerate(self.encoders):
            h = enc(h if i == 0 else F.avg_pool2d(h, 2))
            skips.append(h)
        h = self.bottleneck(F.avg_pool2d(h, 2))
        for up, dec in zip(self.up_convs, self.decoders):
            skip = skips.pop()
            h = up(F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False))
            h = dec(torch.cat([h, skip], dim=1))
        update = self.out(_scale(h, scales, 0))[..., :h_in, :w_in] * std
        return x + update if self.residual else update


PRIORS = ("dncnn", "resnet")


def residual_prior(kind: str, channels: int, width: int, depth: int, blocks: int, res_scale: float = 1.0) -> nn.Module:
    """A residual image prior by name: ``"dncnn"`` (``depth`` layers) or ``"resnet"``
    (``blocks`` residual blocks)."""
    require(kind in PRIORS, f"unknown prior '{kind}': choose one of {list(PRIORS)}")
    if kind == "dncnn":
        return DnCNN(channels, width, depth, residual=True)
    return ResNetPrior(channels, width, blocks, res_scale)
