"""How many channels each group keeps, and which ones.

* ``uniform`` scope: every prunable group keeps ``round(n0 * (1 - ratio))`` of its
  ``n0`` original channels (a tied or recursive prior is one group per layer, so it is
  pruned once and every call shrinks; untied priors each lose the same fraction);
* ``global`` scope: the channels of all prunable groups are ranked together by their
  importance (normalised within each group by the criterion) and the least important
  ``ratio`` of all channels go, each group keeping at least one channel group.

``round_to=N`` then moves each kept width to the nearest multiple of N (at least N;
groups narrower than N are left as they are), because CPU kernels run multiples of
8/16 channels fastest. Widths stay multiples of a group's channel groups (GroupNorm
groups, grouped convolutions); channels are removed at the same positions in every
channel group.
"""
from __future__ import annotations

import math

import torch


def _nearest(value: float, multiple: int) -> int:
    return multiple * math.floor(value / multiple + 0.5)


def rounded(keep: float, original: int, current: int, round_to: int | None, channel_groups: int = 1) -> int:
    """A kept width: rounded to ``round_to`` and to the channel groups, within [1, current]."""
    k = math.floor(keep + 0.5)
    if round_to and original >= round_to:
        k = max(round_to, _nearest(k, round_to))
    k = max(channel_groups, _nearest(k, channel_groups))
    return max(min(k, current), min(channel_groups, current))


def uniform_widths(original: dict, current: dict, groups: dict, ratio: float, round_to: int | None) -> dict:
    """``{key: kept width}`` for the uniform scope (dicts keyed by group key)."""
    return {k: rounded(original[k] * (1 - ratio), original[k], current[k], round_to, groups[k]) for k in current}


def global_widths(original: dict, current: dict, groups: dict, scores: dict, ratio: float,
                  round_to: int | None) -> dict:
    """``{key: kept width}`` for the global scope; ``scores[key]`` is the importance of
    each channel slot (one per channel group position)."""
    keys = list(scores)
    total_keep = math.floor(sum(original[k] for k in keys) * (1 - ratio) + 0.5)
    to_remove = sum(current[k] for k in keys) - total_keep
    flat = torch.cat([scores[k].float().flatten() for k in keys]) if keys else torch.zeros(0)
    owner = torch.cat([torch.full((scores[k].numel(),), i) for i, k in enumerate(keys)]) if keys else flat.long()
    removed = {k: 0 for k in keys}
    for j in torch.argsort(flat, stable=True).tolist():
        if to_remove <= 0:
            break
        k = keys[int(owner[j])]
        if current[k] - removed[k] - groups[k] >= groups[k]:  # keep at least one channel group
            removed[k] += groups[k]
            to_remove -= groups[k]
    widths = {k: rounded(current[k] - removed[k], original[k], current[k], round_to, groups[k]) for k in keys}
    widths.update({k: current[k] for k in current if k not in widths})
    return widths


def slot_scores(importance: torch.Tensor, channel_groups: int) -> torch.Tensor:
    """Per-position importance: averaged over the channel groups."""
    return importance.view(channel_groups, -1).mean(0) if channel_groups > 1 else importance


def channels_to_remove(importance: torch.Tensor, width: int, keep: int, channel_groups: int = 1) -> list[int]:
    """Indices of the ``width - keep`` least important channels (same positions in each
    channel group)."""
    slots = slot_scores(importance, channel_groups)
    size = width // channel_groups
    n = (width - keep) // channel_groups
    order = torch.argsort(slots, stable=True)[:n].tolist()
    return sorted(int(i) + g * size for g in range(channel_groups) for i in order)
