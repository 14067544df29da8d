"""Latency-budget pruning: the greedy plan on synthetic tables, the table cache, the CLI."""
from __future__ import annotations

import json

import pytest
import torch

from spade.cli import main
from spade.data import load_images
from spade.errors import SpadeError
from spade.jobs import PruneJob, prune_file
from spade.jobs.latency_budget import LatencyTarget
from spade.models import create_model, load_model, save_model
from spade.models.io import read_spec
from spade.physics import BlockCS
from spade.prune import latency
from spade.prune.data import measurement_batches
from spade.prune.depth import psnr_on
from spade.prune.latency import ConvSpec, GroupSpec, candidates, plan_widths, predict
from tiny_nets import one_thread, tiny  # noqa: F401  (fixtures)

SIG = "Conv2d k=[3, 3]"


def _conv(name, c_in, c_out, gin, gout):
    return ConvSpec(name, c_in, c_out, gin, gout, SIG, (1, c_in, 8, 8))


def _table(cost):
    """Entries for every (c_in, c_out) in 1..32 with ``cost(c_in, c_out)`` ms."""
    spec = _conv("x", 1, 1, None, None)
    return {spec.key(i, o): cost(i, o) for i in range(1, 33) for o in range(1, 33)}


def test_candidates_follow_steps_and_channel_groups():
    assert candidates(32) == [8, 16, 24, 32]
    assert candidates(8) == [2, 4, 6, 8]
    assert candidates(32, channel_groups=16) == [16, 32]


def test_plan_skips_a_plateau_and_keeps_the_important_group():
    # 24 channels cost as much as 32 (a SIMD plateau), 16 is half: "a" is unimportant, "b" important
    def cost(i, o):
        def step(c):
            return 1.0 if c <= 8 else 2.0 if c <= 16 else 4.0
        return step(i) * step(o)
    table = _table(cost)
    groups = [GroupSpec("a", 32, [8, 16, 24, 32], [0.01] * 32), GroupSpec("b", 32, [8, 16, 24, 32], [1.0] * 32)]
    convs = [_conv("c1", 1, 32, None, "a"), _conv("c2", 32, 32, "a", "b"), _conv("c3", 32, 1, "b", None)]
    full = predict(convs, table, {}, fixed_ms=2.0)
    assert full == 2.0 + 4 + 16 + 4
    plan = plan_widths(groups, convs, table, fixed_ms=2.0, target_ms=18.0)
    assert plan.predicted_ms <= 18.0 and plan.full_ms == full
    assert plan.widths["b"] == 32 and plan.widths["a"] in (8, 16)  # never the useless 24
    assert all(to != 24 for _, _, to, _, _ in plan.moves)
    assert plan.predicted_ms == pytest.approx(predict(convs, table, plan.widths, 2.0))
    # a tighter budget must cut the important group too; the least important channels go first
    tight = plan_widths(groups, convs, table, fixed_ms=2.0, target_ms=8.0)
    assert tight.widths["b"] < 32 and tight.predicted_ms <= 8.0


def test_unreachable_target_says_what_the_floor_is():
    table = _table(lambda i, o: i * o / 100)
    groups = [GroupSpec("a", 32, [8, 16, 24, 32], [1.0] * 32)]
    convs = [_conv("c1", 1, 32, None, "a"), _conv("c2", 32, 1, "a", None)]
    with pytest.raises(SpadeError, match="cannot be met.*physics and glue take 50.0 ms"):
        plan_widths(groups, convs, table, fixed_ms=50.0, target_ms=40.0)


