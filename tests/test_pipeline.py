"""``spade run``: recipes validated up front, the whole pipeline end to end on a tiny
ISTA-Net+, resumption stage by stage, and the latency-budget mode."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

from finetune_helpers import REPO, crops, cs_physics, tiny_model, write_images
from spade.cli import main
from spade.models import load_model, save_model
from spade.pipeline import read_pipeline_recipe
from spade.pipeline.recipe import strategy_slug

RECIPE = """
title = "tiny"
[data]
test = "{test}"
train = "{train}"
[[models]]
name = "tiny"
file = "tiny.spade"
[[models]]
name = "tiny-recursive"
role = "recursive"
distill = {{family = "ista-net-plus", preset = "recursive", teacher = "tiny", steps = 2, batch = 2, patch = 33, init = "teacher"}}
[prune]
ratios = [0.5]
importance = "l1"
[finetune]
strategies = ["supervised", "school", "self-supervised"]
steps = 2
batch = 2
patch = 33
[finetune.supervised]
lr = 2e-4
[profile]
rounds = 1
min_run_time = 0.01
side = 66
[budget]
speedup = 1.01
"""


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "tiny.spade", tiny_model(channels=8), cs_physics(), protocol="ista-cs")
    write_images(tmp_path / "train", crops(3, offset=0))
    write_images(tmp_path / "test", crops(2, offset=5))
    (tmp_path / "recipe.toml").write_text(RECIPE.format(test=tmp_path / "test", train=tmp_path / "train"))
    return tmp_path


def _run(files, *extra) -> int:
    return main(["run", str(files / "recipe.toml"), "--out", str(files / "out"), "--report", str(files / "report"),
                 "--no-progress", *extra])


def test_pipeline_end_to_end_and_resume(files, capsys):
    assert _run(files) == 0
    out = files / "out"
    log = capsys.readouterr().out.splitlines()
    # the estimate comes first, then what remains before each stage, from the rates measured
    assert log[0].startswith("to run: 1 distillation (2 steps), 1 prune, 3 fine-tuning runs (6 steps), evaluating "
                             "and timing 6 models, the report; about ")
    assert "; about " in log[0] and "(from one timed training pass of each model) [estimated in " in log[0]
    assert any(line.startswith("  left: 3 fine-tuning runs (6 steps)") and "measured so far" in line for line in log)
    assert any(line.startswith("done in ") and "estimated at the start: about" in line for line in log)
    assert "  tiny-recursive: blocks start from the teacher's blocks [0, 0, 1]" in log
    names = {p.stem for p in (out / "models").glob("*.spade")}
    assert names == {"tiny-recursive", "tiny-r50", "tiny-r50-supervised", "tiny-r50-school",
                     "tiny-r50-self-supervised"}
    assert not list((out / "models").glob("*.ckpt")) and not list((out / "models").glob("*.init.spade"))
    pruned = load_model(out / "models" / "tiny-r50-school.spade")
    assert pruned.spec["pruning"]["ratio"] == 0.5 and pruned.spec["finetuning"]["strategy"] == "school"
    train = f"train:{files / 'train'}"  # every strategy fine-tunes on the training images, never the test images
    assert pruned.spec["finetuning"]["data_used"] == "patches measured on the fly"
    assert pruned.spec["finetuning"]["finetune_data"] == train
    sup = load_model(out / "models" / "tiny-r50-supervised.spade").spec["finetuning"]
    assert sup["data_used"] == "patches measured on the fly" and sup["finetune_data"] == train
    assert sup["settings"]["lr"] == 2e-4 and pruned.spec["finetuning"]["settings"]["lr"] == 1e-4
    distilled = load_model(out / "models" / "tiny-recursive.spade").model.config
    assert distilled["sharing"] == "recursive" and distilled["channels"] == 8  # the teacher's width, the preset's mode

    df = pd.read_csv(files / "report" / "results.csv")
    assert set(df["model"]) == {"tiny", "tiny-recursive"} | names - {"tiny-recursive"}
    assert set(df.loc[df["role"] == "pruned", "strategy"].fillna("none")) == {"none", "supervised", "school", "self-supervised"}
    assert (df["protocol"] == "ista-cs").all() and df["psnr"].notna().all() and df["median_ms"].notna().all()
    assert df.loc[df["model"] == "tiny-r50", "macs"].item() < df.loc[df["model"] == "tiny", "macs"].item()
    assert (files / "report" / "report.html").is_file() and (files / "report" / "figures" / "pareto.png").is_file()

    budget = json.loads((out / "budget.json").read_text())
    assert budget["target_speedup"] == 1.01 and len(budget["candidates"]) == 4
    if budget["chosen"]:
        assert budget["chosen"]["speedup_vs_unpruned"] >= 1.01
        assert budget["chosen"]["psnr"] == max(c["psnr"] for c in budget["candidates"] if c["meets"])

    # resume: missing stage outputs are rebuilt alone (a distilled model identically: its
    # initialisation is seeded), then the results, older than they, are collected again
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.spade")}
    first = load_model(out / "models" / "tiny-recursive.spade").model.state_dict()
    (out / "models" / "tiny-r50-school.spade").unlink()
    (out / "models" / "tiny-recursive.spade").unlink()
    capsys.readouterr()
    assert _run(files, "--resume", "--json") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds the JSON object only
    assert "rebuilt after" in captured.err  # results older than a model are not reused
    # a resumed run estimates what is left of it: the missing models, then the results again
    assert captured.err.startswith("to run: 1 distillation (2 steps), 1 fine-tuning run (2 steps), evaluating "
                                   "and timing 6 models, the report; about ")
    assert summary["models"] == 6 and summary["budget"]["target_speedup"] == 1.01
    after = {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.spade")}
    assert after.keys() == stamps.keys()
    assert sorted(n for n in after if after[n] != stamps[n]) == ["tiny-r50-school.spade", "tiny-recursive.spade"]
    again = load_model(out / "models" / "tiny-recursive.spade").model.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert _run(files, "--resume") == 0  # nothing left to do: the results are kept
    assert f"{out / 'results'} exists, kept" in capsys.readouterr().out


def test_existing_run_needs_resume_and_the_same_recipe(files, capsys):
    (files / "out").mkdir()
    (files / "out" / "something").write_text("x")
    assert _run(files) == 2
    assert "give --resume" in capsys.readouterr().err
    (files / "out" / "recipe.toml").write_text("title = 'another'\n")
    assert _run(files, "--resume") == 2
    assert "differs from the one" in capsys.readouterr().err
    assert not (files / "report").exists()


def test_resume_accepts_changes_to_stages_not_run_yet(files, capsys):
    """A changed recipe resumes when the changed sections drive stages without outputs;
    otherwise the error names what to remove."""
    assert _run(files) == 0
    text = (files / "recipe.toml").read_text()
    (files / "recipe.toml").write_text(text.replace("rounds = 1", "rounds = 2"))
    capsys.readouterr()
    assert _run(files, "--resume") == 2
    err = capsys.readouterr().err
    assert "differs from the one" in err and "[profile]" in err and str(files / "out" / "results") in err
    shutil.rmtree(files / "out" / "results")  # what [profile] made
    assert _run(files, "--resume") == 0
    assert "recipe changed in [profile]: only stages not run yet are affected" in capsys.readouterr().out
    assert (files / "out" / "recipe.toml").read_text() == text.replace("rounds = 1", "rounds = 2")


@pytest.mark.parametrize("change, message", [
    (("[prune]", "[prune]\nspeed = 3"), "unknown key(s) ['speed']"),
    (("ratios = [0.5]", "ratios = [1.5]"), "ratios = 1.5: a ratio is the fraction of channels removed, in [0, 1)"),
    (("importance = \"l1\"", "importance = \"l7\""), "importance 'l7': choose one of"),
    (("\"school\"", "\"schol\""), "unknown strategy 'schol'"),
    (("file = \"tiny.spade\"", "file = \"missing.spade\""), "does not exist"),
    (("teacher = \"tiny\"", "teacher = \"nobody\""), "distill.teacher 'nobody' must name another"),
    (("name = \"tiny-recursive\"", "name = \"tiny\""), "model names must be unique"),
    (("init = \"teacher\"", "init = \"best\""), "distill init = 'best': choose one of ['random', 'teacher']"),
    (("role = \"recursive\"", "role = \"baseline\""), "choose one of ['unpruned', 'recursive']"),
    (("speedup = 1.01", "speedup = 0.5"), "[budget] speedup = 0.5"),
    (("rounds = 1", "rounds = 0"), "[profile] rounds = 0 must be a whole number >= 1"),
    (("side = 66", "side = 66\nbreakdown = \"yes\""), "[profile] breakdown = 'yes': give true or false"),
    (("side = 66", "side = 66\ntolerance = -1"), "[profile] tolerance = -1: give the largest"),
    (("title = \"tiny\"", "title = [1"), "is not valid TOML"),
    # the engine's own schema checks every strategy's settings before anything is written
    (("patch = 33\n[finetune.supervised]", "clip = -1\npatch = 33\n[finetune.supervised]"), "clip = -1 must be"),
    (("lr = 2e-4", "schedule = \"warp\""), "schedule = 'warp' is not one of"),
    (("lr = 2e-4", "data_mode = \"all\""), "data_mode = 'all' is not one of"),
    (("lr = 2e-4", "noise = -0.5"), "noise_level = -0.5 must be a number >= 0"),
    (("[finetune.supervised]", "[finetune.self-supervised]\ntransforms = [\"spin\"]\n[finetune.supervised]"),
     "spin"),
    (("ratios = [0.5]", "ratios = [0.5, 0.25]\nprogressive = true"), "give increasing ratios"),
    (("ratios = [0.5]", "ratios = [0.5]\nspeedups = [0.8]"), "[prune] speedups = [0.8]: give latency targets above 1"),
    (("ratios = [0.5]", "ratios = []"), "[prune] ratios must be a non-empty list"),
    (("importance = \"l1\"", "importance = \"l1\"\nreconstruct = 1"), "reconstruct = 1: give true or false"),
    (("importance = \"l1\"", "importance = \"l1\"\ndepth_refit = \"no\""), "depth_refit = 'no': give true or false"),
    (("batch = 2\npatch = 33", "batch = 2\npatch = 33\ntest_time = true"), "['supervised'] uses ground truth: set test_time for school / self-supervised only"),
    (("[profile]", "[quantize]\nmodels = \"some\"\n[profile]"), "[quantize] models = 'some': choose one of"),
    (("[profile]", "[quantize]\nsamples = 0\n[profile]"), "[quantize] samples must be >= 1"),
    (("[profile]", "[quantize]\nbits = 4\n[profile]"), "[quantize] has unknown key(s) ['bits']"),
    (("speedup = 1.01", "speedup = 1.01\nbackend = \"onnxruntime-int8\""), "or give [quantize] for 'onnxruntime-int8'"),
])
def test_bad_recipes_are_rejected_before_anything_runs(files, capsys, change, message):
    text = (files / "recipe.toml").read_text()
    assert change[0] in text
    (files / "recipe.toml").write_text(text.replace(change[0], change[1], 1))
    assert _run(files) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (files / "out").exists() and not (files / "report").exists()


def test_pruning_data_and_strategy_options_are_checked(files, capsys):
    """Data-driven pruning scores images with their ground truth: it needs a training
    split, never the test set; strategy options go to the strategies that use them."""
    minimal = (f'[data]\ntest = "{files / "test"}"\n[[models]]\nname = "tiny"\nfile = "tiny.spade"\n'
               '[prune]\nratios = [0.5]\nimportance = "taylor"\n')
    (files / "recipe.toml").write_text(minimal)
    assert _run(files) == 2
    assert "needs training images (scored with their ground truth" in capsys.readouterr().err
    text = minimal.replace("taylor", "l1") + '[finetune]\nstrategies = ["self-supervised"]\nsteps = 2\niterates = 0.5\n'
    (files / "recipe.toml").write_text(text)
    assert _run(files) == 2
    assert "'iterates' applies to ['school']" in capsys.readouterr().err
    assert not (files / "out").exists()


@pytest.mark.parametrize("test, message", [("missing", "is neither a folder nor one of"),
                                           ("train", "training and test images overlap")])
def test_test_images_must_load_and_differ_from_the_training_images(files, capsys, test, message):
    text = (files / "recipe.toml").read_text().replace(str(files / "test"), str(files / test))
    (files / "recipe.toml").write_text(text)
    assert _run(files) == 2
    assert message in capsys.readouterr().err
    assert not (files / "out").exists()


QUANTIZE_RECIPE = """
title = "tiny int8"
[data]
test = "{test}"
train = "{train}"
[[models]]
name = "tiny"
file = "tiny.spade"
[prune]
ratios = [0.5]
importance = "l1"
reconstruct = false
[quantize]
models = "all"
samples = 2
rounds = 1
min_run_time = 0.01
[profile]
rounds = 1
min_run_time = 0.01
side = 66
threads = 1
[budget]
speedup = 1.01
backend = "onnxruntime-int8"
"""


def test_quantize_stage_adds_int8_rows_to_results_and_report(files, capsys):
    (files / "recipe.toml").write_text(QUANTIZE_RECIPE.format(test=files / "test", train=files / "train"))
    assert _run(files) == 0, capsys.readouterr().err
    out = files / "out"
    assert sorted(p.name for p in (out / "quantized").iterdir()) == ["tiny-int8.json", "tiny-int8.onnx",
                                                                    "tiny-r50-int8.json", "tiny-r50-int8.onnx"]
    report = json.loads((out / "quantized" / "tiny-r50-int8.json").read_text())
    assert report["calibration"]["data"] == str(files / "train")  # calibrated on training images, never the test set
    assert report["onnx_baseline"] == "reference onnxruntime"  # the unpruned model in float on ONNX Runtime
    df = pd.read_csv(files / "report" / "results.csv").set_index("model")
    assert set(df.index) == {"tiny", "tiny-r50", "tiny-int8", "tiny-r50-int8"}
    int8 = df[df["precision"] == "int8"]
    assert set(int8.index) == {"tiny-int8", "tiny-r50-int8"} and (int8["backend"] == "onnxruntime-int8").all()
    assert (df.loc[["tiny", "tiny-r50"], "precision"] == "float32").all()
    assert df.loc["tiny-int8", "role"] == "unpruned" and df.loc["tiny-r50-int8", "role"] == "pruned"
    assert df.loc["tiny-r50-int8", "parent"] == "tiny" and df.loc["tiny-r50-int8", "ratio"] == 0.5
    assert df.loc["tiny-r50-int8", "macs"] == df.loc["tiny-r50", "macs"]
    assert int8["psnr"].notna().all() and int8["float_psnr"].notna().all() and int8["speedup_vs_unpruned"].notna().all()
    assert (int8["dataset"] == f"{files / 'test'} fitted to 66x66").all()
    assert (int8["psnr"] - int8["float_psnr"]).abs().max() < 1.0  # INT8 priors stay close to float
    summary = (files / "report" / "summary.md").read_text()
    assert "INT8 rows (backend onnxruntime-int8)" in summary and "tiny-r50-int8: " in summary
    assert "| tiny-r50-int8 | pruned |" in summary and "fitted to 66x66 — protocol ista-cs" in summary
    assert not (files / "report" / "figures" / "breakdown.png").exists()  # [profile] breakdown is off by default
    budget = json.loads((out / "budget.json").read_text())
    assert budget["backend"] == "onnxruntime-int8" and {c["model"] for c in budget["candidates"]} == {"tiny-r50-int8"}

    # resume: a missing INT8 report is quantized again, then the results are collected again
    (out / "quantized" / "tiny-r50-int8.json").unlink()
    capsys.readouterr()
    assert _run(files, "--resume") == 0
    text = capsys.readouterr().out
    assert "quantize tiny-r50 (calibrated on" in text and "tiny-int8.json exists, kept" in text
    assert "rebuilt after" in text


def test_quantize_needs_training_images_for_calibration(files, capsys):
    text = QUANTIZE_RECIPE.format(test=files / "test", train=files / "train").replace(f'train = "{files / "train"}"\n', "")
    (files / "recipe.toml").write_text(text)
    assert _run(files) == 2
    assert "[quantize] calibrates on training images, never the test images" in capsys.readouterr().err
    assert not (files / "out").exists()


def test_test_time_adaptation_is_explicit_and_recorded(files):
    """``test_time = true``: school adapts to the test measurements, and the model file
    and the results row say so."""
    text = (files / "recipe.toml").read_text().replace('["supervised", "school", "self-supervised"]',
                                                       '["supervised", "school"]')
    (files / "recipe.toml").write_text(text + "[finetune.school]\ntest_time = true\n")
    assert _run(files) == 0
    school = load_model(files / "out" / "models" / "tiny-r50-school.spade").spec["finetuning"]
    assert school["finetune_data"] == "test" and school["data_used"] == "whole images measured once"
    assert school["data"] == str(files / "test")
    df = pd.read_csv(files / "report" / "results.csv").set_index("model")
    assert df.loc["tiny-r50-school", "finetune_data"] == "test" and df.loc["tiny-r50", "finetune_data"] == "none"
    assert df.loc["tiny-r50-supervised", "finetune_data"] == f"train:{files / 'train'}"
    assert df.loc["tiny-recursive", "finetune_data"] == f"train:{files / 'train'}"


def test_progressive_pruning_prunes_the_recovered_model_again(files):
    """``progressive = true``: 0.5 is reached by pruning the school-tuned 0.25 model by a
    third of its channels (re-fitted on training crops), the teacher staying the original."""
    text = (files / "recipe.toml").read_text().replace("ratios = [0.5]", "ratios = [0.25, 0.5]\nprogressive = true")
    (files / "recipe.toml").write_text(text.replace('["supervised", "school", "self-supervised"]', '["school"]'))
    assert _run(files) == 0
    models = files / "out" / "models"
    half = load_model(models / "tiny-r50.spade").spec
    assert abs(half["pruning"]["ratio"] - 1 / 3) < 1e-9 and half["pruning"]["previous"]["ratio"] == 0.25
    assert half["pruning"]["reconstruct"]["layers"]  # re-fitted on the training crops
    assert half["finetuning"]["strategy"] == "school"  # the step it was pruned from was fine-tuned
    assert half["widths"]["sharing.blocks.0.conv1_forward"] == [4, 4]  # 8 channels at the start
    df = pd.read_csv(files / "report" / "results.csv").set_index("model")
    train = f"train:{files / 'train'}"
    assert df.loc["tiny-r50", "finetune_data"] == train and df.loc["tiny-r25", "finetune_data"] == "none"
    assert df.loc["tiny-r50-school", "pruned_psnr"] == df.loc["tiny-r50", "psnr"]


def test_latency_targets_prune_to_a_planned_speedup_and_are_reported_as_such(files):
    """``speedups = [1.2]``: a model pruned by a latency plan (table in OUT), fine-tuned like
    the ratios' models, its rows naming the target and the share of channels it removed."""
    text = (files / "recipe.toml").read_text().replace("ratios = [0.5]", "ratios = []\nspeedups = [1.2]")
    text = text.replace("side = 66", "side = 66\ntolerance = 0.002")  # passed on to the backends' check
    (files / "recipe.toml").write_text(text.replace('["supervised", "school", "self-supervised"]', '["school"]'))
    assert _run(files) == 0
    out = files / "out"
    spec = load_model(out / "models" / "tiny-s120.spade").spec["pruning"]
    search = spec["latency_plan"]["depth_search"]
    assert spec["latency_plan"]["target_speedup"] == 1.2 and search["searched"]  # training images: depth planned too
    removed = len((spec["depth"] or {}).get("removed") or [])
    assert removed == search["chosen"] and (0 < spec["ratio"] < 1 or removed)
    assert (out / "latency-table.json").is_file()
    df = pd.read_csv(files / "report" / "results.csv").set_index("model")
    assert (df.loc[["tiny-s120", "tiny-s120-school"], "target_speedup"] == 1.2).all()
    assert (df.loc[["tiny-s120", "tiny-s120-school"], "ratio"] == spec["ratio"]).all()
    assert (df.loc[["tiny-s120", "tiny-s120-school"], "units_removed"] == removed).all()
    assert df.loc["tiny-s120-school", "pruned_psnr"] == df.loc["tiny-s120", "psnr"]
    summary = (files / "report" / "summary.md").read_text()
    assert "1.2× latency plan" in summary
    assert (f"{spec['ratio']:.2f}, 1 iteration removed (" in summary) == (removed == 1)
    records = [json.loads(line) for line in (out / "results" / "results.jsonl").read_text().splitlines()]
    assert {r["conditions"]["tolerance"] for r in records} == {0.002}


