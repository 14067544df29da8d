"""Resource limits and number checks for everything SPADE reads from a file or a user.

A limit keeps a hostile or mistaken file from hanging a command or allocating without
bound. Each has a default that covers every model in the zoo with a wide margin; a user
who really means more raises it with an environment variable of the same name prefixed
``SPADE_``, e.g. ``SPADE_MAX_WIDTH=8192 spade evaluate ...``. The errors say so.
"""
from __future__ import annotations

import json
import math
import os
import tomllib
from typing import Any

import numpy as np
import torch

from .errors import SpadeError, require

#: default limits (see module docstring to raise one)
DEFAULTS = {
    "MAX_IMAGE_SIDE": 8192,          # pixels, one side of an image, mask or operator grid
    "MAX_COILS": 64,                 # receiver coils of parallel MRI
    "MAX_ITERATIONS": 1000,          # unrolled iterations / phases / stages / solver steps
    "MAX_WIDTH": 4096,               # channels or features of one layer
    "MAX_JSON_DEPTH": 32,            # nesting of a model spec, record or recipe
    "MAX_TENSOR_ELEMENTS": 2 ** 28,  # elements of one weight or physics tensor (1 GiB of float32)
    "MAX_TENSORS": 100_000,          # entries of one state dict
    "MAX_BATCH": 4096,               # images in one example, training or timed batch
    "MAX_SAMPLES": 1_000_000,        # images, patches or codes one command draws
}
#: the smallest image side: SSIM's 7 x 7 window
MIN_IMAGE_SIDE = 7


def limit(name: str) -> int:
    """The value of limit ``name`` (its ``SPADE_<name>`` environment variable, else the default)."""
    text = os.environ.get(f"SPADE_{name}")
    if text is None:
        return DEFAULTS[name]
    try:
        value = int(text)
    except ValueError:
        raise SpadeError(f"SPADE_{name}={text!r} is not a whole number") from None
    require(value >= 1, f"SPADE_{name} must be >= 1 (got {value})")
    return value


def _over(name: str, what: str, value) -> SpadeError:
    return SpadeError(f"{what} is {value}, over the limit of {limit(name)}: set SPADE_{name} to allow more")


def check_count(value: Any, name: str, what: str, minimum: int = 1) -> int:
    """``value`` as an int in ``[minimum, limit(name)]`` (bools and fractions refused)."""
    require(isinstance(value, int) and not isinstance(value, bool),
            f"{what} must be a whole number (got {type(value).__name__} {value!r})")
    require(value >= minimum, f"{what} must be >= {minimum} (got {value})")
    if value > limit(name):
        raise _over(name, what, value)
    return value


def check_input_size(batch: Any, side: Any) -> None:
    """An example input's batch (``MAX_BATCH``) and optional image side (``MAX_IMAGE_SIDE``)."""
    check_count(batch, "MAX_BATCH", "batch")
    if side is not None:
        check_count(side, "MAX_IMAGE_SIDE", "side")


def check_shape(shape: Any, what: str) -> list[int]:
    """A tensor shape: non-negative ints whose product is within ``MAX_TENSOR_ELEMENTS``."""
    require(isinstance(shape, (list, tuple)) and len(shape) <= 8
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape),
            f"{what} must be a list of at most 8 non-negative whole numbers (got {shape!r})")
    if math.prod(shape) > limit("MAX_TENSOR_ELEMENTS"):
        raise _over("MAX_TENSOR_ELEMENTS", f"{what} {list(shape)}: the element count", math.prod(shape))
    return list(shape)


def check_finite_number(value: float, what: str) -> float:
    """A finite float (``inf``/``nan`` refused)."""
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            f"{what} must be a finite number (got {value!r})")
    return float(value)


def check_finite(tensor: torch.Tensor, what: str,
                 hint: str = "the file is damaged or the training diverged") -> None:
    """Refuse a floating-point or complex tensor holding NaN or infinity."""
    if (tensor.is_floating_point() or tensor.is_complex()) and tensor.numel() and not bool(torch.isfinite(tensor).all()):
        raise SpadeError(f"{what} holds NaN or infinite values: {hint}")


#: operator settings (a training recipe's ``[physics]``, a model file's physics) that are
#: sizes, and the limit of each; ``shape`` may be a list
SIZE_SETTINGS = {"shape": "MAX_IMAGE_SIDE", "block_size": "MAX_IMAGE_SIDE", "scale": "MAX_IMAGE_SIDE",
                 "coils": "MAX_COILS", "m": "MAX_WIDTH", "n": "MAX_WIDTH"}
