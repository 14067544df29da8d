"""Interface rules: which operations after a layer make its channels physics-bound."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spade.prune import Graph

OPS = {  # name: (op applied to the 16 middle channels -> 16 channels, is an interface)
    "relu": (lambda m, h: F.relu(h), False),
    "add python number": (lambda m, h: h + 1.0, False),
    "times own mask": (lambda m, h: h * (h > 0), False),
    "where own mask": (lambda m, h: torch.where(h > 0, h, 0.1 * h), False),
    "spatial mean": (lambda m, h: h * h.mean(dim=(2, 3), keepdim=True), False),
    "upsample and pool": (lambda m, h: F.avg_pool2d(F.interpolate(h, scale_factor=2.0), 2), False),
    "channel mean (a boundary)": (lambda m, h: h + 0 * h.mean(dim=1, keepdim=True), False),
    "per-channel buffer": (lambda m, h: h + m.offset, True),
    "input image": (lambda m, h: h + m.image.repeat(1, 8, 1, 1), True),
    "full-size constant": (lambda m, h: h * m.big, True),
    "pixel shuffle": (lambda m, h: F.pixel_unshuffle(F.pixel_shuffle(h, 2), 2), True),
    "fft": (lambda m, h: torch.fft.ifft2(torch.fft.fft2(h)).real, True),
    "complex view": (lambda m, h: torch.view_as_real(torch.view_as_complex(
        h.reshape(1, 8, 2, 8, 8).permute(0, 1, 3, 4, 2).contiguous())).permute(0, 1, 4, 2, 3).reshape(1, 16, 8, 8), True),
    "fixed-weight conv": (lambda m, h: F.conv2d(h, m.operator, padding=1), True),
    "channel flip": (lambda m, h: h.flip(1), True),
    "channels last": (lambda m, h: h.permute(0, 2, 3, 1).permute(0, 3, 1, 2), True),
}


class Probe(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op = op
        self.head = nn.Conv2d(2, 16, 3, padding=1)
        self.mid = nn.Conv2d(16, 16, 3, padding=1)
        self.tail = nn.Conv2d(16, 2, 3, padding=1)
        self.register_buffer("offset", torch.randn(1, 16, 1, 1))
        self.register_buffer("operator", torch.randn(16, 16, 3, 3))
        self.register_buffer("big", torch.randn(1, 16, 8, 8))
        self.image = None

    def forward(self, x):
        self.image = x
        return x + self.tail(F.relu(self.op(self, self.mid(F.relu(self.head(x))))))


@pytest.mark.parametrize("name", list(OPS))
def test_interface_rules(name):
    op, interface = OPS[name]
    graph = Graph(Probe(op), torch.randn(1, 2, 8, 8))
    groups = {g.key: g for g in graph.groups}
    assert groups[("tail",)].interface  # the image channels
    assert groups[("head",)].interface is None
    assert bool(groups[("mid",)].interface) == interface, groups[("mid",)].interface
