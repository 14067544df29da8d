"""Reading the arrays an operator is built from (masks, kernels, sampling matrices).

One reader for ``.mat`` files (scipy, a named key) and ``.npy`` files (no pickles): a
missing, unreadable or corrupt file, or a missing key, is a one-line SpadeError.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SpadeError, require
from ..fileio import bench_hint, bench_path


def read_array(path, key: str, what: str, suffixes: tuple[str, ...] = (".mat", ".npy")) -> np.ndarray:
    """The array stored under ``key`` in a ``.mat`` file, or in a ``.npy`` file.

    ``what`` names the file in messages (``"mask"``, ``"kernel"``, ``"Phi"``); ``suffixes``
    the file types accepted. ``$SPADE_BENCH_DATA/...`` is a file under the benchmark root.
    """
    given, path = path, Path(bench_path(path))
    require(path.is_file(), f"{what} file {path} does not exist: give a {' or '.join(suffixes)} file"
                            + bench_hint(given))
    suffix = path.suffix.lower()
    require(suffix in suffixes, f"{what} file {path} is not a {' or '.join(suffixes)} file")
    try:
        if suffix == ".npy":
            return np.load(str(path), allow_pickle=False)
        from scipy.io import loadmat

        content = loadmat(str(path))
    except Exception as exc:  # unreadable or corrupt file
        raise SpadeError(f"cannot read {what} file {path}: {exc.__class__.__name__}: {exc}") from None
    if key not in content:
        keys = sorted(k for k in content if not k.startswith("__"))
        raise SpadeError(f"{what} file {path} has no key '{key}' (it has {keys}): pass the right file or key")
    return np.asarray(content[key])