#: operator settings that are numbers (``inf`` allowed only where it means "none": snr_db)
NUMBER_SETTINGS = {"noise_level", "acceleration", "center_fraction", "ratio", "seed", "snr_db"}


def check_settings(settings: Any, what: str) -> dict:
    """Operator settings: a flat table of numbers, strings, booleans and lists of them,
    sizes (:data:`SIZE_SETTINGS`) whole and within their limits, numbers finite."""
    require(isinstance(settings, dict), f"{what} must be a table of settings")
    for key, value in settings.items():
        where = f"{what} {key}"
        values = value if isinstance(value, list) else [value]
        require(all(isinstance(v, (bool, int, float, str)) for v in values),
                f"{where} = {str(value)[:60]} must be a number, a string, a boolean or a list of them")
        if key in SIZE_SETTINGS:
            for v in values:
                check_count(v, SIZE_SETTINGS[key], where)
        elif key in NUMBER_SETTINGS:
            for v in values:
                require(isinstance(v, (int, float)) and not isinstance(v, bool), f"{where} = {v!r} must be a number")
                require(math.isfinite(v) or (key == "snr_db" and v == math.inf), f"{where} = {v!r} must be finite")
    return settings


def check_pixels(a: np.ndarray, what: str) -> np.ndarray:
    """Image values on SPADE's scale, by their dtype (the stated rule):

    * ``uint8``: kept (scaled by 1/255 when used); ``bool``: 0 or 1;
    * other integers: 0..255 scaled by 1/255, else 0..65535 by 1/65535; negatives refused;
    * floats: must lie in [0, 1] (a 0-255 float image is refused: divide it by 255);
    * complex: refused (save the magnitude or the real part); NaN/inf refused.

    Sides must be within ``[MIN_IMAGE_SIDE, MAX_IMAGE_SIDE]``. Returns uint8 or float32.
    """
    require(not np.iscomplexobj(a), f"{what} is complex: save its magnitude (np.abs) or real part as the image")
    if a.dtype == np.bool_:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer) and a.dtype != np.uint8:
        low, high = int(a.min()), int(a.max())
        require(low >= 0 and high <= 65535, f"{what} has integer values in [{low}, {high}]: expected 0-255 "
                                            "(8-bit) or 0-65535 (16-bit)")
        a = (a / (255.0 if high <= 255 else 65535.0)).astype(np.float32)
    elif a.dtype != np.uint8:
        require(np.issubdtype(a.dtype, np.floating), f"{what} has values of type {a.dtype}: expected numbers")
        a = a.astype(np.float32)
        require(bool(np.isfinite(a).all()), f"{what} contains NaN or Inf")
        low, high = float(a.min()), float(a.max())
        require(low >= 0.0 and high <= 1.0, f"{what} has float values in [{low:.4g}, {high:.4g}]: float images "
                                            "must lie in [0, 1] (divide 8-bit data by 255)")
    side, big = min(a.shape[-2:]), max(a.shape[-2:])
    require(side >= MIN_IMAGE_SIDE, f"{what} is {a.shape[-2]}x{a.shape[-1]}: images must be at least "
                                    f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (the SSIM window)")
    if big > limit("MAX_IMAGE_SIDE"):
        raise _over("MAX_IMAGE_SIDE", f"the side of {what}", big)
    return a


def json_depth(obj: Any) -> int:
    """Nesting depth of lists/dicts in ``obj`` (iterative: safe on any depth)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def check_depth(obj: Any, what: str) -> Any:
    """Refuse ``obj`` nested deeper than ``MAX_JSON_DEPTH``."""
    depth = json_depth(obj)
    if depth > limit("MAX_JSON_DEPTH"):
        raise _over("MAX_JSON_DEPTH", f"the nesting of {what}", depth)
    return obj


def loads_json(text: str | bytes, what: str) -> Any:
    """Parse JSON ``text`` with its nesting checked (NaN/Infinity literals are read: the
    caller checks the numbers it uses with :func:`check_finite_number`)."""
    try:
        return check_depth(json.loads(text), what)
    except RecursionError:
        raise _over("MAX_JSON_DEPTH", f"the nesting of {what}", "deeper than Python can parse") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpadeError(f"{what} is not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from None


def loads_toml(data: bytes, what: str) -> dict:
    """Parse a TOML file's bytes: UTF-8, valid TOML, nesting within ``MAX_JSON_DEPTH``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpadeError(f"{what} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    try:
        return check_depth(tomllib.loads(text), what)
    except RecursionError:
        raise _over("MAX_JSON_DEPTH", f"the nesting of {what}", "deeper than Python can parse") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpadeError(f"{what} is not valid TOML: {exc}") from None
