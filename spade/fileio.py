"""Safe file output: nothing half-written, nothing destroyed that SPADE did not create.

* :func:`atomic_path` writes next to the target and moves into place on success; it
  never deletes a non-empty folder unless the caller says the folder is its own output
  (``replace_dir=True``, e.g. a report folder it checked), and temporaries left by a
  killed process are removed by the next writer of the same path.
* :func:`check_output` is the rule for a user's ``--out``: not empty, not ``.``, not an
  existing folder, not one of the inputs, not an existing file unless ``--force``.
* :func:`output_lock` keeps a second process from writing the same output at once.
* :func:`benchmark_root` / :func:`bench_path`: where the benchmark data live
  (``$SPADE_BENCH_DATA``), and recipe paths written ``$SPADE_BENCH_DATA/...``.

Every ``OSError`` (read-only, full disk, missing parent, a file where a folder is
needed) becomes a one-line :class:`~spade.errors.SpadeError` naming the path.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import SpadeError, require

#: the environment variable naming the benchmark data root
BENCH_ENV = "SPADE_BENCH_DATA"
#: how a recipe names a file under that root: ``$SPADE_BENCH_DATA/ista_net_plus/cs25/phi_0_25_1089.mat``
BENCH_PREFIX = f"${BENCH_ENV}/"
#: where the README says how to get the benchmark data and lay them out
BENCH_README = "README.md, section 'Benchmark data'"

#: infix of the temporaries of :func:`atomic_path`: ``.NAME.spade-tmp-PID-RANDOM``
TMP_TAG = ".spade-tmp-"

_ADVICE = {errno.EROFS: "the file system is read-only: choose a writable location",
           errno.EACCES: "permission denied: choose a location you can write to",
           errno.EPERM: "permission denied: choose a location you can write to",
           errno.ENOSPC: "the disk is full: free some space or choose another location",
           errno.EDQUOT: "the disk quota is exceeded: free some space or choose another location",
           errno.EFBIG: "the file is larger than this system allows: free space or raise the limit",
           errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
           errno.EISDIR: "it is a folder: give a file name",
           errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
           errno.ENOENT: "a folder on the way does not exist: create it or choose another path"}


def os_error(path: str | os.PathLike, exc: OSError, action: str = "cannot write") -> SpadeError:
    """A one-line :class:`SpadeError` for ``exc`` raised while working on ``path``."""
    advice = _ADVICE.get(exc.errno, exc.strerror or type(exc).__name__)
    return SpadeError(f"{action} {path}: {advice}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(target: Path) -> None:
    """Remove temporaries of ``target`` whose writing process no longer exists."""
    pattern = re.compile(re.escape(f".{target.name}{TMP_TAG}") + r"(\d+)-")
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            found = pattern.match(entry.name)
            if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
                shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, replace_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success.

    Works for files and for folders (the caller creates whichever it needs at the yielded
    path). On any exception the temporary is removed and ``path`` is untouched. An
    existing file is replaced; an existing folder only when empty or ``replace_dir``.
    """
    target = Path(path)
    require(str(path) != "" and target.name not in ("", ".", ".."), f"'{path}' is not a file name: give one")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_TAG}{os.getpid()}-", dir=target.parent))
    except FileExistsError:
        raise SpadeError(f"cannot write {path}: a part of the path is a file, not a folder") from None
    except OSError as exc:
        raise os_error(path, exc) from None
    tmp = tmp_dir / target.name
    try:
        yield tmp
        require(tmp.exists(), f"nothing was written to {target}")
        if target.is_dir() and not target.is_symlink():
            _clear_dir(target, replace_dir)
        os.replace(tmp, target)
    except OSError as exc:
        raise os_error(path, exc) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _clear_dir(target: Path, replace_dir: bool) -> None:
    """Make way for a new ``target`` where a folder stands (see :func:`atomic_path`)."""
    if not replace_dir:
        try:
            target.rmdir()
        except OSError:
            raise SpadeError(f"{target} is an existing folder: SPADE does not replace it; "
                             "choose another path or move it away") from None
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_TAG}{os.getpid()}-", dir=target.parent))
    os.replace(target, aside / "old")
    shutil.rmtree(aside, ignore_errors=True)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The content of ``path``; an OS error becomes a one-line :class:`SpadeError`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise os_error(path, exc, "cannot read") from None


