"""Statistics of paired timings and the trust rules, on synthetic timings (no clock read)."""
from __future__ import annotations

import math
import random

import pytest

from spade.profile.latency import PairedRounds, Timing
from spade.profile.stats import beyond_macs, median_interval, paired_ratios, paired_speedup, twins_disagree
from spade.profile import trust
from spade.profile.trust import choose_clock, implausible, speedups
from spade.report import readout


def test_median_interval_uses_binomial_order_statistics():
    xs = list(range(1, 16))  # n = 15: the 95 % interval is [x_(4), x_(12)], coverage 0.965
    iv = median_interval([float(x) for x in reversed(xs)])
    assert (iv.median, iv.low, iv.high, iv.n) == (8.0, 4.0, 12.0, 15)
    assert iv.coverage == pytest.approx(1 - 2 * sum(math.comb(15, i) for i in range(4)) / 2 ** 15)
    assert iv.coverage >= 0.95
    # the next narrower interval would not reach 95 %
    assert 1 - 2 * sum(math.comb(15, i) for i in range(5)) / 2 ** 15 < 0.95


def test_few_values_give_the_range_and_say_its_coverage():
    iv = median_interval([3.0, 1.0, 2.0])
    assert (iv.low, iv.median, iv.high) == (1.0, 2.0, 3.0)
    assert iv.coverage == pytest.approx(0.75)  # 1 - 2 / 2^3
    assert median_interval([5.0]).coverage == 0.0


def test_interval_covers_the_true_ratio_of_noisy_paired_rounds():
    rng = random.Random(0)
    hits, trials = 0, 400
    for _ in range(trials):
        # both candidates share each round's slowdown (load), plus their own small noise
        load = [rng.choice([1.0, 1.0, 1.5, 3.0]) for _ in range(21)]
        a = [10.0 * l * rng.uniform(0.97, 1.03) for l in load]
        b = [5.0 * l * rng.uniform(0.97, 1.03) for l in load]
        hits += paired_speedup(a, b).contains(2.0)
    assert hits / trials >= 0.93  # ~95 % nominal coverage


def test_pairing_cancels_round_to_round_load():
    load = [1.0, 4.0, 1.0, 2.5, 1.0, 6.0, 1.0]
    a, b = [10 * l for l in load], [5 * l for l in load]
    s = paired_speedup(a, b)
    assert s.median == s.low == s.high == pytest.approx(2.0)
    # unpaired medians would not agree
    assert sorted(a)[3] / sorted(b)[3] == pytest.approx(2.0) and max(a) / min(b) == pytest.approx(12.0)
    with pytest.raises(ValueError, match="unpaired"):
        paired_ratios([1.0, 2.0], [1.0])


def test_speedup_above_macs_cut_is_flagged_only_beyond_the_noise():
    iv = median_interval([3.0] * 7)
    assert beyond_macs(iv, macs_cut=2.0) and "exceeds the MACs cut 2.00x" in beyond_macs(iv, 2.0)
    assert beyond_macs(median_interval([2.0, 2.1, 3.0, 3.2, 3.5]), macs_cut=2.0) is None  # interval reaches the cut
    assert beyond_macs(iv, macs_cut=2.9) is None  # within the slack


def test_twins_disagree_only_outside_the_slack():
    assert twins_disagree(median_interval([1.5, 1.6, 1.7, 1.6, 1.55, 1.62]))
    assert twins_disagree(median_interval([0.5, 0.6, 0.55, 0.52, 0.58, 0.6]))
    assert not twins_disagree(median_interval([0.8, 1.2, 1.0, 1.05, 0.95, 1.1]))
    assert not twins_disagree(median_interval([1.05, 1.06, 1.07, 1.05, 1.04, 1.06]))


def _timing(wall, cpu):
    return Timing(number=1, wall=list(wall), cpu=list(cpu))


def test_clock_switches_to_cpu_when_wall_is_contaminated():
    quiet = {"a|eager": _timing([2.0] * 9, [2.0] * 9), "b|eager": _timing([1.0] * 9, [1.0] * 9)}
    pairs = [("b|eager", "a|eager")]
    assert choose_clock(quiet, pairs, load=0.5, cpus=2)[0] == "wall"
    clock, reason = choose_clock(quiet, pairs, load=3.5, cpus=2)
    assert clock == "cpu" and "load average 3.5" in reason
    # bursts hit single blocks of wall time; CPU time stays steady
    burst = [1, 3, 1, 1, 4, 1, 2, 1, 5]
    noisy = {"a|eager": _timing([2.0 * x for x in burst], [2.0] * 9),
             "b|eager": _timing([1.0 * x for x in reversed(burst)], [1.0] * 9)}
    clock, reason = choose_clock(noisy, pairs, load=None, cpus=2)
    assert clock == "cpu" and "contaminated" in reason
    assert speedups(noisy, pairs, "cpu")[pairs[0]].median == pytest.approx(2.0)


