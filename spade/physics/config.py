"""Building an operator from a plain settings dict (recipes, the command line).

====== ======================================================================
kind   keys (defaults)
====== ======================================================================
mri    ``shape`` [H, W] (required unless ``mask`` is a file), ``mask``
       (``equispaced`` | ``random`` | ``variable-density`` | path to .mat/.npy;
       ``equispaced``), ``acceleration`` (4), ``center_fraction`` (0.08), ``seed`` (0),
       ``coils`` (1; more simulates smooth coil maps), ``real_image`` (false),
       ``centered`` (true; false for unshifted masks such as ISTA-Net+'s),
       ``mask_key`` ("mask_matrix"), ``noise_level`` (0)
sr     ``scale`` (required: 2, 3 or 4), ``kernel`` ("bicubic" | "gaussian:SIGMA" | path),
       ``noise_level`` (0)
cs     ``ratio`` (Gaussian Phi with orthonormal rows, ``seed``) or ``phi`` + ``qinit``
       (.mat files), ``block_size`` (33), ``noise_level`` (0)
sparse ``m`` (250), ``n`` (500), ``seed`` (0) of the Gaussian matrix, ``snr_db`` (inf =
       noiseless; 40 in the classic noisy setting), ``noise_level`` (0; an absolute
       standard deviation, used only without ``snr_db``)
====== ======================================================================
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import require
from .base import LinearPhysics
from .cs import BlockCS, gaussian_phi, load_phi, load_qinit
from .masks import equispaced_mask, load_mask, random_mask, variable_density_mask
from .mri import MRI, simulate_coil_maps
from .sparse import SparseRecovery
from .sr import SuperResolution

_KEYS = {
    "mri": {"kind", "shape", "mask", "acceleration", "center_fraction", "seed", "coils", "real_image", "centered",
            "mask_key", "noise_level"},
    "sr": {"kind", "scale", "kernel", "noise_level"},
    "cs": {"kind", "ratio", "seed", "phi", "qinit", "block_size", "noise_level"},
    "sparse": {"kind", "m", "n", "seed", "snr_db", "noise_level"},
}
_MASKS = {"equispaced": equispaced_mask, "random": random_mask, "variable-density": variable_density_mask}


def build_physics(config: dict[str, Any]) -> LinearPhysics:
    """An operator from settings (see the module table); unknown keys are errors."""
    kind = config.get("kind")
    require(kind in _KEYS, f"physics kind '{kind}' is unknown: choose one of {sorted(_KEYS)}")
    unknown = sorted(set(config) - _KEYS[kind])
    require(not unknown, f"physics '{kind}' has no setting {unknown}: allowed are {sorted(_KEYS[kind])}")
    noise = float(config.get("noise_level", 0.0))
    if kind == "sparse":
        snr = config.get("snr_db", math.inf)
        require(isinstance(snr, (int, float)), f"snr_db = {snr!r} is not a number: give e.g. 40 or inf")
        return SparseRecovery.gaussian(int(config.get("m", 250)), int(config.get("n", 500)), int(config.get("seed", 0)),
                                       snr_db=float(snr), noise_level=noise)
    if kind == "sr":
        require("scale" in config, "physics 'sr' needs a 'scale' (2, 3 or 4)")
        return SuperResolution(config["scale"], config.get("kernel", "bicubic"), noise_level=noise)
    if kind == "cs":
        block = int(config.get("block_size", 33))
        if "phi" in config:
            require("qinit" in config, "physics 'cs' with 'phi' needs 'qinit' too")
            phi = load_phi(config["phi"], block)
            return BlockCS(phi, load_qinit(config["qinit"], phi), block, noise_level=noise)
        require("ratio" in config, "physics 'cs' needs a 'ratio' in (0, 1] or 'phi' + 'qinit' files")
        return BlockCS(gaussian_phi(config["ratio"], block, int(config.get("seed", 0))), None, block,
                       noise_level=noise)
    mask_name = str(config.get("mask", "equispaced"))
    seed = int(config.get("seed", 0))
    if mask_name in _MASKS:
        require("shape" in config, "physics 'mri' with a generated mask needs 'shape' [H, W]")
        shape = tuple(int(s) for s in config["shape"])
        args = (shape, float(config.get("acceleration", 4)), float(config.get("center_fraction", 0.08)))
        mask = _MASKS[mask_name](*args) if mask_name == "equispaced" else _MASKS[mask_name](*args, seed=seed)
    else:
        mask = load_mask(mask_name, config.get("mask_key", "mask_matrix"))
        if "shape" in config:
            require(tuple(config["shape"]) == tuple(mask.shape),
                    f"mask {mask_name} is {tuple(mask.shape)}, not the requested shape {tuple(config['shape'])}")
    coils = int(config.get("coils", 1))
    require(coils >= 1, f"coils = {coils}: give 1 (single-coil) or more")
    maps = simulate_coil_maps(coils, mask.shape, seed) if coils > 1 else None
    return MRI(mask, coil_maps=maps, real_image=bool(config.get("real_image", False)),
               centered=bool(config.get("centered", True)), noise_level=noise)
