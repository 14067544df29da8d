"""Every use of torch-pruning's internals, in one place.

SPADE builds on torch-pruning's public ``DependencyGraph`` / ``Group`` API; what that
API does not expose (the names it gave modules and parameters, the type of a node,
a node's edges) is read or changed here only, each with the reason, so that a new
torch-pruning release is checked against one module.
"""
from __future__ import annotations

import torch_pruning as tp
from torch import nn

OP = tp.ops.OPTYPE


def is_layer(dg: tp.DependencyGraph, module) -> bool:
    """A module the graph holds as a layer (a parameter or an autograd op is not)."""
    # _module2name: the only record of which traced modules are layers of the model
    return isinstance(module, nn.Module) and module in dg._module2name


def layer_name(dg: tp.DependencyGraph, module: nn.Module) -> str:
    # _module2name: torch-pruning keeps the qualified names of the layers it traced only here
    return dg._module2name[module]


def param_name(dg: tp.DependencyGraph, param, default: str = "parameter") -> str:
    # _param_to_name: the qualified names of "unwrapped" parameters (outside any layer)
    return dg._param_to_name.get(param, default)


def retype_elementwise(node) -> None:
    """Make a node map channels one-to-one (no re-inference of shapes through it)."""
    # node.type selects the index mapping torch-pruning applies through the node
    node.type = OP.ELEMENTWISE


def rebind(dg: tp.DependencyGraph, node, module: nn.Module) -> None:
    """Make ``node`` the node of layer ``module`` (whose own output node an in-place op
    replaced in autograd's history, so the tracer never linked the layer)."""
    # module2node / node.module / node.type / node.module_class: how torch-pruning finds a layer's pruner
    del dg.module2node[node.module]
    node.module, node.module_class, node.type = module, module.__class__, tp.ops.module2type(module)
    node._name = dg._module2name.get(module)
    dg.module2node[module] = node


def detach(node) -> None:
    """Remove a node's edges: channels on its two sides become independent."""
    # node.inputs/outputs/dependencies: the edges; torch-pruning has no call to cut one
    for other in node.inputs + node.outputs:
        other.dependencies = [d for d in other.dependencies if d.target is not node]
        other.inputs = [n for n in other.inputs if n is not node]
        other.outputs = [n for n in other.outputs if n is not node]
    node.dependencies, node.inputs, node.outputs = [], [], []


class DependencyGraph(tp.DependencyGraph):
    """torch-pruning's graph with one hook: ``on_nodes(graph)`` runs once the traced nodes
    are linked and before torch-pruning infers shapes and attaches index mappings, so that
    nodes whose type was guessed wrongly are retyped *before* any mapping is attached to
    them (a mapping attached and then left on a retyped node is applied on every pass of
    group analysis: a flatten mapping multiplies the index lists each time)."""

    def __init__(self, on_nodes):
        super().__init__()
        self._on_nodes = on_nodes

    def _build_dependency(self, module2node):
        # _build_dependency: the step of build_dependency that links nodes by their types
        self._on_nodes(self)
        super()._build_dependency(module2node)


#: node types whose index mapping torch-pruning applies on axis 1 only
AXIS_TYPES = (OP.CONCAT, OP.SPLIT, OP.SLICE, OP.UNBIND)