def test_table_is_cached_by_target_and_layer(tiny, tmp_path, monkeypatch):
    from spade.models import load_model
    from spade.prune.graph import Graph

    loaded = load_model(tiny["base"])
    y = loaded.physics.A(torch.rand(1, 1, 33, 33))
    example = (y, loaded.physics)
    graph = Graph(loaded.model, example)
    groups, prunable = latency.group_specs(graph, "l1", None, 0)
    convs = latency.conv_specs(loaded.model, example, graph, prunable)
    assert {c.in_group for c in convs} - {None} <= set(prunable) and any(c.out_group for c in convs)
    path = tmp_path / "table.json"
    first = latency.table_for(loaded.model, convs, groups, threads=1, path=path, rounds=1, min_run_time=0.005)
    data = json.loads(path.read_text())
    (key,) = data["targets"]
    assert key == latency.target_key("eager", 1) and "threads=1" in key
    assert data["targets"][key] == first and all(v > 0 for v in first.values())
    measured = []
    monkeypatch.setattr(latency, "measure_layers", lambda *a, **k: measured.append(a[2]) or {})
    again = latency.table_for(loaded.model, convs, groups, threads=1, path=path)
    assert again == first and measured == [{}]  # everything from the file, nothing timed
    monkeypatch.setattr(latency, "target_key", lambda backend, threads: "another machine")
    with pytest.raises(KeyError):  # another target shares no entries: all of them are measured again
        latency.table_for(loaded.model, convs, groups, threads=1, path=path)
    assert len(measured[-1]) == len(first)


