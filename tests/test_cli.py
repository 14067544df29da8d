"""The command line: help, JSON output, one-line errors with exit code 2 and no partial output."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest
import scipy.io
import torch

import spade
from spade.cli import COMMANDS, main
from spade.models import create_model, save_model
from spade.physics import MRI, random_mask


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "spade", *map(str, args)], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def test_help_lists_subcommands():
    code, out, _ = run_cli("--help")
    assert code == 0 and "models" in out and "evaluate" in out and "import" in out


@pytest.mark.parametrize("installed", [True, False])
def test_version_is_the_installed_package_s(monkeypatch, capsys, installed):
    if not installed:
        def missing(name):
            raise metadata.PackageNotFoundError(name)
        monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    expected = metadata.version("spade") if installed else spade.__version__
    assert stop.value.code == 0 and capsys.readouterr().out == f"spade {expected}\n"


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ista = {r["sharing"]: r["params"] for r in rows if r["name"] == "ista-net-plus"}
    assert ista == {"untied": 336978, "tied": 37442, "recursive": 114630}


def _mri_model(tmp_path, shape=(32, 32)):
    model = create_model("ista-net-plus", phases=1, channels=4, block_size=None)
    path = tmp_path / "mri.spade"
    save_model(path, model, MRI(random_mask(shape, 4, 0.1), real_image=True, centered=False))
    return path


def test_evaluate_errors_are_one_line(tmp_path):
    model = _mri_model(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli("evaluate", model, "--data", empty)
    assert code == 2 and err.strip().count("\n") == 0 and "holds no images" in err and "Traceback" not in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not png")
    code, _, err = run_cli("evaluate", model, "--data", bad)
    assert code == 2 and "cannot read image" in err and "x.png" in err
    small = tmp_path / "small"
    small.mkdir()
    np.save(small / "tiny.npy", np.zeros((16, 16), np.float32))
    code, _, err = run_cli("evaluate", model, "--data", small, "--protocol", "fastmri")
    assert code == 2 and "smaller than the (32, 32) k-space mask" in err
    code, _, err = run_cli("evaluate", tmp_path / "none.spade", "--data", small)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli("evaluate", model, "--data", small, "--protocol", "sr")
    assert code == 2 and "needs SuperResolution physics" in err


def test_evaluate_json(tmp_path, capsys):
    model = _mri_model(tmp_path)
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(2):
        np.save(data / f"i{i}.npy", np.random.default_rng(i).random((32, 32)).astype(np.float32))
    assert main(["evaluate", str(model), "--data", str(data), "--protocol", "fastmri", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"psnr", "ssim", "nmse", "per_image", "init_psnr"} <= set(out) and len(out["per_image"]) == 2
    assert out["psnr"] == pytest.approx(np.mean([r["psnr"] for r in out["per_image"]]))


def test_import_errors_write_nothing(tmp_path):
    weights = tmp_path / "w.pkl"
    torch.save({"module.fcs.0.lambda_step": torch.zeros(1)}, weights)
    scipy.io.savemat(tmp_path / "phi.mat", {"Phi": np.zeros((10, 1089))})
    out = tmp_path / "out.spade"
    code, _, err = run_cli("import", "ista-net-plus", weights, "--phi", tmp_path / "phi.mat", "--qinit",
                           tmp_path / "phi.mat", "--out", out)
    assert code == 2 and "misses ISTA-Net+ keys" in err and not out.exists()
    good = {f"module.fcs.0.{k}": v for k, v in create_model("ista-net-plus", phases=1).sharing.blocks[0]
            .state_dict().items()}
    good = {k.replace(".weight", ""): v for k, v in good.items()}
    torch.save(good, weights)
    code, _, err = run_cli("import", "ista-net-plus", weights, "--phi", tmp_path / "phi.mat", "--qinit",
                           tmp_path / "phi.mat", "--out", out)
    assert code == 2 and "has no key 'phi'" in err and not out.exists()
    scipy.io.savemat(tmp_path / "phi2.mat", {"phi": np.zeros((10, 1000))})
    code, _, err = run_cli("import", "ista-net-plus", weights, "--phi", tmp_path / "phi2.mat", "--qinit",
                           tmp_path / "phi.mat", "--out", out)
    assert code == 2 and "expected (m, 1089)" in err and not out.exists()
    code, _, err = run_cli("import", "ista-net-plus", weights, "--out", out)
    assert code == 2 and "either --phi" in err
    assert list(tmp_path.glob(".out.spade*")) == []


def test_bad_device(tmp_path):
    model = _mri_model(tmp_path)
    code, _, err = run_cli("evaluate", model, "--data", "embedded-mri", "--device", "tpu")
    assert code == 2 and "device" in err


#: what stays unloaded while only arguments are read (torch, too, before a sub-command is named)
HEAVY = ("torch_pruning", "matplotlib", "pandas", "onnx", "onnxruntime", "jinja2", "scipy", "skimage")
IMPORT_PROBE = """
import contextlib, io, json, sys
from spade.cli import COMMANDS, main
seen = {}
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    seen[" ".join(argv)] = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))
print(json.dumps(seen))
"""


def test_help_and_argument_errors_load_no_heavy_library():
    top = [["--help"], ["--version"], ["nosuch"], []]
    # (evaluate and profile read pruned copies of a user's own network, through the pruner)
    commands = [["export", "--bad"], ["quantize", "--help"], ["models", "--help"], ["export", "--help"]]
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE, json.dumps(top + commands), ",".join(HEAVY + ("torch",))],
                          capture_output=True, text=True)
    seen = json.loads(proc.stdout)
    assert all(seen[" ".join(argv)] == [] for argv in top), seen  # not even torch
    assert all(not set(seen[" ".join(argv)]) & set(HEAVY) for argv in commands), seen


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_texts_hold_no_sphinx_or_markdown_markup(capsys, command):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"] if command else ["--help"])
    text = capsys.readouterr().out
    assert stop.value.code == 0 and "usage: spade" in text
    assert "`" not in text and not re.search(r":(func|mod|class|meth|attr|data):", text), text


@pytest.mark.parametrize("training, message", [
    ({"val_images": ["nowhere"], "data": "embedded-mri"}, "validation images ['nowhere'] are not in embedded-mri"),
    ({"val_images": ["a"], "data": 3}, "validation record names no image source"),
    ({"val_images": [], "data": "embedded-mri"}, "needs test images: give --data"),
])
def test_evaluate_without_data_needs_a_usable_validation_record(tmp_path, capsys, training, message):
    path = tmp_path / "mri.spade"
    save_model(path, create_model("ista-net-plus", phases=1, channels=4, block_size=None),
               MRI(random_mask((32, 32), 4, 0.1), real_image=True, centered=False), training=training)
    assert main(["evaluate", str(path), "--protocol", "fastmri"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spade evaluate: error: ") and message in err


def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch, capsys):
    """`spade models | head -1`: the closed pipe is not reported as an error."""
    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["models"]) == 141
    assert capsys.readouterr().err == ""
