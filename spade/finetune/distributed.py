"""Distributed data-parallel runs under ``torchrun``.

``torchrun --nproc-per-node N -m spade finetune ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`setup` joins them into one process group
(``gloo`` on CPU, ``nccl`` on CUDA, one GPU per process: ``cuda:LOCAL_RANK``). Rank 0
alone writes files and prints; the others wait for it at :func:`barrier`.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..errors import require


def launched() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device."""
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        require(local < torch.cuda.device_count(),
                f"process {local} has no GPU: this machine has {torch.cuda.device_count()}; start fewer processes")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def sum_over_processes(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the processes (unchanged in a single process)."""
    if dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t)
    return t


def from_main(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's value of ``t`` in every process."""
    if dist.is_initialized():
        t = t.clone()
        dist.broadcast(t, 0)
    return t
