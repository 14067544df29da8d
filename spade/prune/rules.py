"""Which traced operations carry channels one-to-one, and which tie them to the physics.

torch-pruning treats every operation it does not know as element-wise: it passes a
channel index straight through FFTs, complex views, pixel shuffles, matrix products and
functional convolutions, and through additions whose other operand came from the input.
These rules sort the operations of a traced graph (by their autograd node) into:

* **channel-preserving** — channel ``c`` in is channel ``c`` out: point-wise maps,
  arithmetic with traced operands or with operands broadcast over channels, pooling,
  up-sampling, padding, reductions over other axes, views that keep the channel axis;
* **boundaries** — the result has no channel axis: reductions to a scalar or over the
  channel axis (a training penalty such as ``mean((H~(H(x)) - x)^2)``). The pruner cuts
  the graph there: channels on both sides are independent;
* **interfaces** — everything else: channel-mixing or reordering operations (FFT, complex
  views, pixel (un)shuffle, functional convolutions and matrix products with non-layer
  weights such as a sampling matrix, views that move the channel axis, unknown or
  custom operations) and arithmetic with an untraced tensor that has a channel axis
  (the input image, k-space, a mask or a buffer). A group of layers that reaches one
  keeps its width.

Channels are axis 1 of a tensor (axis 1 of a (B, F) feature vector, too).
Boolean operands (masks computed from the features) are not tensors with channels.
"""
from __future__ import annotations

import re

import torch

#: point-wise maps of one tensor
POINTWISE = frozenset("""
Relu LeakyRelu Elu Selu Celu Gelu Silu Mish Sigmoid Tanh Hardtanh Hardswish Hardsigmoid Softplus Softshrink
Hardshrink Threshold Abs Sign Sgn Neg Sqrt Rsqrt Reciprocal Exp Exp2 Log Log2 Log10 Log1p Expm1 Clamp
ClampMin ClampMax Clone ToCopy Alias Sin Cos Tan Atan Asin Acos Sinh Cosh Erf Erfc Erfinv Softmax LogSoftmax
NativeDropout Lift Frac Trunc
""".split())

#: arithmetic between tensors (broadcasting)
BINARY = frozenset("""
Add Sub Rsub Mul Div Maximum Minimum Fmax Fmin Where Pow Atan2 Hypot Lerp Addcmul Addcdiv Copysign Xlogy
""".split())

#: spatial maps applied to every channel alike
SPATIAL = frozenset("""
MaxPool1DWithIndices MaxPool2DWithIndices MaxPool3DWithIndices AvgPool1D AvgPool2D AvgPool3D AdaptiveAvgPool1D
AdaptiveAvgPool2D AdaptiveAvgPool3D AdaptiveMaxPool1D AdaptiveMaxPool2D AdaptiveMaxPool3D UpsampleNearest1D
UpsampleNearest2D UpsampleNearest3D UpsampleNearestExact1D UpsampleNearestExact2D UpsampleNearestExact3D
UpsampleLinear1D UpsampleBilinear2D UpsampleBicubic2D UpsampleTrilinear3D UpsampleBilinear2DAa UpsampleBicubic2DAa
ConstantPadNd ReflectionPad1D ReflectionPad2D ReflectionPad3D ReplicationPad1D ReplicationPad2D ReplicationPad3D
NativeBatchNorm CudnnBatchNorm MiopenBatchNorm NativeLayerNorm
""".split())

#: reductions (boundaries when they remove the channel axis)
REDUCTIONS = frozenset("""
Mean Sum Nansum Amax Amin Max Min Norm LinalgVectorNorm Std Var StdMean VarMean Prod Logsumexp MseLoss L1Loss
SmoothL1Loss HuberLoss
""".split())

#: indexing a parameter (a per-iteration table): the parameter has no channel axis
INDEXING = frozenset("Select Index IndexSelect Gather Unbind Slice Embedding".split())

#: views and reshapes
VIEWS = ("View", "UnsafeView", "Reshape", "ReshapeAlias")

#: operations that only change a tensor's shape
SHAPE_ONLY = frozenset("View UnsafeView Reshape ReshapeAlias Unsqueeze Squeeze Expand Clone ToCopy Alias".split())

#: functions that reshape channels internally and restore them (their inner views are fine)
CHANNELWISE_FUNCTIONS = frozenset("instance_norm batch_norm layer_norm dropout dropout1d dropout2d dropout3d "
                                  "alpha_dropout feature_alpha_dropout interpolate pad".split())

_SUFFIX = re.compile(r"Backward\d*$")


def op_name(grad_fn) -> str:
    """``AddBackward0`` -> ``Add``; names without a backward suffix are returned whole."""
    if grad_fn is None or not hasattr(grad_fn, "name"):
        return "Unknown"
    return _SUFFIX.sub("", grad_fn.name())


def out_meta(grad_fn) -> tuple[tuple[int, ...] | None, torch.dtype | None]:
    """Shape and dtype of the tensor an autograd node produced (None when unknown)."""
    try:
        meta = grad_fn._input_metadata[0]
        return tuple(meta.shape), meta.dtype
    except (AttributeError, IndexError, RuntimeError):
        return None, None


