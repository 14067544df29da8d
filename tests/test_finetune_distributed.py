"""``spade finetune`` under ``torchrun --nproc-per-node 2`` (DDP, gloo, CPU) against one process.

Same global batch (4: two patches per process) and seeds, so both runs see the same
samples; DDP averages the two processes' gradients where one process sums over the whole
batch, which changes float rounding only. Stated tolerance: weights within 1e-5 (absolute)
and the first and last losses within 1e-5 (relative) after 4 Adam steps.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from finetune_helpers import REPO, crops, cs_physics, spade, spade_env, tiny_model, write_images
from spade.models.io import load_model, save_model


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "student.spade", tiny_model(sharing="recursive", stages=2, recursions=2), cs_physics(),
               protocol="ista-cs")
    write_images(tmp_path / "train", crops(4, 66))
    return tmp_path


@pytest.mark.slow  # about 30 s: three interpreters start (one single-process run, two DDP processes)
def test_two_processes_match_one(files):
    args = ["finetune", files / "student.spade", "--strategy", "supervised,self-supervised:0.5", "--data",
            files / "train", "--steps", "4", "--batch", "4", "--patch", "33", "--lr", "1e-3", "--json",
            "--no-progress"]
    single = spade(*args, "--out", files / "single.spade")
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "spade"]
    ddp = subprocess.run(torchrun + [str(a) for a in args] + ["--out", str(files / "ddp.spade")], cwd=REPO,
                         env=spade_env(), capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count('"out"') == 1  # rank 0 alone prints (and writes)

    a, b = load_model(files / "single.spade"), load_model(files / "ddp.spade")
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5
    assert max(float((wa[k] - load_model(files / "student.spade").model.state_dict()[k]).abs().max()) for k in wa) > 1e-4
    sa, sb = a.spec["finetuning"], b.spec["finetuning"]
    assert sa["final_loss"] == pytest.approx(sb["final_loss"], rel=1e-5)
    assert sa["first_loss"] == pytest.approx(sb["first_loss"], rel=1e-5)
