"""Summary statistics of timed samples, and the arithmetic that turns times into rates.

Kept apart from the timing loop so that every figure the tables show can be checked exactly on
made-up numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# A row is unstable when its p10-p90 range is wider than this share of its median. Measured on a
# quiet 2-core machine, interleaved CPU rows stay within about 10%; another job on the machine
# (or more threads than free cores) spreads eager torch from 1x to 3x its median.
UNSTABLE_SPREAD = 0.25
UNSTABLE_HINT = (f"unstable: p10-p90 wider than {UNSTABLE_SPREAD:.0%} of the median; another job is loading the "
                 "machine, or more threads than free cores (--threads): rerun on a quiet machine")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), on an already sorted sequence."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class Stats:
    """Summary of one candidate's timed samples, in milliseconds.

    The median is the headline figure (robust to the odd preempted run); p10-p90 is the spread
    shown beside it (:attr:`spread`, :attr:`unstable`); p90/p99 show the tail a serving system
    sees; min is the best the hardware did; stdev (sample, n-1) shows noise. ``p10`` is ``None``
    in results written before it was recorded.
    """

    n: int
    median: float
    p90: float
    p99: float
    min: float
    max: float
    mean: float
    stdev: float
    p10: float | None = None

    @property
    def spread(self) -> float | None:
        """(p90 - p10) / median: how wide the middle 80% of the samples is, relative to the median."""
        if self.p10 is None or self.median <= 0:
            return None
        return (self.p90 - self.p10) / self.median

    @property
    def unstable(self) -> bool:
        return self.spread is not None and self.spread > UNSTABLE_SPREAD

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> Stats:
        ms = sorted(s / 1e6 for s in samples_ns)
        return cls(
            n=len(ms),
            median=percentile(ms, 50),
            p10=percentile(ms, 10),
            p90=percentile(ms, 90),
            p99=percentile(ms, 99),
            min=ms[0],
            max=ms[-1],
            mean=statistics.fmean(ms),
            stdev=statistics.stdev(ms) if len(ms) > 1 else 0.0,
        )


def ratio_interval(numerator_ms: Sequence[float], denominator_ms: Sequence[float]) -> tuple[float, float] | None:
    """p10 and p90 of the per-round ratios of two interleaved sample lists (round i of one against
    round i of the other): the interval of a speed-up, which drifting load shifts for both alike."""
    ratios = sorted(a / b for a, b in zip(numerator_ms, denominator_ms) if b > 0)
    if len(ratios) < 2:
        return None
    return percentile(ratios, 10), percentile(ratios, 90)


def matmul_tflops(m: int, n: int, k: int, milliseconds: float) -> float:
    """TFLOP/s of an (m x k) @ (k x n) product that took ``milliseconds`` (2 FLOPs per multiply-add)."""
    return 2.0 * m * n * k / (milliseconds * 1e-3) / 1e12


def copy_gbps(nbytes: int, milliseconds: float) -> float:
    """GB/s of a device-to-device copy of ``nbytes``, counting the read and the write (2 x nbytes),
    the way memory bandwidth is quoted for a copy kernel."""
    return 2.0 * nbytes / (milliseconds * 1e-3) / 1e9


def peak_gmac_per_s(tflops: float) -> float:
    """The multiply-accumulate rate a matmul ceiling allows: one MAC is two FLOPs."""
    return tflops * 1e3 / 2.0


def share_of_peak(gmac_per_s: float, tflops: float) -> float:
    """Achieved GMAC/s as a fraction of the measured matmul ceiling (0.25 = a quarter of the peak)."""
    return gmac_per_s / peak_gmac_per_s(tflops)
