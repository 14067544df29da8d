"""The one multiply-accumulate counter of the suite (pruning records and the profiler).

``MacCounter`` is ``torch.utils.flop_counter.FlopCounterMode`` read as MACs = FLOPs / 2:
it counts the aten convolutions (transposed included) and matrix products of the calls
made while it is active, the physics' own operators included (e.g. block CS's sampling
matrix); FFTs, element-wise operations and normalisation are not counted.
"""
from __future__ import annotations

from torch.utils.flop_counter import FlopCounterMode

MACS_COUNTER = ("torch.utils.flop_counter.FlopCounterMode, MACs = FLOPs / 2 of one inference call: aten "
                "convolutions and matrix products, the physics' own included; FFTs and element-wise ops not counted")


class MacCounter(FlopCounterMode):
    """``with MacCounter() as c: ...``, then ``c.macs`` (see module docstring)."""

    def __init__(self):
        super().__init__(display=False)

    @property
    def macs(self) -> int:
        return int(self.get_total_flops() // 2)
