"""What the reader sees: number formats, trust notes and the generated findings, from
synthetic records (no model, no clock)."""
from __future__ import annotations

import math

from spade.report import readout
from spade.report.tables import frame

COND = {"threads": 2, "batch": 1, "input_shape": [1, 1, 8, 8], "device": "cpu", "hardware": "cpu X", "torch": "2.x",
        "allocator": "pinned", "timer": {"rounds": 15, "max_rounds": 45, "min_run_time_s": 1.0},
        "timing": {"clock": "wall", "reason": "wall time steady", "rounds": 15}}


def rec(name, role, macs, psnr, speedup=None, ci=None, flags=(), ratio=None, strategy=None, cond=COND):
    lat = {"backend": "eager", "status": "ok", "median_ms": 10.0 / (speedup or 1), "iqr_ms": 0.06,
           "speedup_vs_unpruned": speedup, "speedup_vs_unpruned_ci": ci, "flags": list(flags)}
    return {"name": name, "family": "f", "sharing": "untied", "role": role, "params": 1000, "macs": macs,
            "conditions": cond, "ratio": ratio, "strategy": strategy, "parent": "u" if role == "pruned" else None,
            "evaluation": {"dataset": "set11", "protocol": "ista-cs", "psnr": psnr, "ssim": 0.9, "init_psnr": 20.0,
                           "n_images": 11},
            "latency": [lat]}


RECORDS = [rec("u", "unpruned", 400, 32.44, 1.0, [1.0, 1.0]),
           rec("p50", "pruned", 100, 31.9, 2.31, [2.2, 2.4], ratio=0.5, strategy="school"),
           rec("p75", "pruned", 40, 30.1, 3.5, [3.1, 3.8], ratio=0.75, strategy="school"),
           rec("odd", "pruned", 100, 31.0, 9.0, [8.0, 9.5], flags=["speedup 9.00x exceeds the MACs cut 4.00x"],
               ratio=0.5)]


def test_formats():
    assert readout.db(32.444) == "32.44 dB" and readout.times(2.31) == "2.31×" and readout.ms(0.9213, 0.06) == "0.92 ms ± 0.03"
    assert readout.speedup(2.31, 2.2, 2.4) == "2.31× (2.20–2.40)" and readout.db(float("nan")) == "–"
    row = readout.row(frame(RECORDS).iloc[1])
    assert (row["psnr"], row["start"], row["macs_cut"], row["pruning"]) == ("31.90 dB", "20.00 dB", "4.0×", "0.50")
    assert readout.row(frame(RECORDS).iloc[3])["flag"].startswith("⚠")


def test_findings_name_the_best_model_under_each_budget_and_skip_flagged_rows():
    (text,) = readout.findings(frame(RECORDS))
    assert "the unpruned u scores 32.44 dB" in text
    assert "At least 2× faster (lower end of the interval): p50, 2.31× (2.20–2.40), 31.90 dB (-0.54 dB vs unpruned)" in text
    assert "At least 3× faster (lower end of the interval): p75" in text and "At least 4×" not in text
    assert "odd" not in text  # implausible rows are never recommended
    assert "p75, cuts MACs 10.0× and runs 3.50× faster (35% of that limit)" in text


def test_a_row_only_too_noisy_is_still_ranked_by_its_interval():
    noisy = rec("p40", "pruned", 150, 32.2, 2.5, [2.4, 2.6], ratio=0.4, strategy="school",
                flags=["too noisy against rec: interval 1.9-2.9 is wider than 10% of the speedup after 45 rounds"])
    df = frame(RECORDS + [noisy])
    (text,) = readout.findings(df)
    assert "At least 2× faster (lower end of the interval): p40, 2.50× (2.40–2.60), 32.20 dB" in text
    assert "odd" not in text
    flags = {r["model"]: r["flag"] for r in map(readout.row, (r for _, r in df.iterrows()))}
    assert (flags["p40"], flags["odd"], flags["p50"]) == ("⚠ noisy", "⚠ implausible", "ok")


