"""The ways plain torch-pruning breaks unrolled networks, each handled by spade.prune.

Where it is cheap, a test first shows the trap with torch-pruning alone (so the test
proves something), then checks SPADE's result.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.utils.checkpoint import checkpoint as ckpt

import spade
from spade.errors import SpadeError


def conv(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1)


class ResidualMRI(nn.Module):
    """A residual prior on a complex (2-channel) image, then k-space data consistency."""

    def __init__(self, width=16):
        super().__init__()
        self.prior = nn.Sequential(conv(2, width), nn.ReLU(), conv(width, width), nn.ReLU(), conv(width, 2))

    def forward(self, x_in, mask):
        x = x_in + self.prior(x_in)
        k = torch.fft.fft2(torch.complex(x[:, 0], x[:, 1]), norm="ortho")
        k0 = torch.fft.fft2(torch.complex(x_in[:, 0], x_in[:, 1]), norm="ortho")
        z = torch.fft.ifft2(torch.where(mask, k0, k), norm="ortho")
        return torch.stack([z.real, z.imag], dim=1)


def mri_example():
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:, ::3] = True
    return torch.randn(2, 2, 16, 16), mask


def test_trap1_output_conv_of_a_residual_prior_keeps_image_channels():
    model = ResidualMRI()
    x, mask = mri_example()
    plain = ResidualMRI()
    tp.pruner.MagnitudePruner(plain, (x, mask), importance=tp.importance.MagnitudeImportance(p=1),
                              pruning_ratio=0.5).step()
    assert plain.prior[4].out_channels == 1  # torch-pruning cut an image channel:
    assert plain.prior(x).shape[1] == 1  # the model still runs, silently adding one correction to both

    small, record = spade.prune(model, (x, mask), ratio=0.5)
    assert small.prior[4].out_channels == 2 and small.prior[0].in_channels == 2
    assert small.prior[0].out_channels == 8 and small.prior[2].out_channels == 8
    assert small(x, mask).shape == model(x, mask).shape
    assert any("prior.4" in group for group in record.interfaces)


class StepNet(nn.Module):
    """Unrolled iterations with a per-iteration step vector (K,), a DC weight per image
    channel (1, 2, 1, 1), and a soft threshold per feature channel (1, C, 1, 1) shared
    by all iterations; the step also scales each prior's output."""

    def __init__(self, iterations=3, width=16):
        super().__init__()
        self.steps = nn.Parameter(torch.full((iterations,), 0.5))
        self.dc = nn.Parameter(torch.ones(1, 2, 1, 1))
        self.thr = nn.Parameter(torch.full((1, width, 1, 1), 0.01))
        self.enc = nn.ModuleList(conv(2, width) for _ in range(iterations))
        self.dec = nn.ModuleList(conv(width, 2) for _ in range(iterations))

    def forward(self, y):
        x = y
        for k in range(len(self.enc)):
            f = self.enc[k](x)
            f = torch.sign(f) * F.relu(f.abs() - self.thr) * self.steps[k]
            x = x - self.dc * (x - y) + self.dec[k](f)
        return x


@pytest.mark.parametrize("iterations", [3, 16])
def test_trap2_step_and_dc_parameters_survive_per_channel_thresholds_follow_their_channels(iterations):
    y = torch.randn(2, 2, 12, 12)
    plain = StepNet(iterations)
    with pytest.warns(UserWarning, match="Unwrapped parameters"):
        tp.pruner.MagnitudePruner(plain, y, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=0.5).step()
    assert plain.dc.shape == (1, 1, 1, 1)  # torch-pruning cut the DC weight with an image channel
    if iterations == 16:
        assert plain.steps.shape == (8,)  # ... and the per-iteration steps with the feature channels
    else:
        assert plain.thr.shape == (1, 16, 1, 1)  # ... or silently skipped the features it could not map

    small, _ = spade.prune(StepNet(iterations), y, ratio=0.5)
    assert small.steps.shape == (iterations,) and small.dc.shape == (1, 2, 1, 1)
    assert small.thr.shape == (1, 8, 1, 1)
    assert all(e.out_channels == 8 for e in small.enc) and all(d.in_channels == 8 for d in small.dec)
    assert all(d.out_channels == 2 for d in small.dec)
    assert small(y).shape == y.shape


def test_trap2_kept_channels_keep_their_own_threshold():
    model = StepNet().eval()
    with torch.no_grad():
        model.thr.copy_(torch.arange(16.0).view(1, 16, 1, 1))
        for e in model.enc:  # channel c of every encoder has weight magnitude c: l1 keeps 8..15
            e.weight.copy_(torch.arange(16.0).view(16, 1, 1, 1).expand_as(e.weight) * 0.01)
    small, _ = spade.prune(model, torch.randn(1, 2, 8, 8), ratio=0.5)
    assert small.thr.flatten().tolist() == list(range(8, 16))


