"""End-to-end variational network (Sriram et al., MICCAI 2020) in the image domain.

Cascade k updates the complex image x (B, 2, H, W) (real/imaginary channels) as

    x <- x - eta_k A^H (A x - y) + U_k(x)

with ``eta_k`` a learned data-consistency weight (initialised to 1) and ``U_k`` a
normalised :class:`~spade.models.priors.UNet` (2 channels in and out) that returns an
update term. This is E2E-VarNet's k-space cascade ``k <- k - eta M (k - y) - G(k)``
written for the coil-combined image: both coincide while the k-space stays in the range
of the coil expansion, and the image form uses the physics' own ``A`` / ``A^H``
unchanged. The start is the zero-filled image ``A_dagger(y)``.

Coil sensitivities: by default those of the physics (simulated or given maps;
single-coil needs none). With ``sens_maps=True`` a :class:`SensitivityNet` estimates
them from the fully sampled k-space centre of ``y`` (as in E2E-VarNet) and the cascades
use the physics' operator with the estimated maps (``physics.with_coil_maps``). That
sub-network carries ``spade_protect = True``: the pruner leaves it alone by default.

Sharing modes: ``untied`` (E2E-VarNet: one U-Net per cascade), ``tied``, ``recursive``
(S stages x R recursions; one modulation head scales the U-Net's last decoder features).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import require
from ..physics.mri import MRI, ifft2
from .base import ReconstructionNet
from .du import unroll
from .priors import UNet, require_channels
from .registry import register
from .sharing import Sharing, sharing_presets


def _center_run(line: list[float], center: int) -> list[int]:
    """Indices of the contiguous run of ones around ``center`` in a cyclic 0/1 sequence."""
    n = len(line)
    if not line[center]:
        return []
    run = {center}
    for step in (1, -1):
        i = center
        for _ in range(n - 1):
            i = (i + step) % n
            if not line[i] or i in run:
                break
            run.add(i)
    return sorted(run)


def calibration_mask(mask: torch.Tensor, centered: bool) -> torch.Tensor:
    """The fully sampled k-space centre of a 0/1 mask (H, W): the sampled points of the
    rectangle spanned by the contiguous sampled rows of the centre column and columns of
    the centre row (the auto-calibration lines of a fastMRI column mask)."""
    height, width = mask.shape
    cy, cx = (height // 2, width // 2) if centered else (0, 0)
    rows = _center_run(mask[:, cx].tolist(), cy)
    cols = _center_run(mask[cy, :].tolist(), cx)
    require(rows and cols, "the k-space mask does not sample its centre: sensitivity maps cannot be "
                           "estimated (use the physics' coil maps, sens_maps=False)")
    box = torch.zeros_like(mask)
    box[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = 1
    return box * mask


class SensitivityNet(nn.Module):
    """Coil sensitivities (B, N, H, W) complex from the calibration region of ``y``.

    The calibration k-space of every coil is transformed to a low-resolution coil image,
    refined by a residual normalised U-Net (coils batched, 2 channels), and divided by the
    root-sum-of-squares over coils. Untrained, the U-Net adds nothing: the maps are the
    normalised low-resolution coil images.
    """

    spade_protect = True  #: the pruner leaves this sub-network alone unless asked

    def __init__(self, width: int = 8, levels: int = 2):
        super().__init__()
        self.unet = UNet(2, width, levels, residual=True)

    def forward(self, y: torch.Tensor, physics: MRI) -> torch.Tensor:
        b, n, h, w, _ = y.shape
        acs = calibration_mask(physics.mask, physics.centered)
        coil_images = ifft2(torch.view_as_complex(y.contiguous()) * acs, physics.centered)  # (B, N, H, W)
        channels = torch.view_as_real(coil_images).permute(0, 1, 4, 2, 3).reshape(b * n, 2, h, w)
        refined = self.unet(channels).reshape(b, n, 2, h, w).permute(0, 1, 3, 4, 2)
        maps = torch.view_as_complex(refined.contiguous())
        rss = torch.sqrt((maps.abs() ** 2).sum(1, keepdim=True)).clamp_min(1e-8)
        return maps / rss


class Cascade(nn.Module):
    """One cascade: ``x - eta A^H(A x - y) + U(x)``."""

    def __init__(self, channels: int, width: int, levels: int):
        super().__init__()
        self.dc_weight = nn.Parameter(torch.tensor([1.0]))
        self.prior = UNet(channels, width, levels)

    def forward(self, x, y, operator, scales=None):
        return operator.gradient_step(x, y, self.dc_weight) + self.prior(x, scales)


@register("varnet", physics=("mri",), protocol="fastmri",
          description="E2E variational network: cascades of normalised U-Nets with learned data consistency",
          presets=sharing_presets(stages=2, recursions=3), depth_key="cascades")
class VarNet(ReconstructionNet):
    """End-to-end variational network (see module docstring). ``model(y, physics)``."""

    def __init__(self, cascades: int = 6, width: int = 8, levels: int = 3, image_channels: int = 2,
                 sens_maps: bool = False, sens_width: int = 8, sens_levels: int = 2,
                 sharing: str = "untied", stages: int = 2, recursions: int = 3):
        super().__init__()
        self.image_channels = image_channels
        self.sharing = Sharing(lambda: Cascade(image_channels, width, levels), mode=sharing, iterations=cascades,
                               stages=stages, recursions=recursions, mod_width=width, mod_heads=1)
        self.sens_net = SensitivityNet(sens_width, sens_levels) if sens_maps else None

    def forward(self, y: torch.Tensor, physics, return_aux: bool = False):
        operator = physics
        if self.sens_net is not None:
            require(isinstance(physics, MRI) and physics.n_coils > 1 and not physics.real_image,
                    "sensitivity-map estimation needs multi-coil MRI physics with complex images")
            operator = physics.with_coil_maps(self.sens_net(y, physics))
            x = operator.A_adjoint(y)
        else:
            x = physics.A_dagger(y)
        require_channels(x, self.image_channels, "varnet")
        return unroll(self.sharing, x, y, operator, return_aux=return_aux)