def test_trust_warns_under_load_and_lists_flags():
    calm = readout.trust(RECORDS)
    assert calm["warning"] is None and calm["flagged"] == [("odd", "eager", "speedup 9.00x exceeds the MACs cut 4.00x")]
    busy = dict(COND, load_average={"before": 3.9, "after": 4.6, "cpus": 2},
                timing={"clock": "cpu", "reason": "load average 4.6 above the 2 CPUs", "rounds": 30})
    loaded = readout.trust([rec("u", "unpruned", 400, 32.0, 1.0, [1, 1], cond=busy)])
    assert "load average up to 4.6 on 2 CPUs" in loaded["warning"]
    assert loaded["clocks"] == ["cpu time: load average 4.6 above the 2 CPUs"]
    checked = dict(COND, tolerance=0.002)
    assert readout.conditions([rec("u", "unpruned", 400, 32.0, 1.0, [1, 1], cond=checked)])[0].endswith(
        "; every backend's output within 0.002 × max(1, max |eager|) of eager's")
    assert readout.conditions(RECORDS) == [
        "cpu X; device cpu; 2 thread(s); batch 1; torch 2.x; allocator: pinned; 15 paired rounds (15 asked, at most "
        "45), blocks of ≥ 1 s"]


def test_a_table_with_a_test_time_adapted_row_says_so():
    from spade.report.render import context
    plain = context(RECORDS, frame(RECORDS), {"title": "t", "notes": ""}, [])
    assert [t["test_time"] for t in plain["tasks"]] == [None]
    adapted = [dict(r, finetune_data="test" if r["name"] == "p50" else "train:urban100") for r in RECORDS]
    (task,) = context(adapted, frame(adapted), {"title": "t", "notes": ""}, [])["tasks"]
    assert task["test_time"] == readout.TEST_TIME_NOTE
    assert [r["finetune_data"] for r in task["rows"]][:2] == ["train:urban100", "test"]


def test_quality_recovered_is_the_share_of_the_pruning_loss_won_back():
    start = rec("p50", "pruned", 100, 29.0, 2.3, [2.2, 2.4], ratio=0.5)
    tuned = rec("p50-school", "pruned", 100, 31.72, 2.3, [2.2, 2.4], ratio=0.5, strategy="school")
    other = rec("p75-school", "pruned", 40, 30.0, 3.5, [3.1, 3.8], ratio=0.75, strategy="school")  # no start row
    df = frame([RECORDS[0], start, tuned, other]).set_index("model")
    assert df.loc["p50", "pruned_psnr"] == 29.0 and math.isnan(df.loc["p50", "recovered"])
    assert df.loc["p50-school", "pruned_psnr"] == 29.0
    assert abs(df.loc["p50-school", "recovered"] - (31.72 - 29.0) / (32.44 - 29.0)) < 1e-12
    assert math.isnan(df.loc["p75-school", "recovered"]) and math.isnan(df.loc["u", "recovered"])
    assert readout.row(df.reset_index().iloc[2])["recovered"] == "79%"
    lossless = rec("p10", "pruned", 300, 32.42, 1.2, [1.1, 1.3], ratio=0.1)  # 0.02 dB lost: nothing to recover
    tuned = rec("p10-school", "pruned", 300, 32.44, 1.2, [1.1, 1.3], ratio=0.1, strategy="school")
    slight = frame([RECORDS[0], lossless, tuned]).set_index("model")
    assert slight.loc["p10-school", "pruned_psnr"] == 32.42 and math.isnan(slight.loc["p10-school", "recovered"])


def test_the_pruning_cell_names_removed_iterations():
    records = [rec("u", "unpruned", 400, 32.44, 1.0, [1.0, 1.0])]
    for i, (target, units) in enumerate(((1.5, 2), (None, 1), (None, 0), (None, None))):
        records.append({**rec(f"p{i}", "pruned", 100, 31.8, 1.5, [1.4, 1.6], ratio=0.12),
                        "importance": "taylor", "target_speedup": target, "units_removed": units})
    cells = [readout.row(r)["pruning"] for _, r in frame(records).iloc[1:].iterrows()]
    assert cells == ["0.12, 2 iterations removed (taylor, 1.5× latency plan)", "0.12, 1 iteration removed (taylor)",
                     "0.12 (taylor)", "0.12 (taylor)"]
