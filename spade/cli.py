"""The ``spade`` command: one sub-command per module in :mod:`spade.commands`.

Errors caused by input (files, names, values) print one line ``spade CMD: error: ...``
and exit with status 2; nothing is left half-written (outputs are written atomically).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from .errors import SpadeError
from .fileio import os_error
from .progress import enabled as progress_enabled

# Idle OpenMP threads sleep instead of spinning. OpenMP reads this once, when torch loads
# (the sub-commands load it, after this line). On a busy machine, threads spinning while a
# peer is preempted made `spade demo` 7x slower (22 min 49 s against 3 min 23 s at load
# average 4-6 on 2 cores, the same models and scores). A value set by the user is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: sub-command name -> module in spade.commands (each has ``add_parser`` and ``run``)
COMMANDS = {
    "models": "models",
    "import": "import_model",
    "evaluate": "evaluate",
    "train": "train",
    "finetune": "finetune",
    "prune": "prune",
    "profile": "profile",
    "report": "report",
    "export": "export",
    "quantize": "quantize",
    "run": "run",
    "demo": "demo",
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors on one line, ``spade CMD: error: ...`` (``spade CMD -h`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="spade", description="Prune, fine-tune and profile model-based (unrolled) deep networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        importlib.import_module(f".commands.{module}", __package__).add_parser(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # --no-progress (every command that runs long has it) silences every bar the command
        # draws; otherwise bars are drawn when stderr is a terminal
        quiet = getattr(args, "no_progress", False)
        with progress_enabled(False) if quiet else contextlib.nullcontext():
            return int(args.handler(args) or 0)
    except SpadeError as exc:
        print(f"spade {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's, not the code's: a file or folder that cannot be used
        print(f"spade {args.command}: error: {os_error(exc.filename or '', exc, 'cannot use')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spade {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
