"""``spade report`` end to end: a run directory built from tiny model files, rendered and re-rendered."""
from __future__ import annotations

import base64
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image as PILImage

from spade.cli import main
from spade.data import embedded_photos
from spade.report import append_record
from spade.report.collect import collect_run
from spade.report.render import FIGURES
from tiny_nets import one_thread, tiny_models  # noqa: F401  (fixture)

PNG = b"\x89PNG\r\n\x1a\n"
REQUIRED_COLUMNS = ["model", "family", "sharing", "ratio", "importance", "strategy", "dataset", "protocol", "psnr",
                    "ssim", "params", "macs", "median_ms", "speedup_vs_unpruned", "speedup_vs_recursive", "backend",
                    "threads", "torch", "hardware"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    models = tiny_models(root)
    data = root / "images"
    data.mkdir()
    for photo in embedded_photos()[:2]:  # two small real crops keep the evaluation quick
        PILImage.fromarray(photo.pixels[:64, :64]).save(data / f"{photo.name}.png")
    run = root / "run"
    collect_run(run, [models["base"], {"path": models["half"], "strategy": "school"}, models["rec"]], str(data),
                threads=1, side=33, rounds=2, min_run_time=0.001, title="tiny sweep", breakdown=True)
    for path in models.values():
        path.unlink()  # the report must not need the models
    return run


def _report(run, out) -> int:
    return main(["report", str(run), "--out", str(out)])


def test_report_writes_every_file_and_figure(run_dir, tmp_path, capsys):
    out = tmp_path / "reports" / "tiny"
    assert _report(run_dir, out) == 0
    assert "wrote" in capsys.readouterr().out
    for key in [k for k, _ in FIGURES] + ["breakdown", "samples-1"]:
        data = (out / "figures" / f"{key}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, key
    page = (out / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(FIGURES) + 2  # the breakdown and one sample figure
    assert "Where one eager call&#39;s time goes" in page or "Where one eager call's time goes" in page
    assert all(base64.b64decode(e).startswith(PNG) for e in embedded)
    assert "http" not in page.replace("http-equiv", "")  # self-contained
    summary = (out / "summary.md").read_text()
    assert "# tiny sweep" in summary and "protocol ista-cs" in summary and "1 thread(s)" in summary
    for text in (summary, page):
        assert "Start PSNR" in text and "What this means" in text and "Speedup vs unpruned (95% interval)" in text
        assert re.search(r"\d+\.\d\d dB", text) and re.search(r"\d\.\d\d× \(\d\.\d\d–\d\.\d\d\)", text)
        assert "2 test image(s)" in text


def test_breakdown_of_unpruned_pruned_and_recursive_side_by_side(run_dir):
    from spade.report.results import BREAKDOWN_PARTS, read_records
    records = {r["name"]: r for r in read_records(run_dir)}
    assert set(records) == {"base", "half", "rec"}
    for r in records.values():  # the fine-tuned half is the only model of its architecture: broken down too
        b = r["breakdown"]
        assert set(b["parts"]) == set(BREAKDOWN_PARTS) and b["parts"]["convs"] > 0 and b["measured_ms"] > 0
        assert abs(sum(b["convs"].values()) - b["parts"]["convs"]) < 1e-6 and b["ceiling_priors_free"] > 1
    base, half = records["base"]["breakdown"], records["half"]["breakdown"]
    assert set(base["convs"]) != set(half["convs"])  # conv labels name the widths: 8 -> 8 vs 4 -> 4
    assert any("4->4" in k for k in half["convs"]) and any("8->8" in k for k in base["convs"])


def test_results_csv_rows_and_labels(run_dir, tmp_path):
    out = tmp_path / "r"
    assert _report(run_dir, out) == 0
    df = pd.read_csv(out / "results.csv")
    assert set(REQUIRED_COLUMNS) <= set(df.columns)
    assert list(df["model"]) == ["base", "half", "rec"] and set(df["backend"]) == {"eager"}
    for col in ("protocol", "dataset", "hardware", "threads", "torch", "allocator"):
        assert df[col].notna().all(), col
    half = df.set_index("model").loc["half"]
    assert (half["role"], half["ratio"], half["strategy"], half["parent"]) == ("pruned", 0.5, "school", "base")
    base = df.set_index("model").loc["base"]
    assert base["speedup_vs_unpruned"] == 1.0 and half["macs_reduction"] > 2
    assert half["speedup_vs_unpruned_low"] <= half["speedup_vs_unpruned"] <= half["speedup_vs_unpruned_high"]
    assert half["clock"] in ("wall", "cpu") and half["finetune_data"] == "none" and half["n_images"] == 2
    rec = df.set_index("model").loc["rec"]
    assert rec["speedup_vs_recursive"] == 1.0 and rec["sharing"] == "recursive"


def test_report_regenerates_identically_from_files(run_dir, tmp_path):
    assert _report(run_dir, tmp_path / "a") == 0
    assert _report(run_dir, tmp_path / "b") == 0
    assert (tmp_path / "a" / "results.csv").read_text() == (tmp_path / "b" / "results.csv").read_text()
    assert (tmp_path / "a" / "summary.md").read_text() == (tmp_path / "b" / "summary.md").read_text()
    assert _report(run_dir, tmp_path / "a") == 0  # a previous report is replaced


def test_rendering_never_imports_models_or_profiler():
    code = ("import sys, spade.report, spade.commands.report; print(sorted(m for m in sys.modules "
            "if m.startswith(('spade.models', 'spade.profile', 'spade.evaluation'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_without_quality_or_latency_still_renders_every_figure(tmp_path):
    run = tmp_path / "run"
    cond = {"threads": 2, "batch": 1, "input_shape": [1, 1, 8, 8], "device": "cpu", "hardware": "x", "torch": "t",
            "allocator": "a"}
    append_record(run, {"name": "only", "family": "f", "sharing": "untied", "role": "unpruned", "params": 1,
                        "macs": 1, "conditions": cond})
    assert _report(run, tmp_path / "out") == 0
    for key in [k for k, _ in FIGURES] + ["samples-1"]:
        assert (tmp_path / "out" / "figures" / f"{key}.png").read_bytes().startswith(PNG)


def test_bad_inputs_exit_2_and_write_nothing(run_dir, tmp_path, capsys):
    assert _report(tmp_path / "missing", tmp_path / "o1") == 2
    assert _report(run_dir, run_dir) == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert _report(run_dir, busy) == 2
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.jsonl").write_text('{"name": "x"}\n')
    assert _report(corrupt, tmp_path / "o2") == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith("spade report: error") for e in errors)
    assert "line 1: 'family': missing" in errors[3]
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_samples_hold_images_on_a_unit_scale(run_dir):
    with np.load(run_dir / "samples" / "half.npz") as s:
        assert s["reconstruction"].shape == s["ground_truth"].shape == (64, 64)
        assert 0 <= s["ground_truth"].min() and s["ground_truth"].max() <= 1 and s["ground_truth"].max() > 0.2
