"""Small real problems for the training-engine tests: crops of the embedded photographs,
a tiny ISTA-Net+, block-CS physics, and running the ``spade`` command in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from spade.data import Image, load_images
from spade.models import create_model
from spade.physics import build_physics

REPO = Path(__file__).resolve().parents[1]


def crops(n: int, side: int = 66, offset: int = 0) -> list[Image]:
    """``n`` distinct ``side x side`` uint8 crops of the embedded photographs."""
    photos = load_images("embedded")
    out = []
    for i in range(n):
        img = photos[(offset + i) % len(photos)]
        top = 40 + 17 * ((offset + i) // len(photos))
        out.append(Image(f"{img.name}_{offset + i}", np.ascontiguousarray(img.pixels[top:top + side, 60:60 + side])))
    return out


def tiny_model(**changes):
    return create_model("ista-net-plus", **{"phases": 2, "channels": 4, **changes})


def cs_physics(ratio: float = 0.25):
    return build_physics({"kind": "cs", "ratio": ratio})


def write_images(folder: Path, images: list[Image]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for img in images:
        PILImage.fromarray(img.pixels).save(folder / f"{img.name}.png")
    return folder


def spade_env(extra_path: Path | None = None) -> dict:
    env = dict(os.environ)
    paths = [str(REPO)] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def spade(*args, extra_path: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m spade ARGS`` from the repository; returns the completed process."""
    return subprocess.run([sys.executable, "-m", "spade", *map(str, args)], cwd=REPO, env=spade_env(extra_path),
                          capture_output=True, text=True, timeout=timeout)
