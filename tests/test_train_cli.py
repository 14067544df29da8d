"""``spade train RECIPE.toml``: end to end, recipe validation, and a run killed with SIGKILL
mid-run that resumes where it stopped."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from finetune_helpers import REPO, crops, spade_env, write_images
from spade.cli import main
from spade.commands import models as models_command
from spade.finetune.checkpoint import load_checkpoint
from spade.models.io import load_model

RECIPE = """
[model]
family = "ista-net-plus"
phases = 2
channels = 4

[physics]
kind = "cs"
ratio = {ratio}

[data]
source = "{source}"
holdout = 1
patch = 33

[train]
steps = {steps}
batch = 2
lr = 1e-3
checkpoint_every = {every}
val_every = 3
seed = 3
"""


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def recipe(tmp_path, name="r.toml", ratio="0.25", steps=6, every=2, extra=""):
    if not (tmp_path / "train").exists():
        write_images(tmp_path / "train", crops(4, 66))
    path = tmp_path / name
    path.write_text(RECIPE.format(ratio=ratio, source=tmp_path / "train", steps=steps, every=every) + extra)
    return path


@pytest.mark.parametrize("ratio", ["0.25", "[0.1, 0.25]"])
def test_train_end_to_end(tmp_path, capsys, ratio):
    out = tmp_path / "run"
    assert main(["train", str(recipe(tmp_path, ratio=ratio)), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "data: patches measured on the fly" in text and "validation: 1 held-out images" in text
    loaded = load_model(out / "model.spade")
    training = loaded.spec["training"]
    assert training["steps"] == 6 and training["data_used"] == "patches measured on the fly" and training["val_psnr"] > 0
    assert training["recipe"]["model"]["phases"] == 2 and loaded.spec["protocol"] == "ista-cs"
    assert loaded.model.config["phases"] == 2 and loaded.physics.m == (272 if ratio == "0.25" else 109)
    history = json.loads((out / "history.json").read_text())
    assert [s["step"] for s in history["steps"]] == list(range(1, 7)) and len(history["validations"]) == 2
    assert not (out / "checkpoint.pt").exists()
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.spade"), "--json"]) == 0  # without --data: the held-out image
    scores = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in scores["per_image"]] == training["val_images"] and len(training["val_images"]) == 1
    if ratio == "0.25":  # one operator: the validation score is this evaluation's (several: their mean)
        assert scores["psnr"] == pytest.approx(training["val_psnr"])


@pytest.mark.parametrize("extra, message", [
    ("[extra]\nx = 1\n", r"unknown section\(s\) \['extra'\]: allowed are \['model', 'physics', 'data', 'train'\]"),
    ("[train.options.supervised]\nmetrik = 'l1'\n", r"strategy 'supervised' has no option \['metrik'\]"),
])
def test_recipe_errors_late_sections(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(["train", str(recipe(tmp_path, extra=extra)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and "\n" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("old, new, message", [
    ("lr = 1e-3", "lr = 1e-3\nlearning_rate = 2", r"\[train\] has no key \['learning_rate'\]: allowed are \['steps'"),
    ("lr = 1e-3", "lr = 'fast'", r"\[train\]: lr = 'fast' must be a number > 0"),
    ("batch = 2", "batch = 2\noptimizer = 'sgd'", r"optimizer = 'sgd' is not one of \['adam', 'adamw'\]"),
    ('family = "ista-net-plus"', 'family = "ista"', r"unknown model family 'ista': choose one of"),
    ("phases = 2", "phase = 2", r"model 'ista-net-plus' has no setting \['phase'\]: allowed are"),
    ('kind = "cs"', 'kind = "cs"\nblock = 32', r"physics 'cs' has no setting \['block'\]: allowed are"),
    ("holdout = 1", "holdout = 1\npatchsize = 3", r"\[data\] has no key \['patchsize'\]: allowed are"),
    ("patch = 33", "patch = 40", "patch size 40 is not a multiple of the CS block size 33"),
    ("[physics]", "[physics", "is not valid TOML"),
    ("seed = 3", "seed = 3\nstrategy = 'school'", r"\['school'\] needs a teacher"),
])
def test_recipe_validated_up_front(tmp_path, capsys, old, new, message):
    path = recipe(tmp_path)
    path.write_text(path.read_text().replace(old, new, 1))
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spade train: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not out.exists()


def _final_weights(out):
    return load_model(out / "model.spade").model.state_dict()


def test_killed_run_resumes_where_it_stopped(tmp_path):
    path = recipe(tmp_path, steps=24, every=2)
    assert main(["train", str(path), "--out", str(tmp_path / "ref"), "--no-progress"]) == 0  # uninterrupted

    cmd = [sys.executable, "-m", "spade", "train", str(path), "--no-progress"]
    env = spade_env()  # one thread, as in this process

    out = tmp_path / "run"
    proc = subprocess.Popen(cmd + ["--out", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run, right after its first checkpoints
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    blob = load_checkpoint(ckpt)
    killed_at = blob["step"]
    assert 0 < killed_at < 24 and not (out / "model.spade").exists()
    assert all(int(s["step"]) == killed_at for s in blob["optimizer"]["state"].values())

    resumed = subprocess.run(cmd + ["--out", str(out), "--resume"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {killed_at} of 24" in resumed.stdout
    history = json.loads((out / "history.json").read_text())
    assert [s["step"] for s in history["steps"]] == list(range(1, 25)) and history["resumed_from"] == killed_at
    reference = json.loads((tmp_path / "ref" / "history.json").read_text())
    assert [s["loss"] for s in history["steps"]] == [s["loss"] for s in reference["steps"]]
    ref_w, run_w = _final_weights(tmp_path / "ref"), _final_weights(out)
    assert all(torch.equal(ref_w[k], run_w[k]) for k in ref_w)  # bit for bit the uninterrupted run


def test_sigterm_stops_the_run_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "spade", "train", str(recipe(tmp_path, steps=400, every=2)),
                             "--out", str(out), "--no-progress"], cwd=REPO, env=spade_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == ("spade train: interrupted; run the same command with --resume to continue "
                                    "where it stopped")
    assert (out / "checkpoint.pt").is_file() and not (out / "model.spade").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
    assert not (tmp_path / "run.lock").exists()  # the lock was released as on a normal exit


def test_interrupting_a_command_without_resume_says_interrupted(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(models_command, "catalogue", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "spade models: interrupted\n"