def test_bad_table_file_is_one_line(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    with pytest.raises(SpadeError, match="cannot read the latency table"):
        latency.load_table(bad)
    bad.write_text("[]")
    with pytest.raises(SpadeError, match="not a SPADE latency table"):
        latency.load_table(bad)


def test_target_speedup_writes_plan(tiny, tmp_path):
    out, table = tmp_path / "p.spade", tmp_path / "table.json"
    target = LatencyTarget(speedup=1.3, table=str(table), rounds=1, min_run_time=0.02)
    summary = prune_file(PruneJob(str(tiny["base"]), str(out), 0.0, latency=target))
    plan = summary["latency_plan"]
    spec, _ = read_spec(out)
    assert spec["pruning"]["latency_plan"]["widths"] == plan["widths"]
    assert plan["predicted_ms"] <= plan["target_ms"] and plan["measured_ms"] > 0 and plan["scale"] > 0
    assert plan["predicted_speedup"] == pytest.approx(plan["full_ms"] / plan["predicted_ms"])
    assert any(w < 8 for w in plan["widths"].values()) and table.exists()
    kept = {g: w[1] for g, w in summary["groups"].items()}
    assert all(kept[g] == w for g, w in plan["widths"].items())  # the pruner applied the plan


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A 4-phase, 16-channel ISTA-Net+ CS model file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("deep") / "deep.spade"
    save_model(path, create_model("ista-net-plus", phases=4, channels=16), BlockCS.gaussian(0.25), protocol="ista-cs")
    return path


def test_a_plan_with_data_chooses_depth_and_widths_by_calibration_psnr(deep, tmp_path):
    out = tmp_path / "p.spade"
    target = LatencyTarget(speedup=1.7, table=str(tmp_path / "t.json"), rounds=1, min_run_time=0.02)
    summary = prune_file(PruneJob(str(deep), str(out), 0.0, latency=target, importance="taylor", data="embedded",
                                  samples=2, crop=66))
    search = summary["latency_plan"]["depth_search"]
    assert search["searched"] and search["unit"] == "iteration" and search["tried"][0]["depth"] == 0
    scored = [t for t in search["tried"] if "psnr" in t]
    best = max(scored, key=lambda t: t["psnr"])
    assert search["chosen"] == best["depth"]
    assert [t["depth"] for t in search["tried"]] == list(range(len(search["tried"])))
    assert all(t["width_moves"] > 0 for t in scored[:-1])  # the search stops at the first depth that needs no cut
    removed = (summary["depth"] or {}).get("removed", [])
    assert removed == best["removed"] and len(removed) == best["depth"]
    loaded = load_model(out)
    assert loaded.model.config["phases"] == 4 - best["depth"]
    assert loaded.spec["pruning"]["latency_plan"]["depth_search"] == search
    # candidates are scored without the iteration re-fit; the kept one is pruned again with
    # it, and the better of the two on the calibration data is written
    assert best["depth"] > 0 and search["psnr_refitted"] != pytest.approx(best["psnr"], abs=1e-4)
    assert search["psnr_kept"] == max(best["psnr"], search["psnr_refitted"])
    assert search["units_refitted"] == (search["psnr_refitted"] > best["psnr"])
    assert (summary["depth"]["refit"] is not None) == search["units_refitted"]
    physics = loaded.physics
    images = [im.centre_crop(66) for im in load_images("embedded", "y")]
    batches = measurement_batches(physics, images, "ista-cs", 2, 0, "cpu")
    assert psnr_on(loaded.model, batches) == pytest.approx(search["psnr_kept"], abs=1e-3)


def test_an_iteration_refit_that_lowers_the_calibration_psnr_is_not_kept(deep, tmp_path, monkeypatch):
    import spade.jobs.latency_budget as budget
    import spade.prune.api as api

    real_depth, real_psnr = api.prune_depth, budget.psnr_on

    def marked(*args, refit=False, **kw):  # the re-fitted network carries a mark (kept by deepcopy)
        model, result = real_depth(*args, refit=refit, **kw)
        model._refitted = refit
        return model, result

    monkeypatch.setattr(api, "prune_depth", marked)
    monkeypatch.setattr(budget, "psnr_on", lambda m, b: real_psnr(m, b) - 5 * getattr(m, "_refitted", False))
    out = tmp_path / "n.spade"
    target = LatencyTarget(speedup=1.7, table=str(tmp_path / "t.json"), rounds=1, min_run_time=0.02)
    summary = prune_file(PruneJob(str(deep), str(out), 0.0, latency=target, importance="taylor", data="embedded",
                                  samples=2, crop=66))
    search = summary["latency_plan"]["depth_search"]
    best = max((t for t in search["tried"] if "psnr" in t), key=lambda t: t["psnr"])
    assert best["depth"] > 0 and search["psnr_refitted"] < best["psnr"]
    assert not search["units_refitted"] and search["psnr_kept"] == best["psnr"]
    assert summary["depth"]["refit"] is None and load_model(out).spec["pruning"]["depth"]["refit"] is None


def test_widths_only_keeps_every_iteration(deep, tmp_path):
    out = tmp_path / "w.spade"
    target = LatencyTarget(speedup=1.3, rounds=1, min_run_time=0.02, depth=False)
    summary = prune_file(PruneJob(str(deep), str(out), 0.0, latency=target, importance="taylor", data="embedded",
                                  samples=2, crop=66))
    assert summary["depth"] is None and summary["latency_plan"]["depth_search"] == {"searched": False,
                                                                                    "why": "not asked"}
    assert load_model(out).model.config["phases"] == 4


@pytest.mark.parametrize("args, message", [
    (["--ratio", "0.5", "--target-speedup", "2"], "not both"),
    (["--target-speedup", "0.5"], "> 1"),
    (["--target-ms", "-1"], "positive"),
    (["--ratio", "0.5", "--latency-table", "t.json"], "--latency-table and --widths-only go with"),
    (["--ratio", "0.5", "--widths-only"], "--latency-table and --widths-only go with"),
    ([], "give --ratio"),
])
def test_cli_bad_budget_is_one_line_and_writes_nothing(tiny, tmp_path, capsys, args, message):
    out = tmp_path / "p.spade"
    assert main(["prune", str(tiny["base"]), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_cli_prints_the_depth_search(deep, tmp_path, capsys):
    out = tmp_path / "c.spade"
    assert main(["prune", str(deep), "--target-speedup", "1.7", "--importance", "taylor", "--data", "embedded",
                 "--samples", "2", "--crop", "66", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "iterations removed -> PSNR on the calibration data (unpruned" in text and "; kept " in text
    assert out.exists()
