"""Reconstruction networks: registry, sharing modes, model files, importers."""
from .base import ReconstructionNet
from .io import LoadedModel, load_model, save_model
from .registry import count_parameters, create_model, families, get_family
from .sharing import MODES, Modulation, Sharing

__all__ = ["ReconstructionNet", "LoadedModel", "load_model", "save_model", "count_parameters", "create_model",
           "families", "get_family", "MODES", "Modulation", "Sharing"]
