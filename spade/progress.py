"""Progress bars on stderr, with one switch for everything that runs long.

Every long loop of the library (training and fine-tuning steps, timing rounds,
candidates prepared for timing, images evaluated, layers re-fitted, latency-table
entries measured) draws its bar with :func:`bar`. The bars go to ``sys.stderr`` (so
``--json`` output on stdout stays one object), show tqdm's rate and time left, and are
drawn when stderr is a terminal. :func:`enabled` switches all of them off (or on) for a
block of code (``--no-progress``, the flag of every command that runs long)::

    with progress.enabled(False):
        profile_models(...)            # no bar, whatever the callee asks for
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
from typing import Iterable

from tqdm import tqdm

#: True / False: bars on / off; None: on when stderr is a terminal (not in logs, pipes, CI)
_ON = contextvars.ContextVar("spade_progress", default=None)


@contextlib.contextmanager
def enabled(on: bool | None = True):
    """Within the block, bars are drawn (``on``), none at all (``False``), or drawn when
    stderr is a terminal (``None``, the default outside any block)."""
    token = _ON.set(None if on is None else bool(on))
    try:
        yield
    finally:
        _ON.reset(token)


def is_enabled() -> bool:
    """Whether bars are drawn here (the innermost :func:`enabled` block, else whether
    stderr is a terminal)."""
    on = _ON.get()
    if on is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())
    return on


def bar(iterable: Iterable | None = None, total: int | None = None, desc: str | None = None, show: bool = True,
        leave: bool = False, **kwargs) -> tqdm:
    """A tqdm bar on stderr; drawn only when ``show`` and the switch (:func:`enabled`) allow.
    Bars vanish when done (``leave=False``) so that log lines stay readable; use one as a
    context manager so that an error closes it before its message is printed."""
    return tqdm(iterable, total=total, desc=desc, disable=not (show and is_enabled()), file=sys.stderr,
                dynamic_ncols=True, leave=leave, **kwargs)


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``1 h 05 min``: a time span for estimates."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def write(message: str, err: bool = False) -> None:
    """Print a log line (stdout, or stderr with ``err``) without tearing a bar that is drawn."""
    stream = sys.stderr if err else sys.stdout
    tqdm.write(message, file=stream)
    stream.flush()
