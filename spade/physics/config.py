"""Building an operator from plain settings (recipes, the command line, model files).

``build_physics({"kind": KIND, ...})`` checks the keys against the kind's
``config_keys`` and hands them to its ``from_config`` (the settings of each kind are
listed there: :meth:`MRI.from_config <spade.physics.mri.MRI.from_config>`, ...);
``physics_from_settings`` rebuilds an operator stored as ``(kind, settings, tensors)``.
"""
from __future__ import annotations

from typing import Any

from ..errors import SpadeError, require
from .base import KINDS, LinearPhysics


def build_physics(config: dict[str, Any]) -> LinearPhysics:
    """An operator from settings; unknown kinds and keys are errors."""
    kind = config.get("kind")
    require(kind in KINDS, f"physics kind '{kind}' is unknown: choose one of {sorted(KINDS)}")
    cls = KINDS[kind]
    allowed = cls.config_keys | {"kind", "noise_level"}
    unknown = sorted(set(config) - allowed)
    require(not unknown, f"physics '{kind}' has no setting {unknown}: allowed are {sorted(allowed)}")
    return cls.from_config(config)


def physics_from_settings(kind: str, settings: dict, tensors: dict) -> LinearPhysics:
    """Rebuild an operator stored as ``(kind, settings, tensors)`` (see model files)."""
    if kind not in KINDS:
        raise SpadeError(f"unknown physics '{kind}': expected one of {sorted(KINDS)}")
    return KINDS[kind].from_settings(settings, tensors)
