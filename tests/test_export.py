"""``spade export MODEL --onnx OUT``: deployment export verified against PyTorch."""
from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spade.cli import main
from spade.data import example_pair
from spade.errors import SpadeError
from spade.models import create_model, load_model, save_model
from spade.physics import MRI, random_mask
from spade.profile.onnx_export import require_onnx
from tiny_nets import one_thread, tiny_models  # noqa: F401  (fixture)



@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    paths = tiny_models(folder)
    physics = MRI(random_mask((32, 32), 4, 0.1), real_image=True, centered=False)
    paths["mri"] = folder / "mri.spade"
    save_model(paths["mri"], create_model("ista-net-plus", phases=1, channels=4, block_size=None), physics)
    return paths


def test_export_runs_in_onnxruntime_like_pytorch(tiny, tmp_path, capsys):
    out = tmp_path / "deploy" / "half.onnx"
    assert main(["export", str(tiny["half"]), "--onnx", str(out), "--side", "66", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["input_shape"] == [1, 272, 2, 2] and summary["max_abs_error"] <= summary["tolerance"]
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["spade_spec"])["family"] == "ista-net-plus"
    lm = load_model(tiny["half"])
    _, y = example_pair(lm.physics, 1, 66, seed=7)  # an input the export was not checked on
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"y": y.numpy()})[0]
    with torch.inference_mode():
        want = lm.model(y, lm.physics).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_export_of_mri_model_with_complex_ffts(tiny, tmp_path, capsys):
    out = tmp_path / "mri.onnx"
    assert main(["export", str(tiny["mri"]), "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    assert "max |onnx - eager|" in text and out.is_file()


def test_failed_verification_writes_nothing(tiny, tmp_path, capsys):
    # ONNX Runtime's DFT and PyTorch's FFT round differently: with a zero tolerance the
    # comparison of the real outputs must refuse the export
    out = tmp_path / "strict.onnx"
    assert main(["export", str(tiny["mri"]), "--onnx", str(out), "--tolerance", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differs from PyTorch" in err[0] and "nothing written" in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["missing.spade", "--onnx", "{tmp}/a.onnx"], "does not exist"),
    (["{half}", "--onnx", "{tmp}/a.onnx", "--batch", "0"], "batch must be >= 1"),
    (["{half}", "--onnx", "{tmp}/a.onnx", "--tolerance", "-1"], "tolerance must be >= 0"),
    (["{half}", "--onnx", "{tmp}/a.txt"], "should end in .onnx"),
    (["{half}", "--onnx", "{tmp}/a.onnx", "--side", "40"], "not a multiple"),
])
def test_bad_input_exit_2_one_line(tiny, tmp_path, capsys, args, message):
    args = [a.format(half=tiny["half"], tmp=tmp_path) for a in args]
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spade export: error") and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_packages_named_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # a None entry makes the import fail
    with pytest.raises(SpadeError, match=r"onnxscript is missing\): pip install 'spade\[onnx\]'"):
        require_onnx()
