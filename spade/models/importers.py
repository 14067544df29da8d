"""Converting official releases into SPADE model files.

ISTA-Net+ (``net_params_*.pkl``): a plain ``state_dict`` with keys
``module.fcs.{k}.{lambda_step, soft_thr, conv_D, conv1_forward, conv2_forward,
conv1_backward, conv2_backward, conv_G}`` (raw weight tensors without bias). The number
of phases and the channel width are read from the file; the sampling ratio from Phi.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import SpadeError, require
from ..limits import check_count
from ..physics import MRI, BlockCS, load_mask, load_phi, load_qinit
from .registry import create_model

ISTA_KEYS = ("lambda_step", "soft_thr", "conv_D", "conv1_forward", "conv2_forward", "conv1_backward",
             "conv2_backward", "conv_G")
_CONVS = ISTA_KEYS[2:]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    require(path.is_file(), f"weights file {path} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SpadeError(f"cannot read weights {path}: not a PyTorch state_dict or corrupt ({exc.__class__.__name__})") from None
    require(isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values()),
            f"{path} does not hold a plain state_dict of tensors")
    return {re.sub(r"^module\.", "", k): v for k, v in sd.items()}


def _ista_phases(sd: dict[str, torch.Tensor], path: Path) -> tuple[int, int]:
    require(sd, f"{path} holds no weights")
    pattern = re.compile(r"^fcs\.(\d{1,9})\.(\w+)$")
    unexpected = [k for k in sd if not (m := pattern.match(k)) or m.group(2) not in ISTA_KEYS]
    require(not unexpected, f"{path} has keys that are not ISTA-Net+'s: {unexpected[:5]}")
    phases = check_count(1 + max(int(pattern.match(k).group(1)) for k in sd), "MAX_ITERATIONS", f"{path}: phases")
    missing = [f"fcs.{i}.{n}" for i in range(phases) for n in ISTA_KEYS if f"fcs.{i}.{n}" not in sd]
    require(not missing, f"{path} misses ISTA-Net+ keys: {missing[:5]}")
    channels = sd["fcs.0.conv_D"].shape[0]
    for i in range(phases):
        shapes = {n: tuple(sd[f"fcs.{i}.{n}"].shape) for n in ISTA_KEYS}
        expected = {"lambda_step": (1,), "soft_thr": (1,), "conv_D": (channels, 1, 3, 3),
                    "conv1_forward": (channels, channels, 3, 3), "conv2_forward": (channels, channels, 3, 3),
                    "conv1_backward": (channels, channels, 3, 3), "conv2_backward": (channels, channels, 3, 3),
                    "conv_G": (1, channels, 3, 3)}
        wrong = [f"fcs.{i}.{n} {shapes[n]} (expected {expected[n]})" for n in ISTA_KEYS if shapes[n] != expected[n]]
        require(not wrong, f"{path} has tensors of unexpected shape: {wrong[:3]}")
    return phases, channels


def _named_ratio(*paths: Path) -> int | None:
    """A ratio in percent named by official file/folder names (``ratio_25``, ``phi_0_25_1089``, ``cs25``)."""
    found = set()
    for p in paths:
        text = str(p)
        for pat in (r"ratio_(\d+)", r"phi_0_(\d+)_\d+", r"Initialization_Matrix_(\d+)", r"(?:^|/)cs(\d+)(?:/|$)"):
            found.update(int(m) for m in re.findall(pat, text))
    require(len(found) <= 1, f"the file names name different sampling ratios {sorted(found)}: "
                             "the weights, Phi and Qinit must come from the same release")
    return found.pop() if found else None


def import_ista_net_plus(weights: str | Path, phi: str | Path | None = None, qinit: str | Path | None = None,
                         mask: str | Path | None = None, ratio: float | None = None):
    """Convert an official ISTA-Net+ release; returns ``(model, physics, provenance)``.

    CS: give ``phi`` and ``qinit`` (``.mat``, keys ``phi``/``Qinit``); the ratio is
    ``rows(Phi) / 1089`` and is checked against ``ratio`` (a fraction) and against the
    ratio that the official file names state. MRI: give ``mask`` (``.mat`` key
    ``mask_matrix``, unshifted k-space layout).
    """
    weights = Path(weights)
    require((phi is None) != (mask is None),
            "give either --phi and --qinit (compressive sensing) or --mask (MRI)")
    sd = _read_state_dict(weights)
    phases, channels = _ista_phases(sd, weights)
    if phi is not None:
        require(qinit is not None, "CS import needs --qinit (Initialization_Matrix_*.mat) with --phi")
        phi_t = load_phi(phi)
        q = load_qinit(qinit, phi_t)
        measured = phi_t.shape[0] / phi_t.shape[1]
        named = _named_ratio(weights, Path(phi), Path(qinit))
        if named is not None:
            require(abs(measured * 100 - named) < 1.0,
                    f"Phi has {phi_t.shape[0]} rows (ratio {measured:.4f}) but the files are named for a "
                    f"{named}% ratio: use the Phi of the same release")
        if ratio is not None:
            require(abs(measured - ratio) < 0.01,
                    f"Phi has {phi_t.shape[0]} rows (ratio {measured:.4f}), not the expected ratio {ratio}")
        physics = BlockCS(phi_t, q)
        block_size = physics.block_size
    else:
        require(qinit is None, "--qinit belongs to CS imports; MRI imports take --mask only")
        physics = MRI(load_mask(mask), real_image=True, centered=False)
        block_size = None
    model = create_model("ista-net-plus", phases=phases, channels=channels, block_size=block_size)
    converted = {}
    for i in range(phases):
        prefix = f"sharing.blocks.{i}."
        converted[prefix + "lambda_step"] = sd[f"fcs.{i}.lambda_step"]
        converted[prefix + "soft_thr"] = sd[f"fcs.{i}.soft_thr"]
        for name in _CONVS:
            converted[prefix + name + ".weight"] = sd[f"fcs.{i}.{name}"]
    model.load_state_dict(converted, strict=True)
    provenance = {"source": {"importer": "ista-net-plus", "weights": weights.name,
                             "task": "cs" if phi is not None else "mri", "phases": phases, "channels": channels}}
    return model.eval(), physics, provenance
