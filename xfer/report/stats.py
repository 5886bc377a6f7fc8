"""The statistics of a results table: mean, sample std, Student-t interval, Welch's t-test.

Five trials are few: a 95% interval from the t distribution (n-1 degrees of freedom) is honest where
mean ± 2 std is not, and two methods differ beyond noise only if Welch's test says so (unequal
variances, as two pretrains have). A published mean is compared the same way, from its stated n and std:
a published number is itself a mean of few trials, not an exact value. One trial has no spread: its std and
interval are None, never 0.
scipy computes the t quantiles and the test: the numerics are its, not ours.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """One metric over the trials of a setting."""

    n: int
    mean: float
    std: float | None  # sample std (ddof 1); None for n < 2
    ci95: float | None  # half-width of the 95% Student-t interval; None for n < 2

    @property
    def low(self) -> float | None:
        return None if self.ci95 is None else self.mean - self.ci95

    @property
    def high(self) -> float | None:
        return None if self.ci95 is None else self.mean + self.ci95

    def covers(self, value: float) -> bool | None:
        """Whether ``value`` lies in the interval (None when there is no interval)."""
        return None if self.ci95 is None else self.low <= value <= self.high


@functools.cache
def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (one per trial count: cached)."""
    from scipy import stats as scipy_stats  # here, not at import: status and plan do not need scipy

    return float(scipy_stats.t.ppf(0.975, df))


def summarize(values: list[float]) -> Summary:
    """Mean, sample std and 95% interval. A NaN among the values (COCO's evaluator gives NaN where it had
    nothing to average, e.g. APs without small objects) makes the mean NaN and leaves no spread."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2 or math.isnan(mean):
        return Summary(n, mean, None, None)
    std = statistics.stdev(values)
    return Summary(n, mean, std, t975(n - 1) * std / math.sqrt(n))


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` share a mean (None below 2 trials each,
    or when both are constant: no spread, no test)."""
    if len(a) < 2 or len(b) < 2 or (statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0):
        return None
    from scipy import stats as scipy_stats

    return float(scipy_stats.ttest_ind(b, a, equal_var=False).pvalue)


def welch_p_from_stats(ours: Summary, mean: float, std: float, n: int) -> float | None:
    """Two-sided p-value of Welch's t-test between our trials and a mean of ``n`` trials with sample std
    ``std`` known only as those three numbers (a paper's mean ± std). None when a side has fewer than 2
    trials or neither side has spread: no spread, no test."""
    if ours.std is None or n < 2 or (ours.std == 0 and std == 0):
        return None
    from scipy import stats as scipy_stats

    return float(scipy_stats.ttest_ind_from_stats(ours.mean, ours.std, ours.n, mean, std, n, equal_var=False).pvalue)