def test_a_file_that_is_not_a_model_is_refused_before_anything_is_written(files, capsys):
    (files / "tiny.spade").write_bytes(b"not a model")
    assert _run(files) == 2
    assert "cannot read model file" in capsys.readouterr().err
    assert not (files / "out").exists()


def test_a_run_stopped_before_its_first_output_starts_afresh(files, capsys):
    """A folder holding only the recipe of a run that produced nothing is not a run to
    resume: after fixing the recipe, the same --out works without --resume."""
    (files / "out" / "models").mkdir(parents=True)
    (files / "out" / "recipe.toml").write_text("title = 'a run that failed at once'\n")
    text = (files / "recipe.toml").read_text().replace("strategies = [\"supervised\", \"school\", \"self-supervised\"]",
                                                       "strategies = []")
    (files / "recipe.toml").write_text(text.replace("[budget]\nspeedup = 1.01\n", ""))
    assert _run(files) == 0, capsys.readouterr().err
    assert (files / "out" / "recipe.toml").read_text() == (files / "recipe.toml").read_text()


MISSING_SET = """
[data]
test = "set11"
train = "urban100"
[[models]]
name = "tiny"
file = "tiny.spade"
[finetune]
strategies = ["school"]
steps = 1
"""


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_a_missing_benchmark_set_is_named_with_where_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPADE_BENCH_DATA", str(tmp_path / "no-data"))
    save_model(tmp_path / "tiny.spade", tiny_model(channels=8), cs_physics(), protocol="ista-cs")
    (tmp_path / "recipe.toml").write_text(MISSING_SET)
    assert main(["run", str(tmp_path / "recipe.toml"), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = _one_line(capsys)
    assert "benchmark data 'set11' not found at " + str(tmp_path / "no-data" / "images" / "Set11") in err
    assert "data/Set11 of the official ISTA-Net-PyTorch release" in err and "set SPADE_BENCH_DATA" in err
    assert "README.md, section 'Benchmark data'" in err
    assert not (tmp_path / "out").exists()


def test_benchmark_recipes_without_the_data_name_the_official_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPADE_BENCH_DATA", str(tmp_path / "no-data"))
    monkeypatch.chdir(tmp_path)  # recipes name the data through SPADE_BENCH_DATA, from any folder
    recipes = sorted((REPO / "recipes").glob("*.toml"))
    assert recipes
    for recipe in recipes:
        assert main(["run", str(recipe), "--out", str(tmp_path / recipe.stem), "--no-progress"]) == 2
        err = _one_line(capsys)
        assert str(tmp_path / "no-data" / "ista_net_plus") in err and "net_params_200.pkl does not exist" in err
        assert "github.com/jianzhangcs/ISTA-Net-PyTorch" in err and "README.md, section 'Benchmark data'" in err
        assert not (tmp_path / recipe.stem).exists()


def test_training_recipe_files_under_the_data_root_are_named_with_the_readme(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPADE_BENCH_DATA", str(tmp_path / "no-data"))
    recipe = REPO / "recipes" / "train" / "cs25-ista-net-plus.toml"
    assert main(["train", str(recipe), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = _one_line(capsys)
    assert f"{tmp_path / 'no-data' / 'ista_net_plus' / 'cs25' / 'phi_0_25_1089.mat'} does not exist" in err
    assert "SPADE_BENCH_DATA is set" in err and "README.md, section 'Benchmark data'" in err


def test_a_missing_recipe_is_one_clear_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_shipped_recipes_validate(request):
    """The demo recipe (inside the package) and the benchmark recipes parse and validate."""
    from importlib import resources
    from pathlib import Path

    demo = read_pipeline_recipe(resources.files("spade") / "recipes" / "demo.toml")
    assert [m["role"] for m in demo["models"]].count("recursive") == 2
    assert set(demo["strategies"]) == {"supervised", "school", "self-supervised"}
    # the demo fine-tunes on training images only, never on the test measurements
    assert not any(settings["test_time"] for settings in demo["strategies"].values())
    unpruned = [m for m in demo["models"] if m["role"] == "unpruned"]
    assert len(unpruned) == 2 and all(m["train_data"] and m["train_data"] != m["test"] for m in unpruned)
    request.getfixturevalue("bench_data")  # the benchmark recipes read it
    for path in sorted(Path(REPO / "recipes").glob("*.toml")):
        recipe = read_pipeline_recipe(path)
        assert {m["role"] for m in recipe["models"]} == {"unpruned", "recursive"}


def test_strategy_slug():
    assert strategy_slug("school:1,self-supervised:0.5") == "school+self-supervised"
    assert strategy_slug("supervised") == "supervised"


def test_demo_reads_its_packaged_recipe(tmp_path, capsys):
    """``spade demo`` goes through the same runner: resuming a run that never started is refused."""
    assert main(["demo", "--out", str(tmp_path / "demo"), "--resume", "--no-progress"]) == 2
    assert "holds no pipeline run to resume" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def _record(name, role, psnr, speedups):
    return {"name": name, "role": role, "macs": 10, "evaluation": {"psnr": psnr} if psnr is not None else None,
            "latency": [{"backend": b, "speedup_vs_unpruned": s} for b, s in speedups.items()]}


def test_budget_selection_is_the_best_psnr_that_is_fast_enough():
    from spade.pipeline.budget import choose_within_budget
    records = [_record("base", "unpruned", 32.0, {"eager": 1.0}),
               _record("fast-bad", "pruned", 28.0, {"eager": 3.0, "onnxruntime": 1.2}),
               _record("fast-good", "pruned", 30.0, {"eager": 2.1, "onnxruntime": 2.6}),
               _record("slow-best", "pruned", 31.5, {"eager": 1.4}),
               _record("untimed", "pruned", 33.0, {}),
               _record("unscored", "pruned", None, {"eager": 5.0})]
    out = choose_within_budget(records, 2.0, "eager")
    assert out["chosen"]["model"] == "fast-good" and out["fastest"]["model"] == "fast-bad"
    assert [c["model"] for c in out["candidates"]] == ["slow-best", "fast-good", "fast-bad"]
    assert [c["meets"] for c in out["candidates"]] == [False, True, True]
    assert choose_within_budget(records, 2.5, "onnxruntime")["chosen"]["model"] == "fast-good"
    none = choose_within_budget(records, 4.0, "eager")
    assert none["chosen"] is None and none["fastest"]["model"] == "fast-bad"
    assert choose_within_budget(records[:1], 1.5, "eager") == {"target_speedup": 1.5, "backend": "eager",
                                                               "chosen": None, "fastest": None, "candidates": []}
