"""One registry of model families: ``create_model(name, **config)`` builds any of them.

A leaf (timm's ``_registry.py``): it imports no model. Each family module registers its
class with :func:`register` when imported; ``spade.models`` imports every family.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..errors import SpadeError


@dataclass(frozen=True)
class Family:
    """A registered model family."""

    name: str
    cls: type
    physics: tuple[str, ...]  #: physics kinds the family serves ("cs", "mri", "sr", "sparse")
    protocol: str  #: default evaluation protocol
    description: str = ""
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  #: named configurations
    depth_key: str | None = None  #: constructor argument that sets the number of iterations

    def defaults(self) -> dict[str, Any]:
        sig = inspect.signature(self.cls.__init__)
        return {k: p.default for k, p in sig.parameters.items()
                if k != "self" and p.default is not inspect.Parameter.empty}


_FAMILIES: dict[str, Family] = {}


def register(name: str, physics: tuple[str, ...], protocol: str, description: str = "",
             presets: dict[str, dict[str, Any]] | None = None, depth_key: str | None = None) -> Callable[[type], type]:
    """Class decorator that registers a family under ``name`` (a second family of the
    same name replaces the first, with a warning)."""

    def wrap(cls: type) -> type:
        if name in _FAMILIES and _FAMILIES[name].cls is not cls:
            warnings.warn(f"model family '{name}' is registered again: {cls.__qualname__} replaces "
                          f"{_FAMILIES[name].cls.__qualname__}", stacklevel=2)
        cls.family = name
        _FAMILIES[name] = Family(name, cls, tuple(physics), protocol, description, dict(presets or {}), depth_key)
        return cls

    return wrap


def families() -> dict[str, Family]:
    return dict(_FAMILIES)


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise SpadeError(f"unknown model family '{name}': choose one of {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def create_model(name: str, **config) -> nn.Module:
    """Build a model of family ``name``; unknown arguments are reported with the allowed ones."""
    fam = get_family(name)
    allowed = fam.defaults()
    sig = inspect.signature(fam.cls.__init__)
    params = set(sig.parameters) - {"self"}
    unknown = sorted(set(config) - params)
    if unknown:
        raise SpadeError(f"model '{name}' has no setting {unknown}: allowed are {sorted(params)}")
    try:
        return fam.cls(**config)
    except SpadeError:
        raise
    except (TypeError, ValueError) as exc:
        raise SpadeError(f"cannot build model '{name}' with {config}: {exc} (defaults: {allowed})") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())
