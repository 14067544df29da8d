"""Train/test splits that are checked disjoint by content, not only by name."""
from __future__ import annotations

import hashlib

import numpy as np

from ..errors import require
from .images import Image


def fingerprint(image: Image) -> str:
    """SHA-1 of an image's pixels (luminance, uint8-quantised), so the same picture stored
    under two names or two formats is recognised."""
    a = np.asarray(image.pixels)
    if a.ndim == 3:
        a = (0.299 * a[0] + 0.587 * a[1] + 0.114 * a[2]).astype(a.dtype)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a * 255), 0, 255).astype(np.uint8)
    return hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()


def check_disjoint(train: list[Image], test: list[Image]) -> None:
    """Raise if any test image also appears (same pixels) in the training images."""
    seen = {fingerprint(img): img.name for img in train}
    shared = [f"{img.name} (= {seen[fp]})" for img in test if (fp := fingerprint(img)) in seen]
    require(not shared, f"training and test images overlap: {', '.join(shared[:5])}"
                        + (" ..." if len(shared) > 5 else "") + "; choose disjoint sets")


def split(images: list[Image], n_test: int, seed: int = 0) -> tuple[list[Image], list[Image]]:
    """A seeded random split into ``len(images) - n_test`` training and ``n_test`` test
    images (each list keeps the original order), checked disjoint."""
    require(0 < n_test < len(images),
            f"cannot hold out {n_test} of {len(images)} images: give 0 < n_test < {len(images)}")
    order = np.random.default_rng(seed).permutation(len(images))
    test_idx = set(order[:n_test].tolist())
    train = [img for i, img in enumerate(images) if i not in test_idx]
    test = [img for i, img in enumerate(images) if i in test_idx]
    check_disjoint(train, test)
    return train, test
