"""Kept widths and removed channels as pure functions (spade.prune.width)."""
from __future__ import annotations

import pytest
import torch

from spade.prune.width import channels_to_remove, global_widths, rounded, slot_scores, uniform_widths


@pytest.mark.parametrize("keep, original, current, round_to, groups, expected", [
    (16.0, 32, 32, None, 1, 16),
    (16.4, 32, 32, None, 1, 16),
    (16.5, 32, 32, None, 1, 17),     # round half up
    (24.0, 32, 32, 16, 1, 32),       # 24 is halfway: to the nearer multiple of 16 above
    (20.0, 32, 32, 16, 1, 16),
    (3.0, 32, 32, 8, 1, 8),          # never below round_to
    (3.0, 4, 4, 8, 1, 3),            # groups narrower than round_to are left alone
    (40.0, 32, 24, None, 1, 24),     # never above the current width
    (0.2, 32, 32, None, 1, 1),       # at least one channel
    (10.0, 32, 32, None, 4, 12),     # multiples of the channel groups (10 -> 12)
    (1.0, 32, 32, None, 4, 4),       # at least one channel group
])
def test_rounded(keep, original, current, round_to, groups, expected):
    assert rounded(keep, original, current, round_to, groups) == expected


def test_uniform_widths_every_group_loses_the_same_fraction():
    original = {"a": 32, "b": 64, "c": 8}
    widths = uniform_widths(original, dict(original), {"a": 1, "b": 1, "c": 2}, 0.5, None)
    assert widths == {"a": 16, "b": 32, "c": 4}
    # a second step from already-pruned widths still targets the fraction of the original
    assert uniform_widths(original, widths, {"a": 1, "b": 1, "c": 2}, 0.75, None) == {"a": 8, "b": 16, "c": 2}


def test_global_widths_rank_channels_jointly():
    original = {"a": 4, "b": 4}
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0, 30.0, 0.5])}
    widths = global_widths(original, dict(original), {"a": 1, "b": 1}, scores, 0.5, None)
    assert widths == {"a": 1, "b": 3}  # the 4 least important: b's 0.5, then a's 1, 2, 3
    assert sum(widths.values()) == 4
    # each group keeps at least one channel group
    scores = {"a": torch.zeros(4), "b": torch.full((4,), 9.0)}
    assert global_widths(original, dict(original), {"a": 1, "b": 1}, scores, 0.75, None) == {"a": 1, "b": 1}


def test_global_widths_leave_unscored_groups_alone():
    widths = global_widths({"a": 4, "z": 6}, {"a": 4, "z": 6}, {"a": 1, "z": 1}, {"a": torch.arange(4.0)}, 0.5, None)
    assert widths == {"a": 2, "z": 6}


def test_channels_removed_at_the_same_positions_in_every_channel_group():
    importance = torch.tensor([5.0, 1.0, 4.0, 2.0, 5.0, 1.0, 4.0, 2.0])  # 2 groups of 4 positions
    assert torch.equal(slot_scores(importance, 2), torch.tensor([5.0, 1.0, 4.0, 2.0]))
    assert channels_to_remove(importance, 8, 4, channel_groups=2) == [1, 3, 5, 7]
    assert channels_to_remove(torch.tensor([3.0, 1.0, 2.0, 0.0]), 4, 3) == [3]
    assert channels_to_remove(torch.tensor([1.0, 1.0, 1.0]), 3, 1) == [0, 1]  # ties: the first ones, stably
