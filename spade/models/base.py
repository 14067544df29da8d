"""The common shape of SPADE's reconstruction networks.

Every network is called as ``model(y, physics)`` and returns the reconstruction, an
image of the shape ``physics.A_adjoint(y)`` has. ``model(y, physics, return_aux=True)``
returns ``(x, aux)`` where ``aux["iterates"]`` lists the image after every unrolled
iteration and ``aux["regularizer"]`` (when present) is a scalar training penalty of the
architecture itself (e.g. ISTA-Net+'s symmetry constraint), already weighted.

The constructor arguments of a model are its configuration (``model.config``); they are
recorded automatically so that a model file can rebuild the architecture.
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn


class ReconstructionNet(nn.Module):
    """Base class: records constructor arguments in ``config``; subclasses set ``family``."""

    family: str = ""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(obj, *args, **kwargs)
        except TypeError:  # copy/deepcopy create the object without arguments
            return obj
        bound.apply_defaults()
        config = {k: v for k, v in bound.arguments.items() if k != "self"}
        object.__setattr__(obj, "_config", config)
        return obj

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable values)."""
        return dict(self._config)

    def reconfigured(self, **changes) -> dict[str, Any]:
        """This model's configuration with some arguments changed."""
        cfg = self.config
        cfg.update(changes)
        return cfg
