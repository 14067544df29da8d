"""Progress bars on stderr (on a terminal; silenced by --no-progress; never on stdout),
timing rounds that tick once per block, and the pipeline's time estimate from measured rates."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest
import torch

from finetune_helpers import REPO, crops, cs_physics, spade_env, tiny_model, write_images
from spade import progress
from spade.cli import build_parser, main
from spade.models import create_model, save_model
from spade.physics import build_physics
from spade.pipeline.eta import FIRST_STEP_FACTOR, Estimator, Probe, Unit
from spade.profile.latency import PairedRounds

#: what a tqdm bar prints: ``3/15 [00:02<00:08``
BAR = re.compile(r"\d+/\d+ \[\d\d:\d\d")
#: every command that can run for minutes
LONG = ("run", "demo", "train", "finetune", "prune", "profile", "evaluate", "quantize")


def test_every_long_command_has_no_progress():
    def options(name):  # the sub-parser of ``name``, its arguments added
        sub = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
        return sub.choices[name]._option_string_actions

    missing = [name for name in LONG if "--no-progress" not in options(name)]
    assert not missing


def test_the_switch_silences_every_bar():
    with progress.enabled(True):
        with progress.bar(range(3)) as on:
            assert not on.disable
        with progress.enabled(False):
            assert not progress.is_enabled()
            with progress.bar(range(3)) as off:
                assert off.disable
        assert progress.is_enabled()
        with progress.bar(range(3), show=False) as hidden:
            assert hidden.disable
    # by default, bars are drawn on a terminal only (pytest's captured stderr is none)
    assert not progress.is_enabled()


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "m.spade", tiny_model(channels=8), cs_physics(), protocol="ista-cs")
    write_images(tmp_path / "test", crops(2, offset=5))
    return tmp_path


@pytest.mark.parametrize("command", ["evaluate", "profile"])
def test_bars_go_to_stderr_and_json_stays_one_object(model, command, capsys):
    args = {"evaluate": ["evaluate", str(model / "m.spade"), "--data", str(model / "test")],
            "profile": ["profile", str(model / "m.spade"), "--rounds", "2", "--min-run-time", "0.01",
                        "--side", "66"]}[command] + ["--json"]
    what = {"evaluate": "evaluating (ista-cs)", "profile": "timing 1 candidate(s) x 2 rounds"}[command]
    with progress.enabled(True):  # as on a terminal
        assert main(args) == 0
    shown = capsys.readouterr()
    assert isinstance(json.loads(shown.out), dict)  # stdout: the JSON object alone
    assert BAR.search(shown.err) and what in shown.err
    with progress.enabled(True):
        assert main(args + ["--no-progress"]) == 0
    quiet = capsys.readouterr()
    assert isinstance(json.loads(quiet.out), dict)
    assert not BAR.search(quiet.err) and what not in quiet.err


def test_paired_rounds_tick_once_per_block():
    ticks = []
    paired = PairedRounds({"a": lambda: None, "b": lambda: None, "c": lambda: None}, min_run_time=1e-4)
    paired.run(2, tick=lambda: ticks.append(paired.done))
    assert ticks == [0, 0, 0, 1, 1, 1] and paired.done == 2


def test_estimate_uses_probes_first_then_measured_rates():
    eta = Estimator(profile={"rounds": 2, "min_run_time": 0.5, "backends": ["eager"]},
                    pruning={"crop": 10, "samples": 2, "reconstruct": True})
    # a: 0.3 s per forward + backward on 100 pixels (0.001 s per pixel forward), 3 convolutions
    eta.probes = {"a": Probe(0.3, 100, 1, 3), "b": Probe(0.6, 100, 1, 1)}
    eta.test_pixels = {"a": 200, "b": 100}
    units = [Unit("train", "a", 10), Unit("train", "b", 5), Unit("prune", "a"), Unit("prune", "b"),
             Unit("finetune", "a", 4, "school"), Unit("finetune", "b", 4, "school"), Unit("collect", "")]
    sizes = {"a": 3, "b": 1}
    train = (10 * 0.3 + 5 * 0.6) * FIRST_STEP_FACTOR
    prune = 0.1 * (2 * 2 * 3 + 10) + 0.2 * (2 * 2 * 1 + 10)  # crop pixels x forward per pixel x passes
    finetune = 4 * (0.3 + 0.6) * FIRST_STEP_FACTOR
    collect = 3 * 0.001 * 200 + 3 * (2 * 0.5 + 0.3) + 1 * 0.002 * 100 + 1 * (2 * 0.5 + 0.6)
    seconds, unknown = eta.seconds_left(units, sizes)
    assert seconds == pytest.approx(train + prune + finetune + collect) and unknown == []
    assert eta.remaining(units, sizes).endswith("(from one timed training pass of each model)")

    eta.finished(units[0], 9.0)  # 0.9 s per step: 3x the probe, which now scales b too
    eta.finished(units[2], 4.4)  # twice the modelled prune: so is b's
    eta.finished(units[4], 1.8)  # school on a: half a training step
    assert eta.step_seconds("a") == pytest.approx(0.9) and eta.step_seconds("b") == pytest.approx(1.8)
    assert eta.prune_seconds("b") == pytest.approx(2 * 0.2 * 14)
    assert eta.finetune_seconds("b", "school") == pytest.approx(0.9)
    assert eta.finetune_seconds("b", "supervised") == pytest.approx(1.8)
    seconds, unknown = eta.seconds_left(units, sizes)
    assert seconds == pytest.approx(5 * 1.8 + 2 * 0.2 * 14 + 4 * 0.9 + collect) and unknown == []
    line = eta.remaining(units, sizes)
    assert line.startswith("left: 1 training run (5 steps), 1 prune, 1 fine-tuning run (4 steps), evaluating "
                           "and timing 4 models; about ") and line.endswith("(from seconds per step measured so far)")


def test_epochs_and_unprobed_models_are_named_not_guessed():
    eta = Estimator()
    units = [Unit("train", "a", None), Unit("finetune", "imported", 3, "school")]
    eta.probes = {"a": Probe(0.1, 100)}
    seconds, unknown = eta.seconds_left(units, {})
    assert seconds == 0 and unknown == ["training given in epochs", "fine-tuning of models not probed yet"]


def test_probe_times_a_real_pass_and_sizes_what_is_scored_and_timed():
    eta = Estimator(profile={"side": 66})
    eta.test_shapes = {"cs": [(70, 80), (40, 50)], "mri": [(256, 256)]}
    model = tiny_model(channels=8)
    eta.probe("cs", model, cs_physics(), batch=2, side=33)
    p = eta.probes["cs"]
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert p.seconds > 0 and (p.pixels, p.images, p.convs) == (2 * 33 * 33, 2, convs) and convs > 1
    assert p.timed_pixels == 66 * 66 and eta.test_pixels["cs"] == 70 * 80 + 40 * 50
    mri = build_physics({"kind": "mri", "shape": [32, 32], "mask": "random", "acceleration": 4})
    eta.probe("mri", create_model("du-mri", iterations=2, width=8, depth=2), mri, batch=1, side=None)
    assert eta.probes["mri"].timed_pixels == 32 * 32 and eta.test_pixels["mri"] == 32 * 32  # cropped to the mask


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_lets_idle_openmp_threads_sleep_unless_told_otherwise(given, expected):
    env = {k: v for k, v in spade_env().items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, sys, spade.cli; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.split() == [expected, "False"]  # set before torch loads
