"""``spade profile`` end to end on tiny model files: structure and consistency, never speed."""
from __future__ import annotations

import json
import statistics
import shutil

import pytest

from spade.cli import main
from spade.models import count_parameters, load_model
from spade.profile import BACKENDS
from spade.report import read_records
from tiny_nets import one_thread, tiny  # noqa: F401  (fixtures)

FAST = ["--threads", "1", "--side", "33", "--rounds", "2", "--max-rounds", "4", "--min-run-time", "0.001"]


def _profile(capsys, *args) -> dict:
    assert main(["profile", *map(str, args), "--json", *FAST]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_every_field_and_consistent_speedups(tiny, capsys):
    out = _profile(capsys, tiny["base"], tiny["half"], tiny["rec"])
    for key in ("models", "baseline", "threads", "batch", "side", "allocator", "torch", "hardware", "device",
                "timer", "tolerance", "macs_counter", "peak_memory", "load_average", "versions"):
        assert key in out, key
    assert (out["threads"], out["batch"], out["side"], out["baseline"]) == (1, 1, 33, "base")
    assert out["allocator"]["mode"] in ("pinned", "preloaded", "uncontrolled")
    assert out["timer"]["rounds"] == 2
    entries = {e["name"]: e for e in out["models"]}
    assert list(entries) == ["base", "half", "rec"]
    for name, e in entries.items():
        for key in ("model", "median_ms", "iqr_ms", "runs", "speedup", "params", "macs", "peak_mem_mb", "backend"):
            assert e[key] is not None, (name, key)
        assert e["backend"] == "eager" and e["status"] == "ok"
        assert e["runs"] == out["timing"]["rounds"] >= 2 and e["calls"] >= e["runs"]  # one block per round each
        assert e["params"] == count_parameters(load_model(e["model"]).model)
        clock = "round_ms" if out["timing"]["clock"] == "wall" else "round_cpu_ms"
        ratios = sorted(a / b for a, b in zip(entries["base"][clock], e[clock]))
        assert e["speedup"] == pytest.approx(statistics.median(ratios))  # median of the per-round ratios
        lo, hi = e["speedup_ci"]
        assert ratios[0] <= lo <= e["speedup"] <= hi <= ratios[-1]
        assert e["min_ms"] <= e["median_ms"] and len(e["round_ms"]) == len(e["round_cpu_ms"]) == e["runs"]
        assert e["recursive"] == "rec" and isinstance(e["flags"], list)
    assert entries["base"]["speedup"] == 1.0 and entries["rec"]["speedup_vs_recursive"] == 1.0
    assert [e["role"] for e in entries.values()] == ["unpruned", "pruned", "recursive"]
    assert entries["half"]["macs"] < entries["base"]["macs"] / 2
    assert entries["half"]["peak_mem_mb"] < entries["base"]["peak_mem_mb"]


def test_baseline_and_recursive_options(tiny, tmp_path, capsys):
    copy = tmp_path / "copy.spade"
    shutil.copy(tiny["base"], copy)
    out = _profile(capsys, tiny["half"], "--baseline", tiny["base"], "--recursive", tiny["rec"])
    names = [e["name"] for e in out["models"]]
    assert names == ["base", "half", "rec"]  # baseline first; recursive added
    # a model against an identical copy of itself: same cost, a finite positive ratio
    out = _profile(capsys, tiny["base"], copy)
    a, b = out["models"]
    assert (a["macs"], a["params"]) == (b["macs"], b["params"])
    assert b["speedup"] > 0 and a["recursive"] is None and a["speedup_vs_recursive"] is None


def test_several_backends_interleaved_with_text_output(tiny, capsys):
    assert main(["profile", str(tiny["half"]), "--backend", "eager", "--backend", "onnxruntime", *FAST]) == 0
    text = capsys.readouterr().out
    assert "threads 1" in text and "batch 1" in text and "allocator:" in text and "torch" in text
    assert "median ms" in text and "speedup" in text
    rows = [line for line in text.splitlines() if line.startswith("half ")]
    assert len(rows) == 2 and "eager" in rows[0] and "onnxruntime" in rows[1]
    assert "FAILED" not in text


@pytest.mark.parametrize("args, message", [
    (["missing.spade"], "does not exist"),
    (["{base}", "--backend", "tensorrt"], "unknown backend"),
    (["{base}", "--threads", "0"], "threads must be >= 1"),
    (["{base}", "--batch", "0"], "batch must be >= 1"),
    (["{base}", "--rounds", "0"], "rounds must be >= 1"),
    (["{base}", "--allocator", "fast"], "unknown allocator"),
    (["{base}", "--side", "40"], "not a multiple of the CS block size"),
    (["{base}", "--device", "tpu"], "device"),
])
def test_bad_input_is_one_line_and_exit_2(tiny, capsys, args, message):
    args = [a.format(base=tiny["base"]) for a in args]
    assert main(["profile", *args, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spade profile: error") and message in lines[0]


def test_two_recursive_models_need_a_choice(tiny, tmp_path, capsys):
    other = tmp_path / "rec2.spade"
    shutil.copy(tiny["rec"], other)
    assert main(["profile", str(tiny["base"]), str(tiny["rec"]), str(other), *FAST]) == 2
    assert "--recursive" in capsys.readouterr().err


def test_a_failed_backend_is_reported_then_exits_2(tiny, tmp_path, capsys, monkeypatch):
    def broken(bound, y, threads, device):
        raise RuntimeError("no kernel for this layer")

    monkeypatch.setitem(BACKENDS, "broken", (broken, "a backend that cannot run"))
    model = tmp_path / "a-tiny-model-with-a-long-name.spade"
    shutil.copy(tiny["half"], model)
    run = tmp_path / "run"
    assert main(["profile", str(model), "--backend", "eager,broken", "--out", str(run), *FAST]) == 2
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines() if line.startswith("a-tiny-...")]
    assert [r[:4] for r in rows] == [["a-tiny-...ong-name", "pruned", "eager", rows[0][3]],
                                     ["a-tiny-...ong-name", "pruned", "broken", "FAILED"]]
    assert float(rows[0][3]) > 0  # the backend that ran is reported
    assert captured.err.splitlines()[-1] == ("spade profile: error: backend broken failed for "
                                             "a-tiny-model-with-a-long-name: RuntimeError: no kernel for this layer")
    assert read_records(run)[0]["latency"]  # and written to the run folder


def test_a_model_spade_file_goes_by_its_folder_s_name(tiny, tmp_path, capsys):
    """``spade train`` writes DIR/model.spade: the table and the run folder say DIR."""
    paths = []
    for key, folder in (("base", "train/cs-base"), ("half", "prune/cs-half")):
        (tmp_path / folder).mkdir(parents=True)
        paths.append(shutil.copy(tiny[key], tmp_path / folder / "model.spade"))
    out = _profile(capsys, *paths, "--out", tmp_path / "run")
    assert [e["name"] for e in out["models"]] == ["cs-base", "cs-half"] and out["baseline"] == "cs-base"
    assert [r["name"] for r in read_records(tmp_path / "run")] == ["cs-base", "cs-half"]