def test_trap3_caller_mode_restored_and_model_untouched():
    model = StepNet().train()
    model.enc[1].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    small, _ = spade.prune(model, torch.randn(1, 2, 8, 8), ratio=0.5)
    assert model.training and not model.enc[1].training and model.enc[0].training
    assert small.training and not small.enc[1].training
    assert [id(p) for p in model.parameters()] == params
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.enc[0].out_channels == 16


class Checkpointed(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(conv(1, 16), nn.ReLU(), conv(16, 16), nn.ReLU(), conv(16, 1))

    def forward(self, x):
        return x + ckpt(self.block, x, use_reentrant=True)


def test_trap4_reentrant_checkpoint_is_unrolled_for_tracing():
    model = Checkpointed()
    x = torch.randn(1, 1, 12, 12)
    with pytest.warns(UserWarning):  # the checkpointed layers receive no gradient: hidden from autograd
        out = model(x)
    assert out.grad_fn is None or "CheckpointFunction" in out.grad_fn.next_functions[1][0].name()

    small, record = spade.prune(model, x, ratio=0.5)
    assert small.block[0].out_channels == 8 and small.block[2].out_channels == 8
    assert small.block[4].out_channels == 1
    assert "apply" not in vars(torch.utils.checkpoint.CheckpointFunction)  # torch's own apply is back
    with pytest.warns(UserWarning):
        assert small(x).shape == x.shape


class Recording(nn.Module):
    """A residual CNN that notes the number of axes of every input it gets."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(conv(3, 16), nn.ReLU(), conv(16, 16), nn.ReLU(), conv(16, 3))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.dim())
        return x + self.body(x)


def test_trap5_a_bare_tensor_example_keeps_its_batch_axis():
    x = torch.randn(1, 3, 16, 16)
    plain = Recording()
    tp.DependencyGraph().build_dependency(plain, example_inputs=x)
    assert plain.seen == [3]  # torch-pruning traced x[0], without the batch axis

    small, _ = spade.prune(Recording(), x, ratio=0.5)
    assert set(small.seen) == {4}
    assert small.body[0].out_channels == 8 and small.body[4].out_channels == 3
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 3, 16, 16)


class Halves(nn.Module):
    """Channel halves through different activations, joined again: torch-pruning cannot
    size the concatenation of slices, so it would remove mismatched channels."""

    def __init__(self):
        super().__init__()
        self.head, self.mid, self.tail = conv(3, 16), conv(16, 16), conv(16, 3)

    def forward(self, x):
        h = self.head(x)
        h = self.mid(torch.cat([F.relu(h[:, :8]), torch.sigmoid(h[:, 8:])], dim=1))
        return self.tail(F.relu(h))


def test_channel_slices_joined_again_keep_their_width():
    x = torch.randn(1, 3, 16, 16)
    small, record = spade.prune(Halves(), x, ratio=0.5)
    assert small.head.out_channels == 16 and small.mid.out_channels == 8
    assert "head" in record.interfaces and "Cat" in record.interfaces["head"]
    assert small(x).shape == x.shape


class Failing(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = conv(1, 4)

    def forward(self, x):
        raise ValueError("expected k-space of shape (B, N, H, W, 2)")


def test_trap6_the_model_error_surfaces_with_its_own_message():
    with pytest.raises(SpadeError, match=r"failed on the example input: ValueError: expected k-space of shape"):
        spade.prune(Failing(), torch.randn(1, 1, 8, 8), ratio=0.5)


def test_protecting_a_per_channel_parameter_keeps_its_channels():
    with pytest.raises(SpadeError, match=r"nothing to prune in StepNet.*enc.0\+enc.1\+enc.2: parameter thr is protected"):
        spade.prune(StepNet(), torch.randn(1, 2, 8, 8), ratio=0.5, protect=["thr"])


class IteratedWeights(nn.Module):
    """Per-iteration DC weights held in one parameter and iterated over (``for w in ...``),
    which torch traces as an unbind of a bare parameter; SPADE detaches such parameters
    (no channel axis) and must leave the unbind a plain node."""

    def __init__(self, iterations=3, width=16):
        super().__init__()
        self.priors = nn.ModuleList(
            nn.Sequential(conv(2, width), nn.ReLU(), conv(width, 2)) for _ in range(iterations))
        self.dc = nn.Parameter(torch.full((iterations,), 0.5))

    def forward(self, x_in, mask):
        x = x_in
        for prior, w in zip(self.priors, self.dc):
            x = x + prior(x)
            x = torch.where(mask, x_in, x) * w + x * (1 - w)
        return x


def test_a_parameter_iterated_over_does_not_break_the_graph():
    torch.manual_seed(0)
    net = IteratedWeights().eval()
    x, mask = torch.randn(1, 2, 16, 16), torch.rand(16, 16) < 0.3
    small, record = spade.prune(net, (x, mask), ratio=0.5)
    assert [p[0].out_channels for p in small.priors] == [8, 8, 8]
    assert [p[2].out_channels for p in small.priors] == [2, 2, 2] and small.dc.shape == (3,)
    assert small(x, mask).shape == net(x, mask).shape
