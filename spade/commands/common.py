"""Options and helpers shared by sub-commands."""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import sys

import torch

from ..errors import SpadeError, require
from ..fileio import check_output, check_output_dir, output_lock
from ..progress import write


def help_description(docstring: str) -> str:
    """A command module's docstring after its first paragraph, as ``--help`` text: Sphinx
    roles and literals (:mod:`x`, ``x``) become the plain words."""
    return re.sub(r"(?::\w+:)?`+~?([^`]+?)`+", r"\1", docstring.split("\n\n", 1)[1])


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no bars (they go to stderr, with the time left); ``spade.cli`` applies it."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (on stderr)")


def log_line(message: str) -> None:
    """A command's progress line on stderr (stdout keeps the result, e.g. the --json object)."""
    write(message, err=True)


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replace an existing output file")


def writes_output(attr: str = "out", inputs: tuple[str, ...] = ("model",), folder=None):
    """Decorate a command's ``run(args)``: check ``args.<attr>`` before any work and hold
    its lock while the command runs (see :func:`spade.fileio.check_output`).

    ``inputs``: the attributes naming input files the output must differ from; ``folder``:
    for a folder output, ``folder(args)`` gives its path (``args.<attr>`` or a default; None:
    the command writes no folder this time, nothing to lock).
    Under ``torchrun`` only rank 0, which writes, holds the lock.
    """
    def wrap(run):
        @functools.wraps(run)
        def guarded(args):
            if folder is not None:
                path = folder(args)
                if path is None:
                    return run(args)
                out = check_output_dir(path, f"--{attr}")
            else:
                out = check_output(getattr(args, attr), force=getattr(args, "force", False),
                                   inputs=[getattr(args, a, None) for a in inputs], what=f"--{attr}")
            if int(os.environ.get("RANK", "0")) != 0:
                return run(args)
            with output_lock(out):
                return run(args)
        return guarded
    return wrap


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
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number >= 0")
    return value


def positive_float(text: str) -> float:
    value = nonneg_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: a longer one keeps its start and its end
    around '...' (never cut without saying so)."""
    if len(text) <= width:
        return text
    head = (width - 3) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head):]


def emit_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=float, allow_nan=True)
    sys.stdout.write("\n")
