"""The C allocator under CPU timings: detected, controlled, and stated.

glibc's ``malloc`` serves large blocks (above ``M_MMAP_THRESHOLD``: 128 KiB at start,
adjusted dynamically up to 32 MiB) with ``mmap`` and unmaps them on ``free``; the top
of the heap above ``M_TRIM_THRESHOLD`` is returned to the system too. An image CNN
allocates activations of several MiB at every call, so each call maps fresh pages and
takes a page fault on every one of them: ~200,000 faults per forward pass of ISTA-Net+
on a 264x264 image. Timings then measure the kernel and the allocator's history as
much as the model.

:func:`configure` with ``"pinned"`` raises both thresholds with ``mallopt`` (in the
running process, before the first large allocation matters) so that freed activations
stay in the heap and are reused; ``"default"`` leaves glibc as it is. jemalloc or
tcmalloc loaded with ``LD_PRELOAD`` are detected and left alone (they keep freed memory
themselves). :func:`page_faults` counts the process's minor page faults so a profile can
show that warm calls no longer fault. The state is process-wide and cannot be undone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from dataclasses import asdict, dataclass, field

from ..errors import SpadeError

MODES = ("pinned", "default")

#: ``mallopt`` parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: mmap thresholds tried in order: glibc releases that cap the threshold (at 32 MiB on
#: 64-bit, HEAP_MAX_SIZE / 2) refuse the first one and accept the second
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
TRIM_THRESHOLD = 2 ** 31 - 1
#: environment variables glibc reads at start-up
GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
             "GLIBC_TUNABLES")
PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")


@dataclass
class AllocatorState:
    """What the profiler ran with: allocator ``name``, ``mode`` and the settings applied."""

    name: str  #: glibc, jemalloc, tcmalloc, mimalloc or the platform's allocator
    mode: str  #: pinned, default, environment (glibc variables set), preloaded, uncontrolled
    settings: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.mode == "pinned":
            return (f"glibc malloc pinned with mallopt: mmap threshold {self.settings['mmap_threshold'] >> 20} MiB, "
                    f"trim threshold {self.settings['trim_threshold'] >> 20} MiB (freed activations are reused)")
        if self.mode == "default":
            return "glibc malloc with its defaults (large activations are mmap'ed and unmapped at every call)"
        if self.mode == "environment":
            return "glibc malloc set by the environment: " + ", ".join(f"{k}={v}" for k, v in self.settings.items())
        if self.mode == "preloaded":
            return f"{self.name} (LD_PRELOAD), left as it is"
        return f"{self.name} allocator, not controlled by SPADE"

    def to_json(self) -> dict:
        return {**asdict(self), "description": self.describe()}


_STATE: AllocatorState | None = None


def detect() -> str:
    """Name of the allocator serving ``malloc`` in this process."""
    maps = ""
    try:
        with open("/proc/self/maps") as fh:
            maps = fh.read()
    except OSError:
        maps = os.environ.get("LD_PRELOAD", "")
    for name in PRELOADED:
        if f"lib{name}" in maps:
            return name
    libc = platform.libc_ver()[0]
    return libc or platform.system().lower() or "unknown"


def _mallopt(param: int, value: int) -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc.mallopt(param, value) == 1


def configure(mode: str = "pinned") -> AllocatorState:
    """Apply ``mode`` (``pinned`` or ``default``) to this process; returns the state.

    Raises :class:`SpadeError` for ``default`` once the process has been pinned (the
    thresholds cannot be given back to glibc's dynamic rule).
    """
    global _STATE
    if mode not in MODES:
        raise SpadeError(f"unknown allocator mode '{mode}': choose one of {list(MODES)}")
    if _STATE is not None and _STATE.mode == "pinned":
        if mode == "default":
            raise SpadeError("the allocator of this process is already pinned: measure '--allocator default' "
                             "in a fresh process")
        return _STATE
    name = detect()
    if name in PRELOADED:
        _STATE = AllocatorState(name, "preloaded", {"LD_PRELOAD": os.environ.get("LD_PRELOAD", "")})
    elif name != "glibc":
        _STATE = AllocatorState(name, "uncontrolled")
    else:
        env = {k: os.environ[k] for k in GLIBC_ENV if k in os.environ}
        _STATE = AllocatorState("glibc", "environment", env) if env else AllocatorState("glibc", "default")
        if mode == "pinned":
            mmap = next((v for v in MMAP_THRESHOLDS if _mallopt(M_MMAP_THRESHOLD, v)), None)
            trim = TRIM_THRESHOLD if _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) else None
            if mmap is None or trim is None:
                raise SpadeError("glibc refused mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD): run with "
                                 "--allocator default, or preload jemalloc")
            _STATE = AllocatorState("glibc", "pinned", {"mmap_threshold": mmap, "trim_threshold": trim, **env})
    return _STATE


def page_faults() -> int | None:
    """Minor page faults of this process so far (None where the platform does not say)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
