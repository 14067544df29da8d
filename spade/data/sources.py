"""Where images come from: the embedded default, a user folder, the benchmark sets.

* **embedded** — real photographs shipped inside scikit-image's wheel (``embedded-train`` /
  ``embedded-test``: a fixed disjoint split of them), and **embedded-mri**
  — a real MR slice shipped with matplotlib (``s1045.ima.gz``, 256x256) plus
  scikit-image's Shepp-Logan phantom; nothing is downloaded.
* a **folder** of png/tif/jpg/bmp/npy files (sorted by name);
* the **benchmark sets** (``set11``, ``bsd68``, ``bsd100``, ``urban100``, ``brain50``)
  under one root: ``$SPADE_BENCH_DATA``, by default ``../shared/data`` beside the
  project checkout (a missing set is named with where to get it: README, "Benchmark
  data"); a folder may be written ``$SPADE_BENCH_DATA/...``.

:func:`load_images` accepts any of these names or a folder path.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import SpadeError, require
from ..fileio import BENCH_ENV, BENCH_README, bench_path, benchmark_root
from .images import EXTENSIONS, Image, read_image, rgb_to_y

#: scikit-image's bundled photographs (file names inside ``skimage.data.data_dir``)
EMBEDDED_PHOTOS = ("camera.png", "astronaut.png", "coffee.png", "chelsea.png", "coins.png", "moon.png",
                   "rocket.jpg", "motorcycle_left.png", "brick.png", "gravel.png", "grass.png",
                   "hubble_deep_field.jpg")

#: a fixed split of the photographs: ``embedded-test`` (these) and ``embedded-train`` (the rest)
EMBEDDED_TEST = ("camera.png", "coffee.png", "brick.png")

BENCHMARK_SETS = {
    "set11": "images/Set11",
    "bsd68": "images/BSD68",
    "bsd100": "images/BSD100",
    "urban100": "images/Urban100",
    "brain50": "mri/brain50",
}

ENV_VAR = BENCH_ENV

#: where a user gets each benchmark set (the README's section says more)
BENCHMARK_ORIGINS = {
    "set11": "Set11 ships in data/Set11 of the official ISTA-Net-PyTorch release "
             "(github.com/jianzhangcs/ISTA-Net-PyTorch)",
    "brain50": "brain50 ships in data/BrainImages_test of the official ISTA-Net-PyTorch release "
               "(github.com/jianzhangcs/ISTA-Net-PyTorch)",
    "bsd68": "BSD68 is the standard 68-image Berkeley test set of denoising and CS papers",
    "bsd100": "BSD100 is the standard 100-image Berkeley test set of super-resolution benchmarks",
    "urban100": "Urban100 is the standard super-resolution test set of Huang et al. (CVPR 2015)",
}


def benchmark_path(name: str) -> Path:
    """Folder of a benchmark set (``set11``, ``bsd68``, ...) or of a file under the root."""
    root = benchmark_root()
    rel = BENCHMARK_SETS.get(name.lower(), name)
    path = root / rel
    origin = BENCHMARK_ORIGINS.get(name.lower())
    state = "set" if os.environ.get(ENV_VAR) else "unset"
    require(path.exists(), f"benchmark data '{name}' not found at {path}: "
                           + (f"{origin}; " if origin else "")
                           + f"put it in {rel}/ under one folder and set {ENV_VAR} to that folder "
                             f"(now {state}; see {BENCH_README})")
    return path


def _skimage_dir() -> Path:
    import skimage.data

    return Path(skimage.data.data_dir)


def embedded_photos(channels: str = "y") -> list[Image]:
    """The scikit-image photographs (grey or luminance unless ``channels="rgb"``)."""
    base = _skimage_dir()
    return [read_image(base / name, channels) for name in EMBEDDED_PHOTOS]


def embedded_mri() -> list[Image]:
    """Real MR slice ``s1045`` (matplotlib sample data, 256x256, 8-bit range) and the
    Shepp-Logan phantom (scikit-image), both uint8 grey."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("s1045.ima.gz") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # some matplotlib versions hand back the compressed bytes
        raw = gzip.decompress(raw)
    slice_ = np.frombuffer(raw, dtype=">u2").reshape(256, 256)
    require(int(slice_.max()) <= 255, "matplotlib's sample MR slice s1045 is not in the 8-bit range")
    slice_ = slice_.astype(np.uint8)
    phantom = read_image(_skimage_dir() / "phantom.png", "rgb").pixels
    return [Image("s1045", slice_), Image("shepp_logan", rgb_to_y(phantom))]


def folder_images(path: str | Path, channels: str = "y") -> list[Image]:
    """All images of a folder, sorted by file name."""
    path = Path(path)
    require(path.is_dir(), f"data folder {path} does not exist")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    require(len(files) > 0, f"data folder {path} holds no images ({', '.join(EXTENSIONS)})")
    return [read_image(p, channels) for p in files]


def load_images(source: str | Path, channels: str = "y") -> list[Image]:
    """Images from ``"embedded"`` (or its fixed split ``"embedded-train"`` / ``"embedded-test"``),
    ``"embedded-mri"``, a benchmark set name, or a folder."""
    key = bench_path(source)
    if key == "embedded":
        return embedded_photos(channels)
    if key == "embedded-mri":
        return embedded_mri()
    if key in ("embedded-train", "embedded-test"):
        test = key == "embedded-test"
        return [img for img, name in zip(embedded_photos(channels), EMBEDDED_PHOTOS)
                if (name in EMBEDDED_TEST) == test]
    if key.lower() in BENCHMARK_SETS:
        return folder_images(benchmark_path(key), channels)
    path = Path(key)
    if path.is_dir():
        return folder_images(path, channels)
    raise SpadeError(f"data source '{source}' is neither a folder nor one of "
                     f"{['embedded', 'embedded-train', 'embedded-test', 'embedded-mri', *BENCHMARK_SETS]}")
