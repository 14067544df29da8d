"""Post-training static INT8 quantization of the priors, the physics kept in float.

The network bound to its physics is exported to ONNX (:mod:`.onnx_export`, the input
shape fixed: CS 264x264 unless ``side`` says otherwise) and ONNX Runtime's
``quantize_static`` quantizes *only the convolutions whose weights are the network's own
parameters* (initializers named ``model.*``): the physics' operators (block CS's Phi
products, FFTs, data-consistency steps) and everything element-wise stay in float. The
calibration reader feeds measurements of calibration images taken with the model's own
physics (QDQ format, per-channel symmetric INT8 weights, UINT8 activations, min-max
ranges).

:func:`quantize_file` then scores float (eager) and INT8 (ONNX Runtime) on evaluation
images under the model's protocol — each image cropped top-left, where needed, so that
its prepared size is the exported one — and times float eager, float ONNX Runtime and
INT8 ONNX Runtime (and an optional reference model, e.g. the unpruned one, eagerly)
interleaved in one run; the reference also runs in float on ONNX Runtime, the same
runtime as the INT8 model (``onnx_baseline``: the reference's float ONNX Runtime, else the
model's own). Speedups are medians of per-round ratios on process CPU time when other
processes contaminate wall time (``clock``, :func:`~spade.profile.trust.choose_clock`).
The INT8 file carries the model's SPADE spec in its metadata (``spade_spec``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data import channel_mode, load_images, prepare
from ..data.images import Image
from ..errors import SpadeError, require
from ..evaluation import score
from ..fileio import atomic_path
from ..limits import check_count
from ..models import load_model
from ..progress import bar
from . import allocator as alloc
from .backends import Bound
from .conditions import hardware, load_average, versions
from .latency import METHOD, measure_interleaved
from .stats import CONFIDENCE, paired_speedup
from .trust import choose_clock
from .onnx_export import INPUT, export_onnx, require_onnx, run_session, session

#: the backend name of INT8 rows in results and reports
INT8_BACKEND = "onnxruntime-int8"
#: the network's own parameters in the exported graph (Bound names the network ``model``)
PRIOR_PREFIX = "model."


def prior_convs(model_proto) -> list[str]:
    """Names of the Conv nodes whose weight is a parameter of the network (not physics)."""
    inits = {i.name for i in model_proto.graph.initializer}
    return [n.name for n in model_proto.graph.node
            if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits
            and n.input[1].startswith(PRIOR_PREFIX)]


def fitted(image: Image, physics, protocol: str, shape: tuple[int, int]):
    """``prepare(image)`` with the image cropped top-left so the prepared size is ``shape``
    (None when the image is too small)."""
    h, w = image.shape
    for dh in range(0, 64):
        crop = Image(image.name, image.pixels[..., :min(h, shape[0] - dh), :min(w, shape[1] - dh)])
        x, ref, hw = prepare(crop, physics, protocol)
        if tuple(x.shape[-2:]) == shape:
            return x, ref, hw
        if x.shape[-2] < shape[0] or x.shape[-1] < shape[1]:
            return None
    return None


class _Reader:
    """onnxruntime ``CalibrationDataReader``: one measurement per call of ``get_next``."""

    def __init__(self, ys: list[torch.Tensor]):
        self.feeds = iter([{INPUT: y.numpy()} for y in ys])

    def get_next(self):
        return next(self.feeds, None)


def quantize_proto(float_proto, calibration: list[torch.Tensor]):
    """The INT8 ``ModelProto`` of ``float_proto`` (module docstring)."""
    onnx, _ = require_onnx()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    nodes = prior_convs(float_proto)
    require(nodes, "the model has no convolution of its own to quantize")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(float_proto, src)
        try:
            logging.disable(logging.WARNING)  # its advice to pre-process goes to the root logger
            quantize_static(str(src), str(dst), _Reader(calibration), quant_format=QuantFormat.QDQ,
                            nodes_to_quantize=nodes, op_types_to_quantize=["Conv"], per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:  # onnxruntime's own errors, named in one line
            raise SpadeError(f"ONNX Runtime could not quantize the model: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        finally:
            logging.disable(logging.NOTSET)
        return onnx.load(dst), nodes


def _measurements(images: list[Image], physics, protocol: str, shape, samples: int, seed: int) -> list:
    out = []
    for i, image in enumerate(images):
        got = fitted(image, physics, protocol, shape)
        if got is not None:
            out.append((image.name, got, physics.simulate(got[0], seed=seed + i)))
        if len(out) == samples:
            break
    return out


def quantize_file(model: str, data: str, out: str, eval_data: str | None = None, samples: int = 8,
                  threads: int = 1, side: int | None = None, reference: str | None = None, rounds: int = 5,
                  min_run_time: float = 0.5, seed: int = 0, protocol: str | None = None,
                  log: Callable[[str], None] = lambda m: None) -> dict:
    """Quantize ``model`` (calibrated on ``data``) into the ONNX file ``out``; returns the
    report: PSNR/SSIM float vs INT8 on ``eval_data`` (under ``protocol``, default the
    model's) and interleaved timings."""
    check_count(samples, "MAX_SAMPLES", "samples")
    require(threads >= 1 and rounds >= 1 and min_run_time > 0, "threads and rounds must be >= 1, min run time > 0")
    require(str(out).endswith(".onnx"), f"the output {out} must be an .onnx file")
    require_onnx()
    loaded = load_model(model)
    physics = loaded.physics
    require(physics is not None, f"model file {model} stores no physics: quantization calibrates through it")
    protocol = protocol or loaded.spec.get("protocol") or physics.protocols[0]
    channels = loaded.model.config.get("image_channels", 1)
    shape = tuple(physics.image_shape(side, channels)[1:])
    calib = _measurements(load_images(data, channel_mode(channels)), physics, protocol, shape, samples, seed)
    require(calib, f"no image of {data} is at least {shape[0]}x{shape[1]}: calibrate on larger images")
    tests = _measurements(load_images(eval_data, channel_mode(channels)), physics, protocol, shape, 10 ** 6, seed) if eval_data else []
    require(not eval_data or tests, f"no image of {eval_data} is at least {shape[0]}x{shape[1]}")
    ref = None if reference is None else load_model(reference)
    require(ref is None or (ref.physics is not None and ref.physics.settings() == physics.settings()),
            f"the reference {reference} does not measure like {model}: give a model with the same physics")
    alloc.configure("pinned")
    load_before = load_average()
    bound = Bound(loaded.model, physics).eval()
    with contextlib.ExitStack() as stack:
        stack.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(threads)
        y0 = calib[0][2]
        log(f"exporting {model} to ONNX at {shape[0]}x{shape[1]}")
        float_proto = export_onnx(bound, y0)
        log(f"calibrating on {len(calib)} image(s) of {data}")
        int8_proto, nodes = quantize_proto(float_proto, [c[2] for c in calib])
        sessions = {"float": session(float_proto, threads, torch.device("cpu")),
                    "int8": session(int8_proto, threads, torch.device("cpu"))}
        quality = _quality(bound, sessions, tests, physics, protocol) if tests else None
        runs = {"float eager": _eager(bound, y0), "float onnxruntime": _ort(sessions["float"], y0),
                "int8 onnxruntime": _ort(sessions["int8"], y0)}
        if ref is not None:
            ref_bound = Bound(ref.model, ref.physics).eval()
            runs["reference eager"] = _eager(ref_bound, y0)
            log(f"exporting the reference {reference} to ONNX")
            runs["reference onnxruntime"] = _ort(session(export_onnx(ref_bound, y0), threads, torch.device("cpu")), y0)
        log(f"timing {len(runs)} candidates interleaved: {rounds} rounds")
        timings = measure_interleaved(runs, rounds=rounds, min_run_time=min_run_time)
    base = "reference eager" if reference is not None else "float eager"
    onnx_base = "reference onnxruntime" if reference is not None else "float onnxruntime"
    clock, why = choose_clock(timings, [(k, b) for b in (base, onnx_base) for k in timings], load_average(),
                              os.cpu_count())
    times = {k: {**t.to_json(), **_speedups(timings, base, k, clock), **_speedups(timings, onnx_base, k, clock)}
             for k, t in timings.items()}
    int8_proto.metadata_props.add(key="spade_spec", value=json.dumps(loaded.spec))
    with atomic_path(out) as tmp:
        require_onnx()[0].save(int8_proto, str(tmp))
    return {"model": model, "out": out, "calibration": {"data": data, "images": [c[0] for c in calib]},
            "evaluation": None if not tests else {"data": eval_data, "protocol": protocol,
                                                  "images": [t[0] for t in tests], **quality},
            "input_shape": list(y0.shape), "image_shape": list(shape), "quantized_convs": len(nodes),
            "format": "ONNX QDQ: per-channel INT8 weights, UINT8 activations (min-max), physics in float",
            "timings": times, "baseline": base, "onnx_baseline": onnx_base, "clock": {"clock": clock, "reason": why},
            "timer": {"method": METHOD, "rounds": rounds, "max_rounds": rounds, "min_run_time_s": min_run_time,
                      "confidence": CONFIDENCE},
            "threads": threads, "hardware": hardware(torch.device("cpu")),
            "versions": versions(), "allocator": alloc.configure("pinned").to_json(),
            "load_average": {"before": load_before, "after": load_average(), "cpus": os.cpu_count()}}


def _eager(bound, y):
    def run():
        with torch.inference_mode():
            return bound(y)
    return run


def _ort(sess, y):
    feed = {INPUT: np.ascontiguousarray(y.numpy())}
    return lambda: sess.run(None, feed)


def _quality(bound, sessions, tests, physics, protocol) -> dict:
    scores = {"float": [], "int8": []}
    with bar(tests, desc="scoring float and INT8", unit="image") as shown:
        for _, (x, ref, (h, w)), y in shown:
            with torch.inference_mode():
                outs = {"float": bound(y), "int8": run_session(sessions["int8"], y)}
            for k, x_hat in outs.items():
                scores[k].append(score(protocol, x_hat[..., :h, :w].float(), ref, physics))
    mean = {k: {m: float(np.mean([s[m] for s in v])) for m in v[0]} for k, v in scores.items()}
    return {"float": mean["float"], "int8": mean["int8"],
            "psnr_loss_db": mean["float"]["psnr"] - mean["int8"]["psnr"],
            "per_image": [{"float": a, "int8": b} for a, b in zip(scores["float"], scores["int8"])]}


def _speedups(timings: dict, base: str, name: str, clock: str) -> dict[str, float]:
    """How many times faster ``name`` runs than ``base``: the median per-round ratio on
    ``clock`` and its interval, under the keys ``speedup_vs_<base>_{speedup,low,high}``."""
    s = paired_speedup(timings[base].rounds(clock), timings[name].rounds(clock))
    prefix = f"speedup_vs_{base.replace(' ', '_')}_"
    return {prefix + "speedup": s.median, prefix + "low": s.low, prefix + "high": s.high}
