"""Summary statistics for benchmark samples: median, p90, quartiles, spread flag.

Percentiles use linear interpolation between closest ranks (the definition
numpy calls "linear"): for a sorted list x of n samples and 0 <= q <= 1, the
position is (n - 1) * q, and the value interpolates between the two samples
around it. The definition is fixed here so a reader can recompute any figure
of a report by hand from its raw samples.

A result is flagged "wide" when its spread makes the median a poor summary:
the 90th percentile is more than WIDE_P90_RATIO times the median, or the
interquartile range is more than WIDE_IQR_RATIO of the median.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: p90 / median above this flags the spread as wide.
WIDE_P90_RATIO = 1.5
#: (q3 - q1) / median above this flags the spread as wide.
WIDE_IQR_RATIO = 0.3


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of samples, linear between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside 0..1")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    """What a report shows for one list of samples."""

    n: int
    median: float
    p90: float
    q1: float
    q3: float
    min: float
    max: float
    wide: bool

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["iqr"] = self.iqr
        return d


def summarize(samples: list[float]) -> Summary:
    """Summary of a non-empty list of samples."""
    if not samples:
        raise ValueError("summary of no samples")
    med = percentile(samples, 0.5)
    p90 = percentile(samples, 0.9)
    q1 = percentile(samples, 0.25)
    q3 = percentile(samples, 0.75)
    return Summary(n=len(samples), median=med, p90=p90, q1=q1, q3=q3,
                   min=min(samples), max=max(samples), wide=is_wide(med, p90, q3 - q1))


def is_wide(median: float, p90: float, iqr: float) -> bool:
    """True when p90/median or IQR/median exceeds its threshold."""
    if median <= 0:
        return p90 > 0 or iqr > 0
    return p90 / median > WIDE_P90_RATIO or iqr / median > WIDE_IQR_RATIO


def fmt_seconds(s: float) -> str:
    """0.0123 -> '12 ms', 1.234 -> '1.23 s', 95 -> '1 min 35 s'."""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.2f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec} s"


def fmt_bytes(n: float) -> str:
    """Decimal units, like the claims it is compared with: 1500 -> '1.5 kB', 3 sig. figures."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{value:.0f} B"
            return f"{value:.3g} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
