"""The validation images a model file names, so that it can be scored on them again.

``spade train`` and ``spade finetune`` record, with the run, ``val`` (the source of the
images that validated it: a folder, a benchmark set, 'embedded') and ``val_images`` (their
names); they are disjoint from the images the run trained on. A file whose training
record predates ``val`` validated on images held out of its training ``data``.
"""
from __future__ import annotations

from ..data import Image, load_images
from ..errors import require


def validation_record(source: str | None, images: list[Image] | None) -> dict:
    """The record fields naming the validation images (none: a run without validation)."""
    return {"val": source if images else None, "val_images": [img.name for img in images or []]}


def validation_images(spec: dict, channels: str) -> tuple[str, list[Image]] | None:
    """``(source, images)`` that validated the latest run of a model file (its fine-tuning,
    else its training), or None when that run had no validation images."""
    record = spec.get("finetuning") or spec.get("training") or {}
    names = record.get("val_images") if isinstance(record, dict) else None
    if not names:
        return None
    source = record.get("val") or record.get("data")
    require(isinstance(source, str) and isinstance(names, list) and all(isinstance(n, str) for n in names),
            "the model file's validation record names no image source and image names: give --data")
    images = [img for img in load_images(source, channels) if img.name in names]
    missing = sorted(set(names) - {img.name for img in images})
    require(not missing, f"the model file's validation images {missing[:3]} are not in {source} any more: "
                         "give --data")
    return source, images
