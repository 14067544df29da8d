"""The conditions a timing was taken under: hardware and software versions."""
from __future__ import annotations

import os
import platform

import torch


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> str:
    """One line naming the machine that ran the timings."""
    cpu = f"{cpu_name()}, {os.cpu_count()} logical CPUs"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (host: {cpu})"
    return cpu


def load_average() -> float | None:
    """The system's 1-minute load average (None where the platform does not say): above
    the number of CPUs, other processes compete with the timed one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def versions() -> dict[str, str]:
    """Versions of the software that produced a number."""
    out = {"torch": torch.__version__, "python": platform.python_version()}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out
