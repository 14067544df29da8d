"""Training checkpoints: everything a killed run needs to continue exactly where it stopped.

A checkpoint is a ``torch.save`` of a plain dict, read back with
``torch.load(weights_only=True)``::

    {"format": "spade-checkpoint", "version": 1,
     "step": completed steps,
     "model", "optimizer", "scheduler": state dicts,
     "rng": {"torch": CPU generator state, "cuda": [per-GPU states]},
     "best": {"state": weights of the best validation or None},
     "run": JSON text {"fingerprint": settings the resumed run must share,
                       "history": ..., "best_psnr", "best_step", "bad_validations"}}

It is written atomically (:func:`spade.fileio.atomic_path`): a run killed while writing
leaves the previous checkpoint in place.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import SpadeError, require
from ..fileio import save_torch

FORMAT = "spade-checkpoint"
VERSION = 1


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, step: int, model, optimizer, scheduler, best_state, run: dict) -> None:
    blob = {"format": FORMAT, "version": VERSION, "step": int(step),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
            "best": {"state": best_state}, "run": json.dumps(run)}
    save_torch(blob, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (``weights_only=True``); ``blob["run"]`` is decoded."""
    path = Path(path)
    require(path.is_file(), f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        require(isinstance(blob, dict) and blob.get("format") == FORMAT and blob.get("version") == VERSION,
                f"{path} is not a SPADE training checkpoint (format {FORMAT} v{VERSION})")
        blob["run"] = json.loads(blob["run"])
    except SpadeError:
        raise
    except Exception as exc:
        raise SpadeError(f"cannot read checkpoint {path}: corrupt or not a checkpoint "
                         f"({exc.__class__.__name__}); delete it to start afresh") from None
    return blob


def fingerprint_differences(saved: dict, current: dict) -> list[str]:
    """Settings that differ between a checkpoint's run and the run resuming it."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
