"""Latency (interleaved ``torch.utils.benchmark``), cost (MACs, parameters, peak memory),
verified backends (eager, channels-last, torch.compile, ONNX Runtime) and the allocator
setting every CPU timing depends on."""
from .allocator import AllocatorState, configure as configure_allocator, page_faults
from .backends import BACKENDS, TOLERANCE, Bound, register_backend
from .cost import forward_cost
from .latency import Timing, measure_interleaved, ratio
from .onnx_export import export_onnx
from .profiler import profile_models, role_of

__all__ = ["AllocatorState", "configure_allocator", "page_faults", "BACKENDS", "TOLERANCE", "Bound",
           "register_backend", "forward_cost", "Timing", "measure_interleaved", "ratio", "export_onnx",
           "profile_models", "role_of"]
