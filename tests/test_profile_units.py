"""Profiler parts: interleaving, allocator control, cost counters, backend verification.

No assertion here depends on how fast anything runs."""
from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch

from spade.data import example_pair
from spade.errors import SpadeError
from spade.models import create_model, load_model, save_model
from spade.physics import MRI, BlockCS, SuperResolution, random_mask
from spade.profile import BACKENDS, Bound, forward_cost, profile_models, register_backend
from spade.profile.backends import prepare, verify
from spade.profile.onnx_export import export_onnx, run_session, session
from tiny_nets import CHANNELS, PHASES, one_thread, tiny  # noqa: F401  (fixtures)


def test_macs_match_the_architecture():
    physics = BlockCS.gaussian(0.25)
    model = create_model("ista-net-plus", phases=PHASES, channels=CHANNELS).eval()
    _, y = example_pair(physics, 1, 66)
    pixels = 66 * 66
    c = CHANNELS
    convs = PHASES * 9 * pixels * (c + 4 * c * c + c)
    phys = (1 + 2 * PHASES) * physics.m * pixels  # A_dagger, and A, A^T in every phase (gradient_step)
    cost = forward_cost(lambda: model(y, physics))
    assert cost["macs"] == convs + phys


def test_peak_memory_tracks_activations():
    physics = BlockCS.gaussian(0.25)
    _, y = example_pair(physics, 1, 66)
    peaks = []
    for channels in (8, 32):
        model = create_model("ista-net-plus", phases=PHASES, channels=channels).eval()
        peaks.append(forward_cost(lambda: model(y, physics))["peak_mem_mb"])
    one_activation = 32 * 66 * 66 * 4 / 2 ** 20
    assert peaks[1] > peaks[0] > 0
    assert one_activation <= peaks[1] < 50 * one_activation


def _faults_after_reuse(mode: str) -> int:
    """Minor page faults of a 64 MiB tensor allocated, filled and freed like an activation in a
    timing loop (after three such calls), in a fresh process."""
    code = textwrap.dedent(f"""
        import torch
        from spade.profile.allocator import configure, page_faults
        state = configure({mode!r})
        for _ in range(3):  # the allocator's steady state (alignment slack may place the 2nd elsewhere)
            torch.empty(16 << 20).fill_(1.0)
        before = page_faults()
        torch.empty(16 << 20).fill_(1.0)
        print(state.mode, page_faults() - before)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == mode
    return int(out[1])


def test_pinned_allocator_reuses_freed_activations():
    pages = (64 << 20) // 4096
    assert _faults_after_reuse("default") > pages // 2  # glibc maps fresh pages again
    assert _faults_after_reuse("pinned") < pages // 20  # the freed block is reused


def test_allocator_cannot_be_unpinned_in_process():
    from spade.profile.allocator import configure

    assert configure("pinned").mode == "pinned"
    with pytest.raises(SpadeError, match="fresh process"):
        configure("default")
    with pytest.raises(SpadeError, match="unknown allocator"):
        configure("fast")


@pytest.fixture
def extra_backend():
    added = []

    def add(name, description, fn):
        register_backend(name, description)(fn)
        added.append(name)

    yield add
    for name in added:
        BACKENDS.pop(name)


def test_backend_with_wrong_output_is_reported_failed(tiny, extra_backend):
    def bf16(bound, y, threads, device):  # a real lower-precision backend: its output differs from eager
        def run(v):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return bound(v)
        return run, lambda: run(y)

    def fp16_weights(bound, y, threads, device):  # half weights with float input: fails to run at all
        half = copy.deepcopy(bound).half()
        return half, lambda: half(y)

    extra_backend("bf16-autocast", "eager under bfloat16 autocast", bf16)
    extra_backend("fp16-weights", "half-precision weights", fp16_weights)
    result = profile_models([tiny["base"]], backends=["eager", "bf16-autocast", "fp16-weights"], threads=1, side=33,
                            rounds=1, min_run_time=1e-3)
    entries = {e["backend"]: e for e in result["models"]}
    assert entries["eager"]["status"] == "ok" and entries["eager"]["max_abs_error"] == 0.0
    bad = entries["bf16-autocast"]
    assert bad["status"] == "failed" and "differs from eager" in bad["error"]
    assert bad["max_abs_error"] > result["tolerance"]
    assert bad["median_ms"] is None and bad["speedup"] is None
    broken = entries["fp16-weights"]
    assert broken["status"] == "failed" and broken["max_abs_error"] is None
    assert "RuntimeError" in broken["error"] and "\n" not in broken["error"]


def test_onnxruntime_backend_matches_eager(tiny):
    lm = load_model(tiny["half"])
    bound = Bound(lm.model, lm.physics).eval()
    _, y = example_pair(lm.physics, 2, 66)
    _, y2 = example_pair(lm.physics, 2, 66, seed=5)
    runner = prepare("onnxruntime", bound, y, threads=1, device=torch.device("cpu"))
    assert verify(runner.run, bound, [y, y2]) < 1e-5
    assert runner.setup_s > 0


def test_onnxruntime_backend_runs_sr_with_its_complex_fft_data_step():
    physics = SuperResolution(3, "bicubic", noise_level=0.02)
    model = create_model("hqs-sr", iterations=2, width=8, blocks=1).eval()
    bound = Bound(model, physics).eval()
    _, y = example_pair(physics, 2, 36)
    _, y2 = example_pair(physics, 2, 36, seed=4)
    runner = prepare("onnxruntime", bound, y, threads=1, device=torch.device("cpu"))
    assert verify(runner.run, bound, [y, y2]) < 1e-5


def test_profile_reports_a_network_no_graph_can_hold_in_one_line(tmp_path):
    path = tmp_path / "deq.spade"
    save_model(path, create_model("deq-mri", width=4, blocks=1, max_iter=3),
               MRI(random_mask((32, 32), 4, 0.1), real_image=False))
    result = profile_models([str(path)], backends=["eager", "onnxruntime"], rounds=1, min_run_time=0.01)
    entries = {e["backend"]: e for e in result["models"]}
    assert entries["eager"]["status"] == "ok"
    failed = entries["onnxruntime"]
    assert failed["status"] == "failed" and "cannot export to ONNX: deq-mri runs its Anderson solver" in failed["error"]
    assert "\n" not in failed["error"]


@pytest.mark.parametrize("real_image", [True, False])
def test_onnx_export_of_complex_mri_physics(real_image):
    physics = MRI(random_mask((32, 32), 4, 0.1), real_image=real_image, centered=not real_image)
    model = create_model("ista-net-plus", phases=1, channels=4, block_size=None, image_channels=1 if real_image else 2)
    bound = Bound(model, physics).eval()
    _, y = example_pair(physics, 1)
    sess = session(export_onnx(bound, y), threads=1, device=torch.device("cpu"))
    _, y2 = example_pair(physics, 1, seed=3)
    assert verify(lambda v: run_session(sess, v), bound, [y, y2]) < 1e-5


@pytest.mark.slow
def test_compile_and_channels_last_backends_match_eager(tiny):
    result = profile_models([tiny["base"]], backends=["channels-last", "compile"], threads=1, side=33, rounds=1,
                            min_run_time=1e-3)
    for e in result["models"]:
        assert e["status"] == "ok", e["error"]
        assert e["max_abs_error"] <= result["tolerance"]
