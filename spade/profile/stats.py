"""Statistics of paired timings: per-round ratios, a confidence interval for their
median, and plausibility checks. Pure functions of lists of numbers (no clock here).

A *paired* speedup of B against A is taken round by round: every round times A and B
back to back, ``ratio_r = time_A[r] / time_B[r]``, and the speedup is the median of the
ratios. Load from other processes that lasts longer than a round hits both alike and
cancels in the ratio; load that hits one block of a round is an outlier the median
ignores. The interval is the distribution-free order-statistics interval of the median
(the k-th smallest and k-th largest ratio, k from the binomial distribution): it needs
no assumption about the shape of the noise.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

#: confidence of the reported intervals
CONFIDENCE = 0.95
#: a speedup may exceed the MACs cut, and two identical models may differ, by this much
#: before the row is called implausible (cache effects and timer resolution)
SLACK = 0.10


@dataclass(frozen=True)
class Interval:
    """A median with its confidence interval; ``coverage`` is the interval's actual
    confidence (below :data:`CONFIDENCE` when there are too few values for it)."""

    median: float
    low: float
    high: float
    coverage: float
    n: int

    @property
    def spread(self) -> float:
        """Width of the interval relative to the median."""
        return (self.high - self.low) / self.median if self.median else math.inf

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_json(self) -> dict:
        return {"median": self.median, "low": self.low, "high": self.high, "coverage": self.coverage, "n": self.n}


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """The median of ``values`` and the order-statistics interval ``[x_(k), x_(n+1-k)]``
    with the largest ``k`` whose coverage ``1 - 2 P(Bin(n, 1/2) <= k - 1)`` reaches
    ``confidence``; with fewer values than that needs (n < 6 at 95 %), the range
    ``[min, max]`` and its own coverage."""
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    n = len(xs)
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _binom_cdf(k, n) >= confidence:
        k += 1
    coverage = 1 - 2 * _binom_cdf(k - 1, n) if n > 1 else 0.0
    return Interval(statistics.median(xs), xs[k - 1], xs[n - k], coverage, n)


def paired_ratios(reference: list[float], other: list[float]) -> list[float]:
    """``reference[r] / other[r]`` for every round ``r`` (how many times faster ``other`` is)."""
    if len(reference) != len(other):
        raise ValueError(f"unpaired timings: {len(reference)} and {len(other)} rounds")
    return [a / b for a, b in zip(reference, other)]


def paired_speedup(reference: list[float], other: list[float], confidence: float = CONFIDENCE) -> Interval:
    """Median of the per-round ratios with its interval (module docstring)."""
    return median_interval(paired_ratios(reference, other), confidence)


def beyond_macs(speedup: Interval, macs_cut: float, slack: float = SLACK) -> str | None:
    """Why a speedup is implausible for its MACs cut (its whole interval lies above the cut
    by more than ``slack``), else None. Fewer MACs can save at most their share of time."""
    if macs_cut > 0 and speedup.low > macs_cut * (1 + slack):
        return (f"speedup {speedup.median:.2f}x (interval {speedup.low:.2f}-{speedup.high:.2f}) exceeds "
                f"the MACs cut {macs_cut:.2f}x")
    return None


def twins_disagree(a_over_b: Interval, slack: float = SLACK) -> bool:
    """Two models with the same architecture whose paired time ratio lies wholly outside
    ``[1 / (1 + slack), 1 + slack]``: identical work timed as different."""
    return a_over_b.low > 1 + slack or a_over_b.high < 1 / (1 + slack)
