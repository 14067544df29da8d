"""Run folders from hand-run commands (`spade profile/evaluate --out`), and what a report
does with hostile content: titles and names escaped, never markup."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from PIL import Image as PILImage

from spade.cli import main
from spade.data import embedded_photos
from spade.report import append_record, read_records, write_run_info
from spade.report.render import md
from spade.models import model_name, model_names
from tiny_nets import one_thread, tiny  # noqa: F401  (fixtures)

FAST = ["--threads", "1", "--side", "33", "--rounds", "2", "--max-rounds", "2", "--min-run-time", "0.001"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for photo in embedded_photos()[:2]:
        PILImage.fromarray(photo.pixels[:48, :48]).save(folder / f"{photo.name}.png")
    return folder


def test_profile_and_evaluate_out_build_a_reportable_run(tiny, images, tmp_path, capsys):
    run = tmp_path / "run"
    nested = tmp_path / "half" / "model.spade"  # named after its folder
    nested.parent.mkdir()
    shutil.copy(tiny["half"], nested)
    assert main(["profile", str(tiny["base"]), str(nested), "--out", str(run), *FAST]) == 0
    for model in (tiny["base"], nested):
        assert main(["evaluate", str(model), "--data", str(images), "--out", str(run)]) == 0
    records = {r["name"]: r for r in read_records(run)}
    assert list(records) == ["base", "half"]
    half = records["half"]
    assert half["latency"][0]["speedup_vs_unpruned_ci"] and half["conditions"]["threads"] == 1  # from profile
    assert half["evaluation"]["n_images"] == 2 and half["sample"] == "samples/half.npz"  # from evaluate
    assert half["ratio"] == 0.5 and half["finetune_data"] == "none" and half["role"] == "pruned"
    capsys.readouterr()
    assert main(["report", str(run)]) == 0  # --out defaults to RUN/report
    df = pd.read_csv(run / "report" / "results.csv")
    assert list(df["model"]) == ["base", "half"] and df["psnr"].notna().all() and df["median_ms"].notna().all()
    assert (df["finetune_data"] == "none").all()


def test_report_accepts_a_spade_run_output_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    append_record(out / "results", {"name": "m", "family": "f", "sharing": "untied", "role": "unpruned",
                                    "params": 1, "macs": 1})
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.html").is_file()


def test_model_names():
    assert model_name("a/b/du-mri.spade") == "du-mri"
    assert model_name("runs/du-mri-p50/model.spade") == "du-mri-p50"
    assert model_names(["a/x.spade", "b/x.spade", "runs/x/train/foo/model.spade"]) == [
        "a/x.spade", "b/x.spade", "foo"]


def test_titles_names_and_notes_are_escaped_in_both_pages(tmp_path):
    run = tmp_path / "run"
    evil = "<script>alert(1)</script>"
    append_record(run, {"name": f"m{evil}|x*", "family": "f", "sharing": "untied", "role": "unpruned",
                        "params": 1, "macs": 1, "strategy": "![i](http://e/x.png)",
                        "evaluation": {"dataset": "[d](javascript:x)", "protocol": "p", "psnr": 30.0}})
    write_run_info(run, f"T {evil}", notes="n <img src=x onerror=alert(1)>\n# heading")
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    summary = (tmp_path / "out" / "summary.md").read_text()
    for text in (page, summary):
        assert "<script>" not in text and "<img src=x" not in text
        assert "&lt;script&gt;" in text
    assert "![i](" not in summary and "[d](" not in summary and "\n# heading" not in summary
    assert "m&lt;script&gt;alert(1)&lt;/script&gt;\\|x\\*" in summary  # one table cell


def test_md_filter():
    assert md("a|b *c* [l](u) <b>") == "a\\|b \\*c\\* \\[l\\](u) &lt;b&gt;"
    assert md("two\nlines") == "two lines"


def test_bad_run_folders_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps({"name": "m", "family": "f", "sharing": None, "role": "pruned",
                                                   "params": 1, "sample": "../../etc/passwd"}) + "\n")
    assert main(["report", str(run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside samples/" in err[0]
    assert not (tmp_path / "o").exists()
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", "nonexistent.spade", "--out", str(tmp_path / "file")]) == 2
