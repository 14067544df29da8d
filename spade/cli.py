"""The ``spade`` command: one sub-command per module in :mod:`spade.commands`.

Errors caused by input (files, names, values) print one line ``spade CMD: error: ...``
and exit with status 2; nothing is left half-written (outputs are written atomically).
Only the module of the sub-command named on the command line is imported, so that
``spade --help``, ``spade --version`` and a mistyped command answer without loading torch
and the libraries behind the commands.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from importlib import metadata

from . import __version__
from .errors import SpadeError
from .fileio import os_error
from .progress import enabled as progress_enabled

# Idle OpenMP threads sleep instead of spinning. OpenMP reads this once, when torch loads
# (the sub-commands load it, after this line). On a busy machine, threads spinning while a
# peer is preempted made `spade demo` 7x slower (22 min 49 s against 3 min 23 s at load
# average 4-6 on 2 cores, the same models and scores). A value set by the user is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: sub-command name -> (module in spade.commands with ``add_arguments(parser)``, one-line summary)
COMMANDS = {
    "models": ("models", "list model families, sharing modes and parameter counts"),
    "import": ("import_model", "convert official pretrained weights into a SPADE model file"),
    "evaluate": ("evaluate", "evaluate a model file on test images"),
    "train": ("train", "train a model from scratch with a TOML recipe"),
    "finetune": ("finetune", "fine-tune a (pruned) model with a strategy"),
    "prune": ("prune", "remove channels (and iterations) from a model, keeping the physics intact"),
    "profile": ("profile", "time models interleaved and report speedups, MACs, parameters and memory"),
    "report": ("report", "write a speed/quality report (CSV, Markdown, figures, HTML) from a run directory"),
    "export": ("export", "export a model with its physics to ONNX, verified against PyTorch"),
    "quantize": ("quantize", "post-training static INT8 quantization of the priors (ONNX Runtime, CPU)"),
    "run": ("run", "run a recipe: models, prune sweep, fine-tuning, evaluation, profile, report"),
    "demo": ("demo", "run the demo pipeline on the embedded images (a few minutes on CPU)"),
}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors on one line, ``spade CMD: error: ...`` (``spade CMD -h`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def version() -> str:
    """The installed package's version; ``spade.__version__`` when it is not installed."""
    try:
        return metadata.version("spade")
    except metadata.PackageNotFoundError:
        return __version__


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``spade`` parser; only ``command``'s sub-parser gets its arguments (and its
    module imported, by name: the lazy loading that keeps ``spade --help`` fast)."""
    parser = OneLineParser(
        prog="spade", description="Prune, fine-tune and profile model-based (unrolled) deep networks.")
    parser.add_argument("--version", action="version", version=f"spade {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == command:
            importlib.import_module(f".commands.{module}", __package__).add_arguments(p)
    return parser


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops a command as Ctrl-C does: locks released, temporaries removed


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush meets no closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # stdout is not a file (e.g. captured)
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # the top-level options take no value: the first other word names the sub-command
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()  # the only one that may set handlers
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        # --no-progress (every command that runs long has it) silences every bar the command
        # draws; otherwise bars are drawn when stderr is a terminal
        quiet = getattr(args, "no_progress", False)
        with progress_enabled(False) if quiet else contextlib.nullcontext():
            return int(args.handler(args) or 0)
    except SpadeError as exc:
        print(f"spade {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (`| head`): what was asked is done
        _silence_stdout()
        return 141
    except OSError as exc:  # the machine's, not the code's: a file or folder that cannot be used
        print(f"spade {args.command}: error: {os_error(exc.filename or '', exc, 'cannot use')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        how = "; run the same command with --resume to continue where it stopped" if "resume" in args else ""
        print(f"spade {args.command}: interrupted{how}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
