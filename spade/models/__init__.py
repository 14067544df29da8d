"""Reconstruction networks: registry, sharing modes, model files, importers.

Importing this package registers every family of the zoo (the registry itself imports
no model).
"""
from . import coast, deq, du, hqs_sr, ista_net_plus, lista, varnet  # noqa: F401  (registers the families)
from .adapter import Adapter, OwnModel, from_factory, is_factory, source_name, split_source
from .base import ReconstructionNet
from .io import LoadedModel, load_model, model_name, model_names, save_model
from .registry import count_parameters, create_model, families, get_family
from .sharing import MODES, Modulation, Sharing

__all__ = ["Adapter", "OwnModel", "from_factory", "is_factory", "source_name", "split_source", "ReconstructionNet",
           "LoadedModel", "load_model", "model_name", "model_names", "save_model", "count_parameters", "create_model",
           "families", "get_family", "MODES", "Modulation", "Sharing"]
