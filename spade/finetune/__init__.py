"""Fine-tuning and training: strategies behind one registry, losses, and the training loop.

``finetune(model, physics, data, strategy, ...)`` trains any ``model(y, physics)``;
strategies are small classes (:class:`Strategy`) registered by name, or installed by other
packages through the entry-point group ``spade.strategies``.
"""
from ..physics import RandomBlockCS
from .config import TrainConfig
from .loop import MEASUREMENT_DATA, PATCH_DATA, TEST_TIME, History, finetune
from .strategies import (ENTRY_POINT_GROUP, Context, SelfSupervised, School, Strategy, Supervised, available,
                         build_strategies, create_strategy, get_strategy, parse_spec, register_strategy)

__all__ = ["TrainConfig", "RandomBlockCS", "History", "finetune", "PATCH_DATA", "MEASUREMENT_DATA", "TEST_TIME",
           "ENTRY_POINT_GROUP", "Context", "Strategy", "Supervised", "School", "SelfSupervised", "available",
           "build_strategies", "create_strategy", "get_strategy", "parse_spec", "register_strategy"]
