"""SPADE's dependency graph: torch-pruning's ``DependencyGraph`` of one traced call,
corrected for unrolled networks and sorted into prunable groups and interfaces.

On top of ``tp.DependencyGraph().build_dependency`` (the tracer is torch-pruning's):

1. the call is SPADE's own (:mod:`spade.prune.calls`): inputs keep their batch axis,
   errors keep their message, reentrant checkpoints are unrolled, the caller's
   train/eval flags are restored (torch-pruning leaves the model in eval mode);
2. an :class:`OperandRecorder` notes, for every operation, the shapes of the operands
   that carry no gradient (input, physics tensors, buffers) — autograd does not keep them;
3. boundaries (scalars, reductions over channels, see :mod:`spade.prune.rules`) are cut
   out of the graph, so e.g. the per-phase symmetry penalties of ISTA-Net+ summed into
   one scalar no longer couple the phases;
4. parameters outside layers ("unwrapped": step sizes, thresholds, DC weights) are sorted
   by how they are used: per-channel parameters (a (1, C, 1, 1) threshold) are pruned
   along their channel axis with the layers they scale; parameters without a channel axis
   (a scalar, a per-iteration vector indexed by the iteration, a spatial map) are cut out
   of the graph so that they are never pruned; any other use is an interface;
5. every group of coupled layers (``get_all_groups``, rooted at convolutions and linear
   layers) gets a reason when it must keep its width: it reaches the model output, an
   interface operation, a parameter used in an unknown way, or a protected module
   (``spade_protect = True`` or named by the user).
"""
from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import SpadeError
from . import calls, functional, rules, tp_adapter
from .tp_adapter import OP as _OP

ROOT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class _OutOfTime(BaseException):
    """Not an Exception: the handlers that report a user model's own errors let it pass."""


