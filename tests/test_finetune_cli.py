"""``spade finetune`` end to end on tiny inputs, bad inputs, and a plug-in strategy."""
from __future__ import annotations

import json
import re

import pytest
import torch

from finetune_helpers import crops, cs_physics, spade, tiny_model, write_images
from spade.cli import main
from spade.models.io import load_model, save_model
from test_finetune_strategies import make_plugin


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "teacher.spade", tiny_model(phases=3), cs_physics(), protocol="ista-cs",
               source={"note": "unpruned"})
    save_model(tmp_path / "student.spade", tiny_model(), cs_physics(), protocol="ista-cs",
               pruning={"ratio": 0.5})
    save_model(tmp_path / "other.spade", tiny_model(phases=3), cs_physics(0.1), protocol="ista-cs")
    write_images(tmp_path / "train", crops(4, 66))
    write_images(tmp_path / "test", crops(2, 66, offset=6))
    return tmp_path


def test_supervised_end_to_end(files, capsys):
    out = files / "ft.spade"
    code = main(["finetune", str(files / "student.spade"), "--strategy", "supervised", "--loss", "l1",
                 "--data", str(files / "train"), "--holdout", "1", "--steps", "4", "--batch", "2", "--patch", "33",
                 "--lr", "1e-3", "--val-every", "2", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    assert "data: patches measured on the fly" in text
    assert re.search(rf"^wrote {re.escape(str(out))}: validation PSNR \d+\.\d\d dB \(best, step [24]\); supervised on "
                     r"patches measured on the fly of .*; loss \(batch\) \S+ -> \S+$", text, re.M), text
    loaded = load_model(out)
    spec = loaded.spec
    assert spec["pruning"] == {"ratio": 0.5} and spec["protocol"] == "ista-cs"  # provenance kept
    ft = spec["finetuning"]
    assert ft["data_used"] == "patches measured on the fly" and ft["steps_run"] == 4 and ft["options"] == {"supervised": {"metric": "l1"}}
    assert len(ft["validations"]) == 2 and ft["best_psnr"] > 0
    assert ft["val"] == str(files / "train") and len(ft["val_images"]) == 1
    assert main(["evaluate", str(out), "--json"]) == 0  # without --data: the held-out image, scored again
    scores = json.loads(capsys.readouterr().out)
    assert scores["data"] == f"{files / 'train'} (validation)" and [r["image"] for r in scores["per_image"]] == ft["val_images"]
    assert scores["psnr"] == pytest.approx(ft["best_psnr"])
    assert main(["evaluate", str(files / "student.spade")]) == 2  # a file that names no validation images
    assert capsys.readouterr().err.strip() == ("spade evaluate: error: protocol 'ista-cs' needs test images: give --data "
                                               "(the model file names no validation images)")
    before = load_model(files / "student.spade").model.state_dict()
    assert any(not torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())
    assert not (files / "ft.spade.ckpt").exists()


def test_school_and_self_supervised_json(files, capsys):
    out = files / "ft.spade"
    code = main(["finetune", str(files / "student.spade"), "--strategy", "school:1,self-supervised:0.5",
                 "--teacher", str(files / "teacher.spade"), "--iterates", "0.5", "--transforms", "rotate,flip",
                 "--data", str(files / "test"), "--test-time", "--epochs", "3", "--batch", "2", "--lr", "1e-3",
                 "--out", str(out), "--json", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)
    assert summary["data_used"] == "whole images measured once" and summary["finetune_data"] == "test"
    assert summary["steps_run"] == 3 and summary["total_steps"] == 3  # 2 images of one shape = 1 batch per epoch
    assert summary["options"] == {"school": {"iterates": 0.5}, "self-supervised": {"transforms": ["rotate", "flip"]}}
    assert "ground truth discarded after measuring" in captured.err
    assert load_model(out).spec["finetuning"]["strategy"] == "school:1,self-supervised:0.5"


def test_training_images_are_the_default_and_test_time_refuses_ground_truth(files, capsys):
    """Without --test-time, --data are training images (patches, recorded as train:SRC);
    --test-time never hands the test images' ground truth to a strategy."""
    out = files / "ft.spade"
    assert main(["finetune", str(files / "student.spade"), "--strategy", "school", "--teacher",
                 str(files / "teacher.spade"), "--data", str(files / "train"), "--steps", "2", "--batch", "2",
                 "--patch", "33", "--out", str(out), "--no-progress"]) == 0
    ft = load_model(out).spec["finetuning"]
    assert ft["finetune_data"] == f"train:{files / 'train'}" and ft["data_used"] == "patches measured on the fly"
    capsys.readouterr()
    assert main(["finetune", str(files / "student.spade"), "--strategy", "supervised", "--data", str(files / "test"),
                 "--test-time", "--steps", "2", "--out", str(files / "tta.spade"), "--no-progress"]) == 2
    assert "test-time adaptation may use the test measurements only" in capsys.readouterr().err
    assert not (files / "tta.spade").exists()


@pytest.mark.parametrize("change, message", [
    ({"model": "missing.spade"}, "model file .*missing.spade does not exist"),
    ({"model": "corrupt.spade"}, "cannot read model file"),
    ({"strategy": "distil"}, r"unknown strategy 'distil': registered are \[.*'school'"),
    ({"strategy": "school"}, r"\['school'\] needs a teacher model \(--teacher\)"),
    ({"strategy": "school", "teacher": "other.spade"}, "teacher .* was built for other physics"),
    ({"extra": ["--loss", "ssim"], "strategy": "self-supervised"}, "the loss option applies to supervised and school"),
    ({"data": "nowhere"}, "data source '.*nowhere' is neither a folder"),
    ({"extra": ["--holdout", "9"]}, "cannot hold out 9 of 4 images"),
    ({"extra": ["--patch", "40"]}, "patch size 40 is not a multiple of the CS block size 33"),
])
def test_bad_input_exit_2_nothing_written(files, capsys, change, message):
    (files / "corrupt.spade").write_bytes(b"not a model")
    out = files / "ft.spade"
    args = ["finetune", str(files / change.get("model", "student.spade")),
            "--strategy", change.get("strategy", "supervised"), "--data", str(files / change.get("data", "train")),
            "--steps", "2", "--out", str(out), "--no-progress", *change.get("extra", [])]
    if "teacher" in change:
        args += ["--teacher", str(files / change["teacher"])]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("spade finetune: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not out.exists() and not (files / "ft.spade.ckpt").exists()


@pytest.mark.parametrize("extra", [["--steps", "0"], ["--steps", "2", "--epochs", "1"], []])
def test_bad_lengths_rejected_by_parser(files, capsys, extra):
    with pytest.raises(SystemExit) as exc:
        main(["finetune", str(files / "student.spade"), "--strategy", "supervised", "--data", str(files / "train"),
              "--out", str(files / "ft.spade"), *extra])
    assert exc.value.code == 2
    assert not (files / "ft.spade").exists()


def test_plugin_strategy_from_the_command_line(files, tmp_path_factory):
    """A user's package declares the entry point; ``--strategy tv`` finds it, SPADE untouched."""
    root = make_plugin(tmp_path_factory.mktemp("plugin"))
    out = files / "tv.spade"
    result = spade("finetune", files / "student.spade", "--strategy", "tv", "--data", files / "test", "--test-time", "--steps", "3",
                   "--batch", "2", "--out", out, "--no-progress", extra_path=root)
    assert result.returncode == 0, result.stderr
    assert "data: whole images measured once" in result.stdout
    assert load_model(out).spec["finetuning"]["strategy"] == "tv"


def test_school_pairs_a_depth_pruned_models_iterations_with_the_ones_they_replace(files, capsys):
    """A model pruned by `spade prune --depth` and distilled on its iterates: each kept
    iteration is matched with the teacher iteration it stood in for (its pruning record)."""
    pruned, out = files / "depth.spade", files / "ft.spade"
    assert main(["prune", str(files / "teacher.spade"), "--ratio", "0", "--depth", "1", "--data",
                 str(files / "train"), "--samples", "2", "--no-reconstruct", "--out", str(pruned), "--json"]) == 0
    removed = json.loads(capsys.readouterr().out)["depth"]["removed"]
    code = main(["finetune", str(pruned), "--strategy", "school", "--teacher", str(files / "teacher.spade"),
                 "--iterates", "0.5", "--data", str(files / "train"), "--steps", "2", "--batch", "2", "--patch", "33",
                 "--out", str(out), "--json", "--no-progress"])
    assert code == 0
    pairs = json.loads(capsys.readouterr().out)["options"]["school"]["teacher_iterates"]
    assert pairs == [k + 1 for k in range(3) if k not in removed] and len(pairs) == 2
