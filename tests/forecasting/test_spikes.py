"""Unexplained spikes: planted spikes are found, seasonality and declared events are not."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.spikes import SPIKE_COLUMNS, find_unexplained_spikes, robust_baseline

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
START = dt.date(2026, 1, 5)  # a Monday


def weekly_peaks(days: int = 120, seed: int = 0, level: float = 100.0, noise: float = 1.5) -> pd.Series:
    """Daily peaks with a slow trend, lower weekends and noise (UTC days)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(pd.Timestamp(START, tz="UTC"), periods=days, freq="D")
    weekend = np.where(idx.day_of_week >= 5, 0.85, 1.0)
    values = (level + 0.1 * np.arange(days)) * weekend + rng.normal(0, noise, days)
    return pd.Series(values, index=idx)


def plant(s: pd.Series, first: int, days: int, uplift_pct: float) -> pd.Series:
    out = s.copy()
    out.iloc[first: first + days] *= 1 + uplift_pct / 100
    return out


def day(offset: int) -> dt.date:
    return START + dt.timedelta(days=offset)


def test_planted_spikes_are_recovered():
    s = plant(plant(weekly_peaks(seed=1), 30, 6, 25.0), 80, 3, 40.0)
    out = find_unexplained_spikes(s)
    assert list(out.columns) == SPIKE_COLUMNS
    assert len(out) == 2, out
    for row, (first, days, uplift) in zip(out.itertuples(), [(30, 6, 25.0), (80, 3, 40.0)]):
        assert abs((row.start - day(first)).days) <= 1
        assert abs((row.end - day(first + days - 1)).days) <= 1
        assert row.excess_pct == pytest.approx(uplift, abs=4.0)
        assert day(first) <= row.peak_ts.date() <= day(first + days - 1)


def test_a_spike_over_a_weekend_is_one_window():
    s = weekly_peaks(seed=2)
    first = 40 + (5 - pd.Timestamp(day(40)).day_of_week) % 7 - 2  # Thursday to Tuesday
    out = find_unexplained_spikes(plant(s, first, 6, 30.0))
    assert len(out) == 1
    assert out.loc[0, "start"] == day(first) and out.loc[0, "end"] == day(first + 5)


def test_a_one_day_gap_is_bridged_and_nan_days_are_skipped():
    s = plant(plant(weekly_peaks(seed=3), 50, 2, 30.0), 53, 2, 30.0)  # day 52 is normal
    s.iloc[20:23] = np.nan
    out = find_unexplained_spikes(s)
    assert len(out) == 1
    assert (out.loc[0, "start"], out.loc[0, "end"]) == (day(50), day(54))


def test_ordinary_weekly_peaks_are_not_spikes():
    # a Monday batch 30% above the rest of the week, every week, is seasonality
    s = weekly_peaks(seed=4)
    s[s.index.day_of_week == 0] *= 1.3
    assert find_unexplained_spikes(s).empty
    assert find_unexplained_spikes(weekly_peaks(seed=5)).empty


def test_flat_series_and_its_wobbles_are_quiet():
    idx = pd.date_range("2026-01-01", periods=90, freq="D", tz="UTC")
    flat = pd.Series(100.0, index=idx)
    assert find_unexplained_spikes(flat).empty
    _median, mad = robust_baseline(flat.to_numpy())
    assert np.all(mad == 0)
    # with MAD 0 only the percentage rule is left: +5% is not a spike, +20% is
    assert find_unexplained_spikes(plant(flat, 40, 2, 5.0)).empty
    out = find_unexplained_spikes(plant(flat, 40, 2, 20.0))
    assert len(out) == 1 and out.loc[0, "excess_pct"] == pytest.approx(20.0)


def test_declared_windows_are_explained():
    s = plant(plant(weekly_peaks(seed=6), 30, 6, 25.0), 80, 3, 40.0)
    out = find_unexplained_spikes(s, declared=[(day(29), day(36))])
    assert len(out) == 1 and abs((out.loc[0, "start"] - day(80)).days) <= 1
    # a window that only touches a declared one (its ramp) is explained too
    out = find_unexplained_spikes(s, declared=[(day(83), day(90))])
    assert len(out) == 1 and abs((out.loc[0, "start"] - day(30)).days) <= 1


def test_short_empty_and_non_positive_series():
    idx = pd.date_range("2026-01-01", periods=5, freq="D", tz="UTC")
    short = find_unexplained_spikes(pd.Series([1.0, 1.0, 5.0, 1.0, 1.0], index=idx))
    assert short.empty and list(short.columns) == SPIKE_COLUMNS
    assert find_unexplained_spikes(pd.Series([], dtype=float, index=pd.DatetimeIndex([], tz="UTC"))).empty
    assert find_unexplained_spikes(pd.Series(np.nan, index=pd.date_range("2026-01-01", periods=30, freq="D"))).empty
    zeros = pd.Series(0.0, index=pd.date_range("2026-01-01", periods=30, freq="D"))
    zeros.iloc[10] = 5.0  # a baseline of zero has no percentage excess
    assert find_unexplained_spikes(zeros).empty


def test_naive_and_date_indexes_work():
    s = plant(weekly_peaks(seed=7), 30, 6, 25.0)
    naive = find_unexplained_spikes(pd.Series(s.to_numpy(), index=s.index.tz_localize(None)))
    dates = find_unexplained_spikes(pd.Series(s.to_numpy(), index=[d.date() for d in s.index]))
    assert naive[["start", "end"]].equals(dates[["start", "end"]]) and len(naive) == 1


def real_daily_peaks(path: str) -> pd.Series:
    df = pd.read_csv(REAL / path)
    s = pd.Series(df["value"].to_numpy(dtype=float), index=pd.to_datetime(df["timestamp"], utc=True))
    return s.groupby(s.index.floor("D")).max()


@pytest.mark.skipif(not REAL.exists(), reason="shared real data not present")
@pytest.mark.parametrize("path", [
    "internet_traffic/eu_isp_transatlantic_hourly_mean.csv",  # weekdays ~2.4x weekends
    "nab/machine_temperature_system_failure_hourly_mean.csv",
    "cluster_traces/google2019_cell_avg_cpu_pct_5min.csv",  # a cell of thousands of machines
])
def test_real_series_with_weekly_cycles_have_no_spikes(path):
    assert find_unexplained_spikes(real_daily_peaks(path)).empty


@pytest.mark.skipif(not REAL.exists(), reason="shared real data not present")
def test_real_misconfiguration_is_found():
    """NAB's auto-scaling group whose misconfiguration drives CPU up in mid-July 2014."""
    out = find_unexplained_spikes(real_daily_peaks("nab/cpu_utilization_asg_misconfiguration_hourly_mean.csv"))
    last = out.iloc[-1]
    assert last["start"] <= dt.date(2014, 7, 14) <= last["end"]
    assert last["excess_pct"] > 30