@contextlib.contextmanager
def _time_limit(seconds: float | None, message):
    """Raise a SpadeError with ``message()`` when the block runs past ``seconds`` (a
    SIGALRM timer: in the main thread only; elsewhere the block is not limited)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _OutOfTime:
        raise SpadeError(message()) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _removing(hooks):
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def _flat_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _flat_tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _flat_tensors(o)


class OperandRecorder(TorchFunctionMode):
    """Records, for every tensor a torch function produced, the operands without
    gradient it was called with: ``operands = {grad_fn: [(shape, is_bool), ...]}``
    (python numbers are not tensors and not listed). Autograd nodes created *inside* a
    composite function (``F.instance_norm`` reshapes (B, C, ...) to (1, B*C, ...) and
    back) are noted in ``inner = {grad_fn: function name}``.

    In-place operations rewrite autograd history: an in-place op on a view (fastMRI's
    ``LeakyReLU(inplace=True)`` after ``InstanceNorm2d``) leaves ``AsStrided`` over
    ``CopySlices`` of the view's base where the view was; ``rebased = {node: the view's
    node before the op}`` lets the pruner judge them as that view. In-place slice
    assignment (``x[:, :, a:b] = v``) leaves ``CopySlices``: ``assigned = {node: index}``.
    """

    def __init__(self):
        super().__init__()
        self.operands: dict = {}
        self.inner: dict = {}
        self.rebased: dict = {}
        self.assigned: dict = {}
        self.made_by: dict = {}

    def function_of(self, grad_fn) -> str | None:
        """The torch function that created an autograd node (inside it, or as its result)."""
        return self.inner.get(grad_fn) or self.made_by.get(grad_fn)

    def _mark_inner(self, grad_fn, name: str) -> None:
        stack = [f for f, _ in grad_fn.next_functions if f is not None]
        while stack:
            f = stack.pop()
            if f in self.operands or f in self.inner or not f.next_functions:
                continue
            self.inner[f] = name
            stack.extend(g for g, _ in f.next_functions if g is not None)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args and isinstance(args[0], torch.Tensor) else None
        before = target.grad_fn if target is not None else None
        out = func(*args, **kwargs)
        if target is not None and target.grad_fn is not None and target.grad_fn is not before:  # in place
            self._note_in_place(func, args, target.grad_fn, before)
        produced = [o for o in (out if isinstance(out, (tuple, list)) else (out,))
                    if isinstance(o, torch.Tensor) and o.grad_fn is not None and o.grad_fn not in self.operands]
        if produced:
            untraced = [(tuple(t.shape), t.dtype == torch.bool) for t in _flat_tensors((args, kwargs))
                        if not t.requires_grad]
            name = getattr(func, "__name__", "")
            for o in produced:
                self._mark_inner(o.grad_fn, name)
                self.operands[o.grad_fn] = untraced
                self.made_by[o.grad_fn] = name
        return out


    def _note_in_place(self, func, args, after, before) -> None:
        name = getattr(func, "__name__", "")
        if name == "__setitem__" and len(args) > 1:
            self.assigned[after] = args[1]
        elif rules.op_name(after) == "AsStrided" and before is not None:
            self.rebased[after] = before
            for f, _ in after.next_functions:
                if f is not None and rules.op_name(f).endswith("CopySlices"):
                    self.rebased[f] = before


@dataclass
class Group:
    """Layers whose channels are removed together (one torch-pruning group)."""

    key: tuple[str, ...]  #: names of the layers whose output channels the group removes
    root: nn.Module
    width: int  #: channels now
    channel_groups: int  #: channels come in this many equal groups (GroupNorm, grouped convs)
    interface: str | None  #: why the width must stay (None: prunable)

    @property
    def name(self) -> str:
        return "+".join(self.key)


def _param_kind(node, param: nn.Parameter) -> tuple[str, int | None]:
    """``("channel", dim)``, ``("none", None)`` or ``("opaque", None)`` (see module doc)."""
    shape = tuple(param.shape)
    found = set()
    stack = [(c, shape, False) for c in node.outputs]
    while stack:
        consumer, in_shape, reshaped = stack.pop()
        kind, dim = rules.param_use(consumer.grad_fn, in_shape, reshaped, shape)
        if kind != "follow":
            found.add((kind, dim))
            continue
        out_shape, _ = rules.out_meta(consumer.grad_fn)
        if out_shape is None:
            found.add(("opaque", None))
            continue
        stack.extend((n, out_shape, reshaped or out_shape != in_shape) for n in consumer.outputs)
    kinds = {k for k, _ in found}
    if not found or kinds == {"none"}:
        return "none", None
    if kinds == {"channel"} and len(found) == 1:
        return next(iter(found))
    return "opaque", None


class Graph:
    """The corrected dependency graph of ``model`` (see module docstring).

    Args:
        model: the module to analyse (it is traced, not changed; its flags are restored).
        example: example input (see :mod:`spade.prune.calls`).
        protected: modules (with all their sub-modules) and parameters whose channels
            must stay.
        refused: ``{root layer (torch-pruning's name): reason}`` of groups to keep.
        time_limit: seconds for tracing and analysis (None: no limit).
    """

    def __init__(self, model: nn.Module, example, protected: set | None = None, refused: dict | None = None,
                 time_limit: float | None = None):
        self.model = model
        self.refused = dict(refused or {})
        self._at = "tracing"
        protected = set(protected or ())
        for m in model.modules():
            if getattr(m, "spade_protect", False):
                protected.update(m.modules())
                protected.update(m.parameters())
        self.recorder = OperandRecorder()
        extras = calls.trace_extras(model, example)
        with calls.kept_state(model), calls.unrolled_checkpoints():
            model.eval()
            uses = functional.find(model, lambda: calls.guarded(model, example, **extras))
        self.shadows = functional.Shadows(model, uses)
        protected.update(layer for layer in self.shadows.layers if layer.weight in protected)
        self.protected = protected

        def forward_fn(m, _):
            found = [t for t in calls.tensors_of(calls.guarded(m, example, **extras)) if t.grad_fn is not None]
            if not found:
                raise SpadeError("the model's output does not depend on its parameters: nothing to trace")
            self.output_fns = {t.grad_fn for t in found}
            return found

        self._norm_outputs: dict = {}
        hooks = [m.register_forward_hook(self._note_norm_output) for m in model.modules() if isinstance(m, NORMS)]
        with _time_limit(time_limit, lambda: self._out_of_time(model, time_limit)):
            with torch.enable_grad(), calls.kept_state(model), calls.unrolled_checkpoints(), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for p in model.parameters():
                    p.requires_grad_(True)
                with self.recorder, self.shadows.routing(), _removing(hooks):
                    self.dg = tp_adapter.DependencyGraph(self._retype).build_dependency(
                        model, example_inputs=None, forward_fn=forward_fn, verbose=False)
            self._check_checkpoints()
            self.param_kinds: dict[str, str] = {}
            self._cut_boundaries()
            self._sort_parameters()
            self.active = self._active_nodes()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch-pruning's shape inference warns on long chains
                self.groups = self._analyse()

    def _out_of_time(self, model, seconds) -> str:
        self.shadows.release()
        return (f"the dependency graph of {type(model).__name__} took longer than {seconds:g} s ({self._at}): "
                "protect= that layer (or the module holding it), or pass a larger time_limit")

    # ------------------------------------------------------------------------------
    def _check_checkpoints(self) -> None:
        for node in self.dg.module2node.values():
            if rules.op_name(node.grad_fn).startswith("CheckpointFunction"):
                raise SpadeError("the model runs layers inside a reentrant checkpoint that the tracer cannot see "
                                 "into: call torch.utils.checkpoint.checkpoint(..., use_reentrant=False)")

    def _name(self, module) -> str:
        """A layer's name in the model (a shadow layer goes by its weight's name)."""
        return self.shadows.names.get(module) or tp_adapter.layer_name(self.dg, module)

    def _is_layer(self, module) -> bool:
        return tp_adapter.is_layer(self.dg, module)

    def _cut_boundaries(self) -> None:
        for module, node in list(self.dg.module2node.items()):
            if node.type not in (_OP.PARAMETER, _OP.OUTPUT) and not self._is_layer(module) \
                    and rules.is_boundary(node.grad_fn):
                tp_adapter.detach(node)

    def _sort_parameters(self) -> None:
        for param, node in list(self.dg.module2node.items()):
            if node.type != _OP.PARAMETER:
                continue
            name = tp_adapter.param_name(self.dg, param)
            kind, dim = _param_kind(node, param)
            if kind == "channel":
                node.pruning_dim = dim
            elif kind == "none":
                tp_adapter.detach(node)
                continue
            else:
                self.param_kinds[name] = f"parameter {name} {list(param.shape)} is used in a way that has no channel axis"
            if param in self.protected:
                self.param_kinds[name] = f"parameter {name} is protected"

    def _note_norm_output(self, module, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            self._norm_outputs.setdefault(output.grad_fn, set()).add(module)

    def _retype(self, dg) -> None:
        """Correct torch-pruning's node types before it attaches index mappings:

        * views that keep the channel axis in place map channels one-to-one: element-wise
          (torch-pruning would re-infer their shapes through the whole unrolled graph
          before every group; only flattening needs its mapping);
        * concatenations, splits, slices and unbinds along an axis other than the
          channel axis (negative axes included, e.g. fastMRI's ``fftshift``) leave the
          channels alone: element-wise (torch-pruning takes a negative axis, saved as
          ``2**64 - k``, for the channel axis and sums channel counts it cannot infer);
        * an unbind of a bare parameter (``for w in self.weights``) has no channels;
        * a normalisation layer whose output an in-place op rewrote (``InstanceNorm2d`` then
          ``LeakyReLU(inplace=True)``) gets the node that took its output's place.
        """
        for node in list(dg.module2node.values()):
            before = self.recorder.rebased.get(node.grad_fn)
            layers = self._norm_outputs.get(before, ())
            if rules.op_name(node.grad_fn) == "AsStrided" and len(layers) == 1 and next(iter(layers)) not in dg.module2node:
                tp_adapter.rebind(dg, node, next(iter(layers)))
                continue
            if node.type == _OP.RESHAPE:
                in_shape, out_shape = rules.input_shape(node.grad_fn), rules.out_meta(node.grad_fn)[0]
                flatten = in_shape is not None and out_shape is not None and len(out_shape) == 2 \
                    and len(in_shape) > 2 and in_shape[0] == out_shape[0]
                if not flatten:
                    tp_adapter.retype_elementwise(node)
            elif node.type == _OP.UNBIND and not node.inputs:
                tp_adapter.retype_elementwise(node)
            elif node.type in tp_adapter.AXIS_TYPES:
                axis = rules.op_axis(node.grad_fn)
                if axis is not None and axis != 1:
                    tp_adapter.retype_elementwise(node)

    def _active_nodes(self) -> set:
        """Nodes downstream of a layer or of a per-channel parameter. The others are
        computed from the input and from parameters alone (a step size times the
        measurements, a transposed weight, an indexed per-iteration value): they carry no
        channels of the network's own."""
        stack = [n for m, n in self.dg.module2node.items() if self._is_layer(m) or n.type == _OP.PARAMETER]
        active = set()
        while stack:
            node = stack.pop()
            if node not in active:
                active.add(node)
                stack.extend(node.outputs)
        return active

    def _operands(self, node) -> list | None:
        """Untraced operands of an op: recorded ones, plus the results of inactive nodes."""
        recorded = self.recorder.operands.get(node.grad_fn)
        inactive = [(rules.out_meta(n.grad_fn)[0], False) for n in node.inputs if n not in self.active]
        inactive = [(s, b) for s, b in inactive if s is not None]
        if recorded is None and not inactive:
            return None
        return (recorded or []) + inactive

    def _reason(self, group) -> str | None:
        for dep, _ in group:
            node = dep.target
            module = node.module
            if node.type == _OP.OUTPUT:
                return f"reaches the model output {list(module.shape or [])}"
            if node.grad_fn in self.output_fns and self.dg.is_out_channel_pruning_fn(dep.handler):
                return f"produces the model output {list(rules.out_meta(node.grad_fn)[0] or [])}"
            if node.type == _OP.PARAMETER:
                reason = self.param_kinds.get(tp_adapter.param_name(self.dg, module, ""))
            elif self._is_layer(module):
                reason = f"layer {self._name(module)} is protected" if module in self.protected else None
            elif node.type == _OP.CONCAT and module.offsets is None and node in self.active:
                reason = "Cat of parts whose sizes torch-pruning cannot infer"
            elif node in self.active and node.grad_fn in self.recorder.rebased:
                reason = self._view_reason(self.recorder.rebased[node.grad_fn], node)
            elif node in self.active and node.grad_fn in self.recorder.assigned:
                reason = rules.assignment_reason(self.recorder.assigned[node.grad_fn], rules.out_meta(node.grad_fn)[0])
            elif node in self.active and not rules.composite_view(node.grad_fn, self.recorder.function_of(node.grad_fn)):
                reason = rules.op_reason(node.grad_fn, self._operands(node))
            else:
                reason = None
            if reason:
                return reason
        return None

    def _view_reason(self, view, node) -> str | None:
        """An in-place op on a view, judged as the view it rewrote (and its operands)."""
        if rules.op_name(view) in rules.VIEWS and not rules.composite_view(view, self.recorder.function_of(view)):
            reason = rules.op_reason(view)
            if reason:
                return reason
        operands = self.recorder.operands.get(node.grad_fn)
        return rules.untraced_reason(operands, "in-place op", rules.out_meta(view)[0]) if operands else None

    def _channel_groups(self, group) -> int:
        counts = [1]
        for dep, _ in group:
            module = dep.target.module
            if not self._is_layer(module):
                continue
            if isinstance(module, nn.modules.conv._ConvNd) and module.groups == module.out_channels:
                continue  # depthwise: channel by channel
            pruner = self.dg.get_pruner_of_module(module)
            if self.dg.is_out_channel_pruning_fn(dep.handler):
                counts.append(pruner.get_out_channel_groups(module))
            else:
                counts.append(pruner.get_in_channel_groups(module))
        if any(dep.target.type == _OP.SPLIT for dep, _ in group):
            counts.append(self._split_coupling(group[0].dep.target.module))
        return max(counts)

    def _split_coupling(self, root) -> int:
        """How many of the root's channels one channel drags along when its output is
        split into parts that meet again channel by channel (``a, b = f(x).chunk(2);
        a * b``): channels ``i, i + C/k, ...`` go together, like ``k`` channel groups."""
        fn = self.dg.get_pruner_of_module(root).prune_out_channels
        probe = self.dg.get_pruning_group(root, fn, [0])
        return max([len(item.idxs) for item in probe if item.dep.target.module is root
                    and self.dg.is_out_channel_pruning_fn(item.dep.handler)] + [1])

    def _analyse(self) -> list[Group]:
        groups = []
        self._at = "grouping the layers"
        for group in self.dg.get_all_groups(root_module_types=ROOT_TYPES):
            key = tuple(sorted({self._name(dep.target.module) for dep, _ in group
                                if self._is_layer(dep.target.module) and self.dg.is_out_channel_pruning_fn(dep.handler)}))
            root = group[0].dep.target.module
            self._at = f"analysing the group of layer {self._name(root)}"
            reason = self._reason(group) or self.refused.get(tp_adapter.layer_name(self.dg, root))
            groups.append(Group(key, root, self.dg.get_out_channels(root), self._channel_groups(group), reason))
        return groups

    # ------------------------------------------------------------------------------
    def full_group(self, group: Group):
        """The torch-pruning group of ``group`` over all its current channels."""
        root = group.root
        fn = self.dg.get_pruner_of_module(root).prune_out_channels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch-pruning's shape inference warns on long chains
            return self.dg.get_pruning_group(root, fn, list(range(self.dg.get_out_channels(root))))

    def prune(self, group: Group, indices: list[int]) -> None:
        """Remove channels ``indices`` of ``group`` from every coupled layer."""
        root = group.root
        fn = self.dg.get_pruner_of_module(root).prune_out_channels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruning = self.dg.get_pruning_group(root, fn, indices)
        if not self.dg.check_pruning_group(pruning):
            raise AssertionError(f"pruning {len(indices)} channels of {group.name} would empty a layer")
        pruning.prune()
        self.shadows.sync()
        group.width = self.dg.get_out_channels(root)

    def history(self) -> list:
        """torch-pruning's pruning history: ``[[root layer, True, [indices]], ...]``."""
        return [[name, bool(out), [int(i) for i in idxs]] for name, out, idxs in self.dg.pruning_history()]

    def replay(self, history: list) -> None:
        """Apply a pruning history recorded on a model of the same architecture."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch-pruning's shape inference warns on long chains
                self.dg.load_pruning_history(history)
        except (AttributeError, ValueError, IndexError, AssertionError, RuntimeError) as exc:
            raise SpadeError(f"the pruning history does not fit this model: {type(exc).__name__}: {exc}") from None
        self.shadows.sync()

    def release(self) -> None:
        """Hand the model back: functional layers get their pruned parameters and the
        shadow layers go (see :mod:`spade.prune.functional`). The graph is unusable after."""
        self.shadows.release()
