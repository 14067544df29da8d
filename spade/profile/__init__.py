"""Latency (paired interleaved rounds, wall and CPU time, confidence intervals), cost
(MACs, parameters, peak memory), verified backends (eager, channels-last, torch.compile, ONNX Runtime) and the allocator
setting every CPU timing depends on."""
from .allocator import AllocatorState, configure as configure_allocator, page_faults
from .backends import BACKENDS, TOLERANCE, Bound, register_backend
from .cost import forward_cost
from .latency import PairedRounds, Timing, measure_interleaved
from .onnx_export import export_onnx
from .profiler import profile_models, role_of
from .stats import Interval, median_interval, paired_speedup
from .trust import Verdict, measure_trusted

__all__ = ["AllocatorState", "configure_allocator", "page_faults", "BACKENDS", "TOLERANCE", "Bound",
           "register_backend", "forward_cost", "PairedRounds", "Timing", "measure_interleaved",
           "export_onnx", "profile_models", "role_of", "Interval", "median_interval", "paired_speedup", "Verdict",
           "measure_trusted"]
