"""The run-directory format: writing, reading and validating records and samples."""
from __future__ import annotations

import json

import numpy as np
import pytest

from spade.errors import SpadeError
from spade.report import append_record, load_sample, read_records, read_run_info, save_sample, write_run_info

CONDITIONS = {"threads": 2, "batch": 1, "input_shape": [1, 272, 8, 8], "device": "cpu", "hardware": "test CPU",
              "torch": "2.x", "allocator": "glibc pinned"}


def record(name="m", **changes):
    base = {"name": name, "family": "ista-net-plus", "sharing": "untied", "role": "unpruned", "params": 10,
            "macs": 100, "conditions": CONDITIONS}
    base.update(changes)
    return base


def test_records_round_trip_in_order(tmp_path):
    append_record(tmp_path, record("a"))
    append_record(tmp_path, record("b", role="pruned", parent="a", ratio=0.5, strategy="school",
                                   latency=[{"backend": "eager", "status": "ok", "median_ms": np.float64(1.5)}]))
    got = read_records(tmp_path)
    assert [r["name"] for r in got] == ["a", "b"]
    assert got[0]["ratio"] is None and got[0]["latency"] is None  # optional keys filled
    assert got[1]["latency"][0]["median_ms"] == 1.5 and got[1]["parent"] == "a"
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["strategy"] == "school"


@pytest.mark.parametrize("bad, message", [
    ({"role": "teacher"}, "role"),
    ({"macs": -1}, "macs"),
    ({"ratio": 1.5}, "ratio"),
    ({"conditions": {"threads": 2}}, "conditions"),
    ({"colour": "red"}, "'colour': unknown key"),
    ({"params": "10"}, "'params'"),
    ({"macs": 1.5}, "'macs'"),
    ({"name": ["x"]}, "'name'"),
    ({"evaluation": {"dataset": "d", "protocol": "p", "psnr": "30 dB"}}, "'evaluation.psnr'"),
    ({"latency": [{"backend": "eager", "status": "ok", "speedup_vs_unpruned_ci": [1.0]}]}, "speedup_vs_unpruned_ci"),
    ({"widths": {"conv": ["a", 1]}}, "'widths"),
    ({"sample": "/etc/passwd"}, "inside samples/"),
    ({"sample": "samples/../../secret.npz"}, "inside samples/"),
    ({"sample": "elsewhere/x.npz"}, "inside samples/"),
    ({"latency": [{"median_ms": 1.0}]}, "backend"),
    ({"evaluation": {"psnr": 30.0}}, "dataset"),
])
def test_invalid_records_are_refused_and_nothing_written(tmp_path, bad, message):
    with pytest.raises(SpadeError, match=message):
        append_record(tmp_path, record(**bad))
    assert not (tmp_path / "results.jsonl").exists()


def test_duplicate_names_and_corrupt_lines_are_reported(tmp_path):
    append_record(tmp_path, record("a"))
    with pytest.raises(SpadeError, match="already has a record named 'a'"):
        append_record(tmp_path, record("a"))
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write("{not json\n")
    with pytest.raises(SpadeError, match="line 2 is not valid JSON"):
        read_records(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpadeError, match="no results.jsonl"):
        read_records(tmp_path / "empty")


def test_samples_and_run_info(tmp_path):
    rec = np.random.default_rng(0).random((1, 8, 8))
    rel = save_sample(tmp_path, "m", rec, rec[0] * 0.5, start=rec, image="camera", psnr=31.2)
    assert rel == "samples/m.npz"
    s = load_sample(tmp_path, rel)
    assert s["reconstruction"].shape == (8, 8) and s["image"] == "camera" and s["psnr"] == pytest.approx(31.2)
    assert np.allclose(s["ground_truth"], rec[0] * 0.5)
    rgb = save_sample(tmp_path, "rgb", np.zeros((3, 4, 4)), np.zeros((4, 4, 3)))
    assert load_sample(tmp_path, rgb)["reconstruction"].shape == (4, 4, 3)
    with pytest.raises(SpadeError, match="differ in shape"):
        save_sample(tmp_path, "x", np.zeros((4, 4)), np.zeros((5, 5)))
    assert read_run_info(tmp_path)["title"] == tmp_path.name
    write_run_info(tmp_path, "CS25 sweep", "notes")
    assert read_run_info(tmp_path) == {"title": "CS25 sweep", "notes": "notes"}


def _raw_line(tmp_path, line: str):
    (tmp_path / "results.jsonl").write_text(line + "\n")
    with pytest.raises(SpadeError) as err:
        read_records(tmp_path)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_hostile_results_files_give_one_line_errors(tmp_path):
    assert "nested" in _raw_line(tmp_path, "[" * 100000 + "]" * 100000)
    deep = json.dumps(record(widths={"a": [1, 2]}))[:-1] + ', "evaluation": ' + '{"x": ' * 30 + "1" + "}" * 30 + "}"
    assert "nested deeper" in _raw_line(tmp_path, deep)
    assert "role" in _raw_line(tmp_path, json.dumps(record(role=None)))
    (tmp_path / "results.jsonl").write_bytes(b"\xff\xfe{}")
    with pytest.raises(SpadeError, match="not UTF-8"):
        read_records(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"title": ["x"]}))
    with pytest.raises(SpadeError, match="string 'title'"):
        read_run_info(tmp_path)


def test_samples_outside_the_run_folder_are_never_read(tmp_path):
    outside = tmp_path / "secret.npz"
    np.savez(outside, reconstruction=np.zeros((4, 4)), ground_truth=np.zeros((4, 4)))
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "samples" / "link.npz").symlink_to(outside)
    for rel in ("../secret.npz", str(outside), "samples/link.npz"):
        with pytest.raises(SpadeError, match="outside"):
            load_sample(run, rel)
    np.savez(run / "samples" / "bad.npz", reconstruction=np.zeros((4, 4)), ground_truth=np.zeros((5, 4)))
    with pytest.raises(SpadeError, match="one shape"):
        load_sample(run, "samples/bad.npz")
    (run / "samples" / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(SpadeError, match="not a readable sample"):
        load_sample(run, "samples/junk.npz")


def test_upsert_keeps_what_the_other_command_wrote(tmp_path):
    from spade.report.results import upsert_record

    upsert_record(tmp_path, "m", "a/m.spade", {"family": "f", "sharing": "untied", "role": "unpruned", "params": 3,
                                                "evaluation": {"dataset": "d", "protocol": "p", "psnr": 30.0}})
    upsert_record(tmp_path, "m", "a/m.spade", {"family": "f", "sharing": "untied", "role": "unpruned", "params": 3,
                                                "macs": 7, "conditions": CONDITIONS})
    (got,) = read_records(tmp_path)
    assert got["evaluation"]["psnr"] == 30.0 and got["macs"] == 7 and got["conditions"]["threads"] == 2
    with pytest.raises(SpadeError, match="from a/m.spade, not b/m.spade"):
        upsert_record(tmp_path, "m", "b/m.spade", {"family": "f", "sharing": None, "role": "unpruned", "params": 1})
