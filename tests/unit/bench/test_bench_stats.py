"""Statistics of ketch bench on fixed samples; every expected value computed by hand."""

from __future__ import annotations

import pytest

from ketch.bench.stats import fmt_bytes, fmt_seconds, is_wide, percentile, summarize


def test_odd_count_median_p90_quartiles():
    # sorted: 0.1 0.2 0.3 0.4 0.5; p90 at position 4*0.9 = 3.6 -> 0.4 + 0.6*0.1
    s = summarize([0.30, 0.10, 0.20, 0.40, 0.50])
    assert s.n == 5
    assert s.median == pytest.approx(0.3)
    assert s.p90 == pytest.approx(0.46)
    assert s.q1 == pytest.approx(0.2)
    assert s.q3 == pytest.approx(0.4)
    assert s.iqr == pytest.approx(0.2)
    assert (s.min, s.max) == (0.10, 0.50)


def test_even_count_interpolates():
    # sorted 1 2 3 4: median at 1.5 -> 2.5; p90 at 2.7 -> 3.7; q1 at 0.75 -> 1.75; q3 at 2.25
    s = summarize([4, 1, 3, 2])
    assert s.median == pytest.approx(2.5)
    assert s.p90 == pytest.approx(3.7)
    assert s.q1 == pytest.approx(1.75)
    assert s.q3 == pytest.approx(3.25)


def test_single_sample_is_its_own_summary_and_not_wide():
    s = summarize([2.0])
    assert (s.median, s.p90, s.q1, s.q3) == (2.0, 2.0, 2.0, 2.0)
    assert not s.wide


def test_tight_samples_are_not_wide():
    # sorted .95 1 1 1.05 1.1: median 1, p90 1.08, IQR 0.05
    s = summarize([1.0, 1.1, 1.0, 1.05, 0.95])
    assert s.p90 == pytest.approx(1.08)
    assert s.iqr == pytest.approx(0.05)
    assert not s.wide


def test_wide_by_iqr():
    # IQR 0.2 on a median of 0.3 is 67% > 30%
    assert summarize([0.30, 0.10, 0.20, 0.40, 0.50]).wide


def test_wide_by_p90_only():
    # nine 1s and a 10: IQR 0, p90 at 8.1 -> 1 + 0.1*9 = 1.9, 1.9x the median
    s = summarize([1] * 9 + [10])
    assert s.iqr == 0
    assert s.p90 == pytest.approx(1.9)
    assert s.wide


def test_is_wide_thresholds_are_strict():
    assert not is_wide(1.0, 1.5, 0.3)
    assert is_wide(1.0, 1.51, 0.0)
    assert is_wide(1.0, 1.0, 0.31)
    assert is_wide(0.0, 0.1, 0.0)
    assert not is_wide(0.0, 0.0, 0.0)


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)
    with pytest.raises(ValueError):
        summarize([])


def test_to_dict_carries_iqr():
    d = summarize([4, 1, 3, 2]).to_dict()
    assert d["iqr"] == pytest.approx(1.5)
    # p90/median = 3.7/2.5 = 1.48 (under 1.5), but IQR/median = 1.5/2.5 = 0.6 (over 0.3)
    assert d["wide"] is True


def test_formatting():
    assert fmt_seconds(0.0123) == "12 ms"
    assert fmt_seconds(1.234) == "1.23 s"
    assert fmt_seconds(95) == "1 min 35 s"
    assert fmt_bytes(512) == "512 B"
    assert fmt_bytes(1500) == "1.5 kB"
    assert fmt_bytes(3428352) == "3.43 MB"
    assert fmt_bytes(102_918_144) == "103 MB"
    assert fmt_bytes(30 * 10**9) == "30 GB"
