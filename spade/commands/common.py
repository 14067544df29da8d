"""Options and helpers shared by sub-commands."""
from __future__ import annotations

import argparse
import json
import sys

import torch

from ..errors import SpadeError, require


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def device(name: str) -> torch.device:
    """Validate a ``--device`` value."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SpadeError(f"unknown device '{name}': use cpu, cuda or cuda:N") from None
    require(dev.type in ("cpu", "cuda"), f"unsupported device '{name}': use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        require(torch.cuda.is_available(), "CUDA is not available on this machine: use --device cpu")
        require(dev.index is None or dev.index < torch.cuda.device_count(),
                f"there is no {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def emit_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=float, allow_nan=True)
    sys.stdout.write("\n")