def test_implausible_rows_name_the_reason():
    t = {"base|eager": _timing([4.0] * 7, [4.0] * 7), "half|eager": _timing([1.0] * 7, [1.0] * 7),
         "copy|eager": _timing([2.0] * 7, [2.0] * 7), "base|compile": _timing([1.0] * 7, [1.0] * 7)}
    pairs = [("half|eager", "base|eager"), ("copy|eager", "base|eager"), ("base|compile", "base|eager")]
    macs = {"base|eager": 400, "half|eager": 200, "copy|eager": 200, "base|compile": 400}
    flags = implausible(t, pairs, macs, [["half|eager", "copy|eager"]], "wall")
    assert any("exceeds the MACs cut 2.00x" in f for f in flags["half|eager"])
    assert any("same architecture as copy" in f for f in flags["half|eager"])
    assert len(flags["copy|eager"]) == 1 and "same architecture as half" in flags["copy|eager"][0]
    assert "base|compile" not in flags  # another backend may beat eager at the same MACs


def test_paired_rounds_give_every_candidate_the_same_rounds_in_rotating_order():
    calls = []
    cands = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    paired = PairedRounds(cands, min_run_time=0.0, warmup=1)
    calls.clear()
    timings = paired.run(3)
    paired.run(1)
    blocks = [n for i, n in enumerate(calls) if i == 0 or calls[i - 1] != n]
    assert blocks == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert {len(t.wall) for t in timings.values()} == {len(t.cpu) for t in timings.values()} == {4}
    assert all(t.number == 1 for t in timings.values())


def _scripted(monkeypatch, script):
    """Replace the block timer: candidate ``fn`` -> an iterator of (wall, cpu) per block."""
    import spade.profile.latency as latency

    its = {fn: iter(seq) for fn, seq in script.items()}
    monkeypatch.setattr(latency, "time_block", lambda fn, number: next(its[fn]))


def test_twins_timed_apart_are_re_timed_then_flagged(monkeypatch):
    from spade.profile.trust import measure_trusted

    a, b = (lambda: None), (lambda: None)
    _scripted(monkeypatch, {a: [(1.0, 1.0)] * 100, b: [(1.5, 1.5)] * 100})
    timings, verdict = measure_trusted({"a|eager": a, "b|eager": b}, [("b|eager", "a|eager")], {"a|eager": 5, "b|eager": 5},
                                       [["a|eager", "b|eager"]], rounds=6, max_rounds=12, min_run_time=0.0)
    assert verdict.rounds == 12 and len(timings["a|eager"].wall) == len(timings["b|eager"].wall) == 12
    assert verdict.remeasured and all("implausible" in r for r in verdict.remeasured)
    assert any("same architecture as a" in f for f in verdict.flags["b|eager"])


def test_wide_intervals_are_re_measured_until_narrow(monkeypatch):
    from spade.profile.trust import measure_trusted

    a, b = (lambda: None), (lambda: None)
    noisy = [(1.0, 1.0), (3.0, 3.0)] * 3 + [(1.0, 1.0)] * 40  # a burst, then steady
    _scripted(monkeypatch, {a: [(2.0, 2.0)] * 100, b: [(1.0, 1.0)] + noisy})  # first call sizes the block
    _, verdict = measure_trusted({"a|eager": a, "b|eager": b}, [("b|eager", "a|eager")], {"a|eager": 4, "b|eager": 2},
                                 [], rounds=6, max_rounds=30, min_run_time=0.0)
    assert 6 < verdict.rounds < 30 and verdict.flags == {}
    assert verdict.remeasured[0].endswith("interval wider than 10%: b")


def test_a_pair_still_too_noisy_is_flagged_once_with_its_own_reference(monkeypatch):
    """b is steady against a but noisy against c: one flag, naming c and the c interval."""
    from spade.profile.trust import measure_trusted

    a, b, c = (lambda: None), (lambda: None), (lambda: None)
    wobble = [(1.0, 1.0), (3.0, 3.0)] * 60
    _scripted(monkeypatch, {a: [(2.0, 2.0)] * 100, b: [(1.0, 1.0)] * 100, c: [(1.0, 1.0)] + wobble})
    _, verdict = measure_trusted({"a|eager": a, "b|eager": b, "c|eager": c},
                                 [("b|eager", "a|eager"), ("b|eager", "c|eager")],
                                 {"a|eager": 4, "b|eager": 2, "c|eager": 4}, [], rounds=6, max_rounds=8,
                                 min_run_time=0.0)
    (flag,) = verdict.flags["b|eager"]
    assert flag.startswith("too noisy against c: interval 1.00-3.00")
    # the report reads this flag as "noisy, still ranked", and any other flag as implausible
    assert trust.NOISY == readout.NOISY
    assert not readout.implausible(flag) and readout.implausible(f"{flag}; speedup 9.00x exceeds the MACs cut 4.00x")
