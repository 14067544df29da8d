"""``spade prune`` on model files: JSON report, reload, evaluate, errors that write nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from spade.cli import main
from spade.commands import prune as prune_command
from spade.jobs import prune_file
from spade.data import embedded_photos
from spade.models import create_model, load_model, save_model
from spade.physics import BlockCS


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune_cli")
    model = create_model("ista-net-plus", phases=3)
    save_model(root / "ista.pt", model, BlockCS.gaussian(0.25), protocol="ista-cs", source={"note": "test"})
    images = root / "images"
    images.mkdir()
    for photo in embedded_photos()[:2]:
        PILImage.fromarray(np.ascontiguousarray(photo.pixels[:60, :60])).save(images / f"{photo.name}.png")
    return root


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_prune_json_reload_evaluate(files, capsys):
    out = files / "half.pt"
    report = run_json(capsys, "prune", str(files / "ista.pt"), "--ratio", "0.5", "--round-to", "8", "--prune-steps",
                      "2", "--out", str(out), "--json")
    for key in ("params_before", "params_after", "macs_before", "macs_after", "widths_before", "widths_after"):
        assert key in report
    assert report["params_after"] < report["params_before"] / 3 and report["macs_after"] < report["macs_before"]
    assert report["widths_before"]["sharing.blocks.1.conv1_forward"] == [32, 32]
    assert report["widths_after"]["sharing.blocks.1.conv1_forward"] == [16, 16]
    assert report["macs_image"] == [1, 1, 264, 264]
    loaded = load_model(out)
    spec = loaded.spec
    assert spec["pruning"]["criterion"] == "l1" and spec["pruning"]["round_to"] == 8 and spec["pruning"]["steps"] == 2
    assert spec["source"] == {"note": "test"} and spec["protocol"] == "ista-cs"
    assert spec["widths"]["sharing.blocks.1.conv1_forward"] == [16, 16]
    scores = run_json(capsys, "evaluate", str(out), "--data", str(files / "images"), "--json")
    assert scores["n_images"] == 2 and np.isfinite(scores["psnr"])


def test_prune_with_data_and_depth_text_output(files, capsys):
    out = files / "deep.pt"
    assert main(["prune", str(files / "ista.pt"), "--ratio", "0.25", "--importance", "taylor", "--depth", "1",
                 "--data", str(files / "images"), "--samples", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "params" in text and "MACs" in text and "iteration(s) removed" in text
    spec = load_model(out).spec
    assert spec["config"]["phases"] == 2 and spec["pruning"]["criterion"] == "taylor"
    assert spec["pruning"]["data_samples"] == 2 and spec["pruning"]["data"] == str(files / "images")
    again = files / "again.pt"
    assert main(["prune", str(out), "--ratio", "0.5", "--out", str(again)]) == 0
    assert load_model(again).spec["pruning"]["previous"]["criterion"] == "taylor"


def test_long_group_names_are_shortened_visibly(files, capsys, monkeypatch):
    long = "sharing.blocks.0." + "a_very_long_layer_name_" * 4 + "conv_out"

    def with_a_long_interface(job, dev):
        summary = prune_file(job, dev)
        summary["interfaces"][long] = "feeds the physics"
        return summary

    monkeypatch.setattr(prune_command, "prune_file", with_a_long_interface)
    assert main(["prune", str(files / "ista.pt"), "--ratio", "0.5", "--out", str(files / "long.pt")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.endswith(": feeds the physics"))
    name = line.strip()[:-len(": feeds the physics")]
    assert len(name) == 70 and "..." in name and long.startswith(name.split("...")[0])
    assert long.endswith(name.split("...")[1])


@pytest.mark.parametrize("args, message", [
    (["--ratio", "1"], "outside"), (["--ratio", "-0.5"], "outside"), (["--importance", "magic"], "unknown importance"),
    (["--importance", "hessian"], "data"), (["--scope", "wide"], "unknown scope"),
    (["--protect", "sharing.blocks.9"], "cannot protect"), (["--depth", "3", "--data", "embedded"], "out of range"),
])
def test_errors_write_nothing(files, capsys, args, message):
    out = files / "never.pt"
    base = ["prune", str(files / "ista.pt"), "--out", str(out)]
    code = main(base + (args if "--ratio" in args else ["--ratio", "0.5"] + args))
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists() and not any(p.name.startswith(".never") for p in files.iterdir())


def test_steps_is_finetune_s_flag_only(files, capsys):
    """--steps means optimisation steps (finetune); pruning steps are --prune-steps."""
    out = files / "never.pt"
    with pytest.raises(SystemExit) as stop:
        main(["prune", str(files / "ista.pt"), "--ratio", "0.5", "--steps", "2", "--out", str(out)])
    assert stop.value.code == 2 and "unrecognized arguments: --steps" in capsys.readouterr().err
    assert not out.exists()


def test_missing_model_file(files, capsys):
    assert main(["prune", str(files / "nope.pt"), "--ratio", "0.5", "--out", str(files / "x.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_official_cs25_prunes_and_evaluates(bench_data, tmp_path, capsys):
    root = bench_data / "ista_net_plus" / "cs25"
    model = tmp_path / "cs25.pt"
    assert main(["import", "ista-net-plus", str(root / "net_params_200.pkl"), "--phi", str(root / "phi_0_25_1089.mat"),
                 "--qinit", str(root / "Initialization_Matrix_25.mat"), "--out", str(model)]) == 0
    capsys.readouterr()
    report = run_json(capsys, "prune", str(model), "--ratio", "0.25", "--out", str(tmp_path / "p.pt"), "--json")
    assert report["params_before"] == 336978 and report["params_after"] < 0.6 * 336978
    scores = run_json(capsys, "evaluate", str(tmp_path / "p.pt"), "--data", "set11", "--json")
    assert scores["n_images"] == 11 and scores["psnr"] > 20
