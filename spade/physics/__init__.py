"""Measurement operators: one protocol (:class:`LinearPhysics`), four problems."""
from __future__ import annotations

from ..errors import SpadeError
from .base import LinearPhysics
from .config import build_physics
from .cs import BlockCS, gaussian_phi, least_squares_qinit, load_phi, load_qinit, pad_to_blocks
from .masks import equispaced_mask, load_mask, random_mask, variable_density_mask
from .mri import MRI, simulate_coil_maps
from .sparse import SparseRecovery, bernoulli_gaussian, gaussian_matrix, ista, soft_threshold
from .sr import SuperResolution, bicubic_kernel, gaussian_kernel, make_kernel

KINDS = {cls.kind: cls for cls in (MRI, SuperResolution, BlockCS, SparseRecovery)}


def physics_from_settings(kind: str, settings: dict, tensors: dict) -> LinearPhysics:
    """Rebuild an operator stored as ``(kind, settings, tensors)`` (see model files)."""
    if kind not in KINDS:
        raise SpadeError(f"unknown physics '{kind}': expected one of {sorted(KINDS)}")
    return KINDS[kind].from_settings(settings, tensors)


__all__ = [
    "LinearPhysics", "build_physics", "MRI", "SuperResolution", "BlockCS", "KINDS", "physics_from_settings",
    "equispaced_mask", "random_mask", "variable_density_mask", "load_mask", "simulate_coil_maps",
    "gaussian_kernel", "bicubic_kernel", "make_kernel", "gaussian_phi", "least_squares_qinit",
    "load_phi", "load_qinit", "pad_to_blocks", "SparseRecovery", "bernoulli_gaussian", "gaussian_matrix", "ista",
    "soft_threshold",
]
