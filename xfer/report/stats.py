"""The statistics of a results table: mean, sample std, Student-t interval, Welch's t-test.

Five trials are few: a 95% interval from the t distribution (n-1 degrees of freedom) is honest where
mean ± 2 std is not, and two methods differ beyond noise only if Welch's test says so (unequal
variances, as two pretrains have). A published mean is compared the same way, from its stated n and std:
a published number is itself a mean of few trials, not an exact value. One trial has no spread: its std and
interval are None, never 0.
scipy's special functions give Student's t (its quantile ``stdtrit``, its distribution ``stdtr``), the functions
``scipy.stats`` calls for ``t.ppf`` and ``ttest_ind``'s p-value: the numerics are scipy's, not ours; only Welch's
two formulas (the statistic, the Welch-Satterthwaite degrees of freedom) are written here, as ``ttest_ind`` writes
them. ``scipy.special`` rather than ``scipy.stats``: importing the latter cost about 1 s of every launch's
collect, about a quarter of a launch that trains nothing.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
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
    from scipy import special  # here, not at import: status and plan do not need scipy

    return float(special.stdtrit(df, 0.975))


def summarize(values: list[float]) -> Summary:
    """Mean, sample std and 95% interval. A NaN among the values (COCO's evaluator gives NaN where it had
    nothing to average, e.g. APs without small objects) makes the mean NaN and leaves no spread; so does an
    infinite value."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2 or not math.isfinite(mean):
        return Summary(n, mean, None, None)
    std = stdev(values)
    return Summary(n, mean, std, t975(n - 1) * std / math.sqrt(n))


def stdev(values: Sequence[float]) -> float:
    """The sample std (ddof 1), bit for bit ``statistics.stdev``'s: the correctly rounded square root of the
    exact sample variance. Exact in integers here (each float is an integer over a power of two), where the
    standard library sums Fractions, which was most of a 2,000-trial collect's statistics. NaN when a value is
    NaN or infinite (the standard library raises there)."""
    if not all(map(math.isfinite, values)):
        return math.nan
    ratios = [float(x).as_integer_ratio() for x in values]
    scale = max(d for _, d in ratios)  # powers of two: each divides the largest
    ints = [num * (scale // d) for num, d in ratios]  # values = ints / scale
    n, total = len(ints), sum(ints)
    ss = sum((n * x - total) ** 2 for x in ints)  # Σ (x − mean)² = ss / (n² scale²)
    den = n * n * scale * scale * (n - 1)
    g = math.gcd(ss, den)
    return _sqrt_of_fraction(ss // g, den // g)


def _sqrt_of_fraction(n: int, m: int) -> float:
    """sqrt(n / m) correctly rounded, as the standard library's statistics module computes it (round to odd
    with 2·53 + 3 bits, then one rounding to a float; https://bugs.python.org/msg407078)."""
    q = (n.bit_length() - m.bit_length() - 109) // 2
    if q >= 0:
        return float(_isqrt_round_to_odd(n, m << 2 * q) << q)
    return _isqrt_round_to_odd(n << -2 * q, m) / (1 << -q)


def _isqrt_round_to_odd(n: int, m: int) -> int:
    a = math.isqrt(n // m)
    return a | (a * a * m != n)


def _testable(a: Sequence[float], b: Sequence[float]) -> bool:
    """At least 2 trials each, and spread on one side at least (a NaN is not "no spread": it propagates)."""
    return len(a) >= 2 and len(b) >= 2 and not (all(x == a[0] for x in a) and all(x == b[0] for x in b))


def welch_ps(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[float | None]:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` share a mean, for each ``(a, b)`` of ``pairs``
    (None below 2 trials each, or when both are constant: no spread, no test).

    One array computation per shape (pairs with the same trial counts, stacked as rows): a report of 40
    methods holds thousands of tests."""
    out: list[float | None] = [None] * len(pairs)
    shapes: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, (a, b) in enumerate(pairs):
        if _testable(a, b):
            shapes[len(a), len(b)].append(i)
    if not shapes:
        return out
    import numpy as np

    for idx in shapes.values():
        a, b = np.array([pairs[i][0] for i in idx], dtype=float), np.array([pairs[i][1] for i in idx], dtype=float)
        ps = _welch(b.mean(axis=1), b.var(axis=1, ddof=1), b.shape[1], a.mean(axis=1), a.var(axis=1, ddof=1), a.shape[1])
        for i, p in zip(idx, ps.tolist(), strict=True):
            out[i] = p
    return out


def _welch(mean1, var1, n1: int, mean2, var2, n2: int):
    """Welch's two-sided p-value from each side's mean, sample variance (ddof 1) and count, elementwise over
    arrays: ``scipy.stats.ttest_ind(equal_var=False)``'s formulas (``_unequal_var_ttest_denom``, then
    ``2 * stdtr(df, -|t|)``)."""
    import numpy as np
    from scipy import special

    vn1, vn2 = np.asarray(var1, dtype=float) / n1, np.asarray(var2, dtype=float) / n2
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vn1 + vn2) ** 2 / (vn1**2 / (n1 - 1) + vn2**2 / (n2 - 1))
        t = (np.asarray(mean1, dtype=float) - mean2) / np.sqrt(vn1 + vn2)
    df = np.where(np.isnan(df), 1.0, df)  # zero variances: df is moot, as in scipy
    return 2 * special.stdtr(df, -np.abs(t))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """:func:`welch_ps` of one pair."""
    return welch_ps([(a, b)])[0]


def welch_p_from_stats(ours: Summary, mean: float, std: float, n: int) -> float | None:
    """Two-sided p-value of Welch's t-test between our trials and a mean of ``n`` trials with sample std
    ``std`` known only as those three numbers (a paper's mean ± std). None when a side has fewer than 2
    trials or neither side has spread: no spread, no test."""
    if ours.std is None or n < 2 or (ours.std == 0 and std == 0):
        return None
    return float(_welch(ours.mean, ours.std**2, ours.n, mean, std**2, n))
