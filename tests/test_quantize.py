"""``spade quantize``: INT8 priors with the physics in float, end to end on a tiny CS model."""
from __future__ import annotations

import json

import onnx
import pytest
import torch

from spade.cli import main
from spade.models import load_model
from spade.profile.backends import Bound
from spade.profile.onnx_export import export_onnx
from spade.profile.quantize import prior_convs
from tiny_nets import PHASES, one_thread, tiny  # noqa: F401  (fixtures)

FAST = ["--threads", "1", "--side", "66", "--rounds", "1", "--min-run-time", "0.01", "--samples", "2"]


def test_only_the_networks_convolutions_are_selected(tiny):
    loaded = load_model(tiny["base"])
    y = loaded.physics.A(torch.rand(1, 1, 66, 66))
    proto = export_onnx(Bound(loaded.model, loaded.physics).eval(), y)
    names = prior_convs(proto)
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    assert len(names) == 6 * PHASES and sorted(names) == sorted(convs)
    # the physics' Phi products (on the batch of blocks: matrix products) are no candidates
    physics = [n for n in proto.graph.node if n.op_type in ("Gemm", "MatMul")]
    assert len(physics) == 2 * PHASES + 1
    assert not any(i.startswith("model.") for n in physics for i in n.input)


def test_quantize_end_to_end_close_to_float(tiny, tmp_path, capsys):
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(tiny["half"]), "--data", "embedded", "--eval", "embedded", "--out", str(out),
                 "--reference", str(tiny["base"]), "--json", *FAST]) == 0
    r = json.loads(capsys.readouterr().out)
    model = onnx.load(out)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Gemm"} <= ops  # INT8 priors, float physics
    gemm_inputs = {i for n in model.graph.node if n.op_type == "Gemm" for i in n.input}
    assert not any("quantized" in i or i.endswith("_DequantizeLinear_Output") for i in gemm_inputs)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["spade_spec"])["family"] == "ista-net-plus"
    ev = r["evaluation"]
    assert r["quantized_convs"] == 6 * PHASES and ev["images"]
    assert abs(ev["psnr_loss_db"]) < 0.5 and ev["int8"]["psnr"] > 10
    assert set(r["timings"]) == {"float eager", "float onnxruntime", "int8 onnxruntime", "reference eager",
                                 "reference onnxruntime"}
    assert r["timings"]["reference eager"]["speedup_vs_reference_eager_speedup"] == 1.0
    assert r["onnx_baseline"] == "reference onnxruntime" and r["clock"]["clock"] in ("wall", "cpu")
    assert r["timings"]["reference onnxruntime"]["speedup_vs_reference_onnxruntime_speedup"] == 1.0
    assert r["timings"]["int8 onnxruntime"]["speedup_vs_reference_onnxruntime_speedup"] > 0


@pytest.mark.parametrize("args, message", [
    (["--out", "q.pt"], ".onnx file"),
    (["--out", "q.onnx", "--data", "no/such/folder"], "no/such/folder"),
    (["--out", "q.onnx", "--reference", "missing.spade"], "missing.spade"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    argv = ["quantize", str(tiny["half"]), *FAST, *args]
    if "--data" not in args:
        argv += ["--data", "embedded"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_quantize_refuses_to_overwrite_without_force(tmp_path, capsys):
    from spade.cli import main
    out = tmp_path / "q.onnx"
    out.write_bytes(b"kept")
    assert main(["quantize", str(tmp_path / "missing.spade"), "--data", "embedded", "--out", str(out)]) == 2
    assert out.read_bytes() == b"kept" and "--force" in capsys.readouterr().err
