"""Cost of one forward pass: multiply-accumulates, parameters and peak tensor memory.

* **MACs** — :class:`spade.macs.MacCounter` (``MACS_COUNTER``), the counter the pruner
  uses too.
* **parameters** — of the network (shared parameters once); physics tensors are
  buffers and not counted.
* **peak memory** — the peak total size of the tensor storages that aten ops create
  during one eager forward (activations and the output), tracked by a dispatch mode
  (:class:`LiveTensors`) on any device. Weights, the input and buffers that kernels
  allocate internally (e.g. oneDNN scratch) are not included, nor is Python's or the
  allocator's own memory: it is the model's activation footprint, comparable between a
  model and its pruned versions.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..macs import MacCounter

PEAK_MEMORY = "peak of tensor storage created by aten ops in one eager forward (activations + output; " \
              "weights, input and kernel scratch excluded), tracked by a TorchDispatchMode"


class LiveTensors(TorchDispatchMode):
    """Tracks the storages created by aten ops while active; ``peak`` in bytes.

    A storage counts from the op that creates it (one not among the op's tensor
    arguments — views and in-place results share their input's) until it is freed.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[StorageWeakRef, int] = {}
        self.current = 0
        self.peak = 0

    def _sweep(self) -> None:
        dead = [ref for ref in self.live if ref.expired()]
        for ref in dead:
            self.current -= self.live.pop(ref)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._sweep()
        inputs = {StorageWeakRef(t.untyped_storage()) for t in tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ref = StorageWeakRef(storage)
                if ref not in inputs and ref not in self.live:
                    self.live[ref] = storage.nbytes()
                    self.current += self.live[ref]
        self.peak = max(self.peak, self.current)
        return out


@torch.inference_mode()
def forward_cost(forward: Callable[[], object]) -> dict[str, float]:
    """``{"macs", "peak_mem_mb"}`` of one call of ``forward`` (eager)."""
    with MacCounter() as macs, LiveTensors() as memory:
        out = forward()
    del out
    return {"macs": macs.macs, "peak_mem_mb": memory.peak / 2 ** 20}
