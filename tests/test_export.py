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
from spade.models import create_model, families, load_model, save_model
from spade.physics import MRI, BlockCS, SuperResolution, build_physics, equispaced_mask, random_mask
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


# --- every family of the registry, in every sharing mode -------------------------------

#: tiny configurations (a family added to the registry without one fails the test below)
TINY = {"coast": dict(iterations=2, channels=8, blocks=1, stages=2, recursions=1),
        "du-mri": dict(iterations=2, width=8, depth=3, stages=2, recursions=1),
        "deq-mri": dict(width=8, blocks=1, max_iter=4),
        "hqs-sr": dict(iterations=2, width=8, blocks=1, stages=2, recursions=1),
        "hqs-sr-ps": dict(iterations=2, width=8, blocks=1, stages=2, recursions=1),
        "ista-net-plus": dict(phases=2, channels=8, stages=2, recursions=1),
        "lista": dict(layers=2, m=20, n=40, hidden=20, stages=2, recursions=1),
        "varnet": dict(cascades=2, width=4, levels=2, stages=2, recursions=1)}
PHYSICS = {"cs": (lambda: BlockCS.gaussian(0.25), 33),
           "mri": (lambda: MRI(equispaced_mask((32, 32), 4, 0.08), real_image=False), None),
           "sr": (lambda: SuperResolution(2, "gaussian:1.2", noise_level=0.01), 32),
           "sparse": (lambda: build_physics({"kind": "sparse", "m": 20, "n": 40}), None)}
#: families whose network no static graph can hold: the export must refuse them in one line
NOT_EXPORTABLE = {"deq-mri": "loop whose length depends on the data"}
ZOO = [(name, preset) for name, fam in sorted(families().items()) for preset in fam.presets]


def _zoo_file(folder, name, preset):
    fam = families()[name]
    assert name in TINY, f"add a tiny configuration of '{name}' to TINY in {__file__}"
    config = {**TINY[name], **fam.presets[preset]}
    if config.get("sharing", "untied") != "recursive":
        config.pop("stages", None), config.pop("recursions", None)
    make, side = PHYSICS[fam.physics[0]]
    physics = make()
    torch.manual_seed(0)
    path = folder / f"{name}-{preset}.spade"
    save_model(path, create_model(name, **config), physics)
    return path, side


@pytest.mark.parametrize("name, preset", ZOO)
def test_every_family_and_sharing_mode_exports_and_runs_like_eager(name, preset, tmp_path, capsys):
    path, side = _zoo_file(tmp_path, name, preset)
    out = tmp_path / "zoo.onnx"
    args = ["export", str(path), "--onnx", str(out), "--json"] + (["--side", str(side)] if side else [])
    code = main(args)
    captured = capsys.readouterr()
    if name in NOT_EXPORTABLE:
        err = captured.err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "cannot export to ONNX" in err[0], err
        assert NOT_EXPORTABLE[name] in err[0] and not out.exists()
        return
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["max_abs_error"] <= summary["tolerance"]
    lm = load_model(path)
    _, y = example_pair(lm.physics, 1, side, seed=11)  # an input the export was not checked on
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"y": y.numpy()})[0]
    with torch.inference_mode():
        want = lm.model(y, lm.physics).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_sr_data_step_is_the_tiled_closed_form():
    # prox_l2 tiles its complex (H/s, W/s) ratio through its real view (exportable, traceable
    # by torch-pruning): the same numbers as repeat on the complex tensor, written out here
    for scale in (2, 3, 4):
        physics = SuperResolution(scale, "gaussian:1.6")
        z, x = torch.randn(2, 3, 24, 24), torch.randn(2, 3, 24, 24)
        y, gamma = physics.A(x), torch.tensor([0.3, 2.0])
        alpha = 1.0 / gamma.reshape(-1, 1, 1, 1)
        otf = physics._otf((24, 24), z)
        fr = otf.conj() * torch.fft.fft2(physics._upsample_zeros(y)) + alpha * torch.fft.fft2(z)

        def block_mean(a):
            return a.reshape(*a.shape[:-2], scale, 24 // scale, scale, 24 // scale).mean(dim=(-4, -2))

        ratio = (block_mean(otf * fr) / (block_mean((otf.abs() ** 2).expand_as(fr)) + alpha)).repeat(1, 1, scale, scale)
        want = torch.fft.ifft2((fr - otf.conj() * ratio) / alpha).real
        assert torch.equal(physics.prox_l2(z, y, gamma), want)
