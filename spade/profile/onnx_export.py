"""ONNX export and ONNX Runtime sessions for physics-bound networks.

A network bound to its physics (``forward(y) -> x``, see :class:`~spade.profile.backends.Bound`)
is captured with ``torch.export`` and translated by the dynamo-based ONNX exporter, the
one that handles complex FFTs (MRI). That exporter has no complex-valued translation of
``aten.select`` and ``aten.unsqueeze``; :data:`COMPLEX_SAFE` rewrites both with ops it
does translate (``slice`` + ``squeeze``, ``view``) before export — an exact rewrite.
Input shapes are fixed to the example's.

The module runs once eagerly before it is captured, so that lazy initialisations (LISTA
sets its weights from the physics at its first call) happen in PyTorch, not in the
trace. A network that no static graph can hold (a fixed-point solver that stops on a
data-dependent test) says why in a class attribute ``onnx_unsupported``; it and every
exporter failure end in one :class:`~spade.errors.SpadeError` line.

Needs the ``onnx`` extra (``onnx``, ``onnxruntime``, ``onnxscript``).
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import SpadeError

INPUT, OUTPUT = "y", "x"
aten = torch.ops.aten


def _select(x: torch.Tensor, dim: int, index: int) -> torch.Tensor:
    dim = dim % x.dim()
    stop = index + 1 if index != -1 else None
    return aten.slice.Tensor(x, dim, index, stop).squeeze(dim)


def _unsqueeze(x: torch.Tensor, dim: int) -> torch.Tensor:
    dim = dim % (x.dim() + 1)
    shape = list(x.shape)
    shape.insert(dim, 1)
    return aten.view.default(x, shape)


#: decompositions applied before the ONNX translation (see module docstring)
COMPLEX_SAFE = {aten.select.int: _select, aten.unsqueeze.default: _unsqueeze}


def require_onnx():
    """Import and return ``(onnx, onnxruntime)``, or say how to install them."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (the exporter's translation library)
    except ImportError as exc:
        raise SpadeError(f"ONNX needs the 'onnx' extra ({exc.name} is missing): pip install 'spade[onnx]'") from None
    return onnx, onnxruntime


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress lines and warnings (failures still raise)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def failure_reason(exc: BaseException) -> str:
    """One line saying why an export or a backend failed (the exporter's summary when it has one)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"<class '[\w.]*?(\w+)'>: (.+)", text)
    line = f"{found.group(1)}: {found.group(2)}" if found else \
        f"{type(exc).__name__}: {next((s for s in text.splitlines() if s.strip()), '')}"
    return line.strip()[:300]


def unsupported(module: nn.Module) -> str | None:
    """Why ``module`` (or a module inside it) cannot be exported, as it declares it."""
    return next((reason for m in module.modules() if (reason := getattr(m, "onnx_unsupported", None))), None)


def export_onnx(module: nn.Module, example: torch.Tensor):
    """ONNX ``ModelProto`` of ``module(example)`` (one input ``y``, one output ``x``)."""
    require_onnx()
    reason = unsupported(module)
    if reason:
        raise SpadeError(f"cannot export to ONNX: {reason}")
    module = module.eval()
    with torch.inference_mode():
        module(example)  # lazy initialisations run in PyTorch, not in the trace
    try:
        with _quiet():
            program = torch.export.export(module, (example,), strict=False)
            program = program.run_decompositions(COMPLEX_SAFE)
            onnx_program = torch.onnx.export(program, (example,), dynamo=True, input_names=[INPUT],
                                             output_names=[OUTPUT], verbose=False, optimize=True)
    except SpadeError:
        raise
    except Exception as exc:  # the exporter's long report, summed up in one line
        raise SpadeError(f"cannot export to ONNX: {failure_reason(exc)}") from None
    return onnx_program.model_proto


def session(model_proto, threads: int, device: torch.device):
    """An ONNX Runtime session with ``threads`` intra-op threads and no spinning (idle
    runtime threads would steal the cores from whatever is timed next)."""
    _, ort = require_onnx()
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise SpadeError("this onnxruntime build has no CUDA execution provider: install onnxruntime-gpu")
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model_proto.SerializeToString(), options, providers=providers)


def run_session(sess, y: torch.Tensor) -> torch.Tensor:
    """Run ``sess`` on ``y``; the output as a CPU tensor."""
    out = sess.run(None, {INPUT: np.ascontiguousarray(y.detach().cpu().numpy())})[0]
    return torch.from_numpy(out)
