"""Measurement operators: one protocol (:class:`LinearPhysics`), one module per kind.

Every module of this package is imported here, so a physics kind defined in a new
module registers itself (see :class:`LinearPhysics`) without edits elsewhere.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import KINDS, LinearPhysics
from .config import build_physics, physics_from_settings
from .cs import BlockCS, RandomBlockCS, gaussian_phi, least_squares_qinit, load_phi, load_qinit, pad_to_blocks
from .masks import equispaced_mask, load_mask, random_mask, variable_density_mask
from .mri import MRI, simulate_coil_maps
from .noise import GaussianNoise, SNRNoise
from .sparse import SparseRecovery, bernoulli_gaussian, gaussian_matrix, ista, soft_threshold
from .sr import SuperResolution, bicubic_kernel, gaussian_kernel, make_kernel

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "LinearPhysics", "build_physics", "MRI", "SuperResolution", "BlockCS", "RandomBlockCS", "KINDS",
    "physics_from_settings", "GaussianNoise", "SNRNoise",
    "equispaced_mask", "random_mask", "variable_density_mask", "load_mask", "simulate_coil_maps",
    "gaussian_kernel", "bicubic_kernel", "make_kernel", "gaussian_phi", "least_squares_qinit",
    "load_phi", "load_qinit", "pad_to_blocks", "SparseRecovery", "bernoulli_gaussian", "gaussian_matrix", "ista",
    "soft_threshold",
]