def save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, through a Python file object so that
    a full disk raises ``OSError`` (converted to one line), not torch's ``RuntimeError``."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_output(path: str | os.PathLike, force: bool = False, inputs: Iterable[str | os.PathLike | None] = (),
                 what: str = "--out") -> Path:
    """Validate a user's output file path before any work; returns it as a ``Path``.

    Refused: an empty name, ``.``/``..``, an existing folder, one of ``inputs`` (the same
    file under any name), a parent that is a file, and an existing file unless ``force``.
    """
    text = str(path)
    out = Path(text)
    require(text.strip() != "" and out.name not in ("", ".", "..") and not text.endswith(os.sep),
            f"{what} '{text}' is not a file name: give a file path such as out/model.spade")
    for given in inputs:
        if given is not None and Path(given).exists() and out.exists():
            require(not out.samefile(given), f"{what} {text} is an input of this command: write to another file")
    require(not out.is_dir(), f"{what} {text} is an existing folder: give a file path (SPADE never replaces a folder)")
    require(force or not out.exists(), f"{what} {text} exists: add --force to replace it, or choose another path")
    parent = next((p for p in out.parents if p.exists()), Path("."))
    require(parent.is_dir(), f"{what} {text}: {parent} is a file, not a folder: choose another path")
    return out


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Validate a user's output folder: a folder (new or existing), never a file."""
    text = str(path)
    require(text.strip() != "", f"{what} is empty: give a folder path")
    out = Path(text)
    require(not out.exists() or out.is_dir(), f"{what} {text} is a file: give a folder path")
    parent = next((p for p in out.parents if p.exists()), Path("."))
    require(parent.is_dir(), f"{what} {text}: {parent} is a file, not a folder: choose another path")
    return out


def _lock_fd(path: str | os.PathLike, lock: Path) -> int:
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except FileExistsError:
        raise SpadeError(f"cannot write {path}: a part of the path is a file, not a folder") from None
    except OSError as exc:
        raise os_error(lock, exc, "cannot create the lock file") from None


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold ``PATH.lock`` (an exclusive ``flock``) while a command writes ``path``.

    A second process asking for the same output gets a one-line :class:`SpadeError`; the
    lock is released when the holder exits, however it exits (the kernel drops it), and
    the lock file (and any parent folder it had to create, if still empty) is removed on a
    normal exit.
    """
    target = Path(path)
    lock = target.with_name(target.name + ".lock")
    created = [p for p in target.parents if not p.exists()]  # removed again if still empty at the end
    while True:
        fd = _lock_fd(path, lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SpadeError(f"{path} is being written by process {holder} ({lock}): wait for it to finish "
                             "or choose another --out") from None
        with contextlib.suppress(OSError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # the lock file still at the path: ours (a finished holder removes its file)
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield lock
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()


def benchmark_root() -> Path:
    """The benchmark data root: ``$SPADE_BENCH_DATA``, else ``../shared/data`` beside the checkout."""
    env = os.environ.get(BENCH_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def bench_path(value: str | os.PathLike) -> str:
    """``value`` with a leading ``$SPADE_BENCH_DATA/`` replaced by :func:`benchmark_root`."""
    text = str(value)
    return str(benchmark_root() / text[len(BENCH_PREFIX):]) if text.startswith(BENCH_PREFIX) else text


def bench_hint(value: str | os.PathLike) -> str:
    """For a missing file named ``$SPADE_BENCH_DATA/...``: where to get it (else empty)."""
    if not str(value).startswith(BENCH_PREFIX):
        return ""
    state = "set" if os.environ.get(BENCH_ENV) else f"unset, so {benchmark_root()}"
    return f" ({BENCH_ENV} is {state}; see {BENCH_README} for where to get the data)"
