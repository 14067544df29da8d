"""One registry of model families: ``create_model(name, **config)`` builds any of them."""
from __future__ import annotations

import inspect
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

    def defaults(self) -> dict[str, Any]:
        sig = inspect.signature(self.cls.__init__)
        return {k: p.default for k, p in sig.parameters.items()
                if k != "self" and p.default is not inspect.Parameter.empty}


_FAMILIES: dict[str, Family] = {}


def register(name: str, physics: tuple[str, ...], protocol: str, description: str = "",
             presets: dict[str, dict[str, Any]] | None = None) -> Callable[[type], type]:
    """Class decorator that registers a family under ``name``."""

    def wrap(cls: type) -> type:
        cls.family = name
        _FAMILIES[name] = Family(name, cls, tuple(physics), protocol, description, dict(presets or {}))
        return cls

    return wrap


def _ensure_loaded() -> None:
    from . import zoo  # noqa: F401  (importing the zoo registers every family)


def families() -> dict[str, Family]:
    _ensure_loaded()
    return dict(_FAMILIES)


def get_family(name: str) -> Family:
    fams = families()
    if name not in fams:
        raise SpadeError(f"unknown model family '{name}': choose one of {sorted(fams)}")
    return fams[name]


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
