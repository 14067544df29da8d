"""The example-input options of the commands that run a model on one (profile, export)."""
from __future__ import annotations

from ..profile.backends import TOLERANCE


def add_input_options(p) -> None:
    """``--batch``, ``--side`` (the example input) and ``--tolerance`` (its check against eager)."""
    p.add_argument("--batch", type=int, default=1, help="batch size of the example input (default 1)")
    p.add_argument("--side", type=int, help="image side for size-free operators (default: CS 264, SR 256)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help=f"max |output - eager| / max(1, max |eager|) (default {TOLERANCE:g})")