def _signed(dim):
    """An axis autograd saved as unsigned 64 bits (``-2`` reads ``2**64 - 2``), signed."""
    return dim - 2 ** 64 if isinstance(dim, int) and dim >= 2 ** 63 else dim


def _norm_dims(dims, ndim: int) -> list[int]:
    if dims is None:
        return list(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    dims = [int(_signed(d)) for d in dims]
    if not dims:  # an empty dim list reduces over every axis
        return list(range(ndim))
    return [d % ndim if ndim else 0 for d in dims]


def _saved(grad_fn, name, default=None):
    try:
        return getattr(grad_fn, name)
    except (AttributeError, RuntimeError):
        return default


def input_shape(grad_fn) -> tuple[int, ...] | None:
    """Shape of the (single) tensor an autograd node was applied to (None when unknown)."""
    sizes = _saved(grad_fn, "_saved_self_sym_sizes")
    if sizes is not None:
        return tuple(int(s) for s in sizes)
    self_ = _saved(grad_fn, "_saved_self")
    if isinstance(self_, torch.Tensor):
        return tuple(self_.shape)
    nxt = [f for f, _ in getattr(grad_fn, "next_functions", ()) if f is not None]
    if len(nxt) == 1:
        return out_meta(nxt[0])[0]
    return None


def composite_view(grad_fn, function: str | None) -> bool:
    """A view made inside a function that works channel by channel (see
    :data:`CHANNELWISE_FUNCTIONS`): it does not move the function's channels."""
    return function in CHANNELWISE_FUNCTIONS and op_name(grad_fn) in VIEWS


def channel_size(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int | None:
    """Size of ``shape`` along the channel axis of ``out_shape`` once broadcast to it
    (None when ``shape`` has no axis there)."""
    if len(out_shape) < 2:
        return None
    idx = len(shape) - len(out_shape) + 1
    return shape[idx] if idx >= 0 else None


def is_boundary(grad_fn) -> bool:
    """A result without channels: a scalar, or a reduction over the channel axis."""
    shape, _ = out_meta(grad_fn)
    if shape is not None and len(shape) == 0:
        return True
    if op_name(grad_fn) not in REDUCTIONS:
        return False
    in_shape = input_shape(grad_fn)
    if in_shape is None or len(in_shape) < 2:
        return shape is not None and len(shape) == 0
    return 1 in _norm_dims(_saved(grad_fn, "_saved_dim"), len(in_shape))


def _untraced_reason(grad_fn, operands, name: str, out_shape) -> str | None:
    """Interface reason for arithmetic with tensors that carry no gradient."""
    if operands is None:  # op run inside a composite function: use what autograd saved
        if not any(f is None for f, _ in grad_fn.next_functions):
            return None
        saved = [_saved(grad_fn, a) for a in ("_saved_self", "_saved_other")]
        saved = [t for t in saved if isinstance(t, torch.Tensor) and not t.requires_grad]
        if not saved:
            return f"{name} with an untraced tensor"
        operands = [(tuple(t.shape), t.dtype == torch.bool) for t in saved]
    return untraced_reason(operands, name, out_shape)


def untraced_reason(operands, name: str, out_shape) -> str | None:
    """Interface reason for operands without gradient ``[(shape, is_bool), ...]`` that
    have a channel axis in ``out_shape`` (None: they broadcast over the channels)."""
    for shape, is_bool in operands:
        if is_bool or out_shape is None:
            continue
        size = channel_size(shape, out_shape)
        if size is not None and (size != 1 or out_shape[1] == 1):
            return f"{name} with an input/physics tensor of shape {list(shape)}"
    return None


def assignment_reason(index, shape) -> str | None:
    """Interface reason for ``x[index] = value`` on a tensor of ``shape``: None unless the
    index selects part of the channel axis."""
    if shape is None or len(shape) < 2:
        return "in-place assignment of unknown shape"
    items = list(index) if isinstance(index, tuple) else [index]
    if any(i is None for i in items):
        return "in-place assignment with a new axis"
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items = items[:at] + [slice(None)] * (len(shape) - len(items) + 1) + items[at + 1:]
    if len(items) < 2 or items[1] == slice(None) or (items[0] is not Ellipsis and isinstance(items[1], slice)
                                                     and range(*items[1].indices(shape[1])) == range(shape[1])):
        return None
    return f"in-place assignment to part of the channels (index {index!r})"


def op_reason(grad_fn, operands=None) -> str | None:
    """Why an operation ties its channels to the physics (None: channel-preserving).

    ``operands``: ``[(shape, is_bool), ...]`` of the tensors without gradient the op
    was called with, when recorded (see :class:`spade.prune.graph.OperandRecorder`).
    """
    name = op_name(grad_fn)
    out_shape, dtype = out_meta(grad_fn)
    if dtype is not None and dtype.is_complex:
        return f"complex values ({name})"
    if name in POINTWISE or name in SPATIAL:
        return None
    if name == "Cat" and _negative_channel_dim(grad_fn, out_shape):
        return "Cat on a negative channel axis (torch-pruning maps axis 1 only)"
    if name in BINARY or name == "Cat":
        return _untraced_reason(grad_fn, operands, name, out_shape)
    in_shape = input_shape(grad_fn)
    if name in REDUCTIONS:
        if in_shape is None:
            return f"{name} over unknown axes"
        dims = _norm_dims(_saved(grad_fn, "_saved_dim"), len(in_shape))
        if 0 in dims and not _saved(grad_fn, "_saved_keepdim", False):
            return f"{name} over the batch axis"
        return None
    if name in VIEWS or name == "Expand":
        if in_shape is None or out_shape is None or len(in_shape) < 2 or len(out_shape) < 2:
            return f"{name} of unknown shape"
        if in_shape[:2] == out_shape[:2]:
            return None
        if name != "Expand" and len(out_shape) == 2 and in_shape[0] == out_shape[0]:
            return None  # flattening into features (torch-pruning maps the indices)
        return f"{name} {list(in_shape)} -> {list(out_shape)} moves channels"
    if name == "Permute":
        dims = _saved(grad_fn, "_saved_dims")
        return None if dims is not None and len(dims) > 1 and dims[1] == 1 else "Permute moves the channel axis"
    if name in ("Transpose", "Unsqueeze", "Squeeze", "Select", "Slice", "Split", "SplitWithSizes", "Flip", "Roll"):
        return _axis_reason(grad_fn, name, in_shape, out_shape)
    return f"{name} (channel-mixing or unknown operation)"


def _negative_channel_dim(grad_fn, shape) -> bool:
    """True when an op addresses the channel axis as a negative index, which
    torch-pruning does not recognise (it compares the saved axis with 1)."""
    dim = _signed(_saved(grad_fn, "_saved_dim"))
    return isinstance(dim, int) and shape is not None and dim < 0 and dim % len(shape) == 1


def op_axis(grad_fn) -> int | None:
    """The (non-negative) axis a cat / split / slice / unbind works on (None: unknown)."""
    dim = _signed(_saved(grad_fn, "_saved_dim"))
    shape = input_shape(grad_fn) if op_name(grad_fn) != "Cat" else out_meta(grad_fn)[0]
    if not isinstance(dim, int) or shape is None or not shape:
        return None
    return dim % len(shape)


def _axis_reason(grad_fn, name, in_shape, out_shape) -> str | None:
    ndim = len(in_shape) if in_shape is not None else (len(out_shape) if out_shape else 0)
    if name == "Transpose":
        dims = [_saved(grad_fn, "_saved_dim0"), _saved(grad_fn, "_saved_dim1")]
    elif name == "Unsqueeze":
        ndim = len(out_shape) if out_shape is not None else 0
        dims = [_saved(grad_fn, "_saved_dim")]
    elif name == "Squeeze":
        dims = _saved(grad_fn, "_saved_dim")
        if dims is None:  # squeeze(): every axis of size 1
            dims = [i for i, s in enumerate(in_shape or ()) if s == 1]
    elif name in ("Flip", "Roll"):
        dims = _saved(grad_fn, "_saved_dims")
    else:
        dims = [_saved(grad_fn, "_saved_dim")]
    if ndim == 0 or dims is None or any(d is None for d in (dims if isinstance(dims, (list, tuple)) else [dims])):
        return f"{name} over unknown axes"
    axes = _norm_dims(dims, ndim)
    if name in ("Slice", "Split", "SplitWithSizes"):  # torch-pruning maps them on axis 1 (written as 1)
        return f"{name} on a negative channel axis" if _negative_channel_dim(grad_fn, in_shape) else None
    if name in ("Flip", "Roll"):
        return f"{name} reorders channels" if 1 in axes else None
    return f"{name} on axis {axes} moves the channel axis" if min(axes) <= 1 else None


def param_use(consumer_grad_fn, in_shape: tuple[int, ...], reshaped: bool,
              param_shape: tuple[int, ...]) -> tuple[str, int | None]:
    """How a parameter (of ``param_shape``) that reaches ``consumer_grad_fn`` as a tensor
    of ``in_shape`` is used there: ``("channel", dim)``, ``("none", None)`` (no channel
    axis: broadcast or indexed), ``("follow", None)`` (look further) or ``("opaque", None)``."""
    name = op_name(consumer_grad_fn)
    if name in INDEXING:
        return "none", None
    if name in SHAPE_ONLY or name in POINTWISE:
        return "follow", None
    if name not in BINARY:
        return "opaque", None
    out_shape, _ = out_meta(consumer_grad_fn)
    if out_shape is None:
        return "opaque", None
    size = channel_size(in_shape, out_shape)
    if size is None or size == 1:
        return "none", None
    if not reshaped:
        return "channel", len(in_shape) - len(out_shape) + 1
    dims = [d for d, s in enumerate(param_shape) if s > 1]
    if len(dims) == 1 and param_shape[dims[0]] == size:
        return "channel", dims[0]
    return "opaque", None
