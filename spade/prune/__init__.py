"""Structured pruning of model-based networks on torch-pruning's dependency graph.

``spade.prune(model, example_inputs, ratio=0.5, ...)`` returns ``(smaller copy,
record)`` (see :func:`spade.prune.api.prune`): the package itself is callable, so both
``spade.prune(...)`` and ``from spade.prune import prune`` work. Channels tied to the
physics keep their width (:mod:`spade.prune.graph`, :mod:`spade.prune.rules`);
:mod:`spade.prune.depth` removes whole iterations; :mod:`spade.prune.saving` stores a
pruned bring-your-own model as weights plus history; :mod:`spade.prune.functional` makes
convolutions applied with ``F.conv2d`` on raw parameters prunable; every use of
torch-pruning's internals is in :mod:`spade.prune.tp_adapter`.
"""
import sys
import types

from .api import PruneRecord, count_macs, count_params, prune
from .criteria import CRITERIA
from .depth import DepthResult, prune_depth
from .graph import Graph
from .saving import apply_history, history_of, load_own, load_pruned, read_pruned, save_pruned, write_pruned

__all__ = ["prune", "PruneRecord", "count_macs", "count_params", "CRITERIA", "DepthResult", "prune_depth", "Graph",
           "apply_history", "history_of", "load_own", "load_pruned", "read_pruned", "save_pruned", "write_pruned"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return prune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
