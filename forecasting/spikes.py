"""Unexplained spikes: days whose peak stands far above a robust local baseline and that
no declared event explains. Pure and hand-checkable.

A spike nobody declared is a problem for a capacity plan twice over: it is not masked
before fitting, so it lifts the trend and widens the interval, and it may come back
(a recurring batch job, a migration) without the plan knowing. The report names such
windows so somebody can declare them in the events catalog (or say they were one-offs).

The baseline of a day is the median of the daily peaks in a centred window around it
(``window_days``, 15 by default: a week either side), worked out on the peaks divided by
their weekday factor (the median ratio of each weekday to its week) so that a quiet
weekend does not count as spread. The spread is the MAD of the days' relative excess over
that baseline in a longer window (``spread_days``, two months), times 1.4826 so that it
estimates a standard deviation for normal noise: a six-day spike would inflate a MAD
taken over its own 15 days and hide itself. A second pass with the first pass's outliers
left out keeps a spike from lifting its own baseline. A day is an outlier when its
relative excess is above ``k_mad * 1.4826 * MAD`` (around the window's median excess),
at least ``min_excess_pct`` (this keeps tiny wobbles of a very quiet series, MAD near 0,
from counting as spikes), and its peak is ``min_excess_pct`` above the median of the same
weekday one and two weeks either side: a peak that comes back every week (the Monday
batch) is seasonality, not a spike.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["SPIKE_COLUMNS", "find_unexplained_spikes", "robust_baseline", "same_weekday_baseline", "weekday_profile"]

#: Columns of :func:`find_unexplained_spikes`' answer.
SPIKE_COLUMNS = ["start", "end", "excess_pct", "peak_ts"]

#: MAD times this estimates the standard deviation of normal noise.
_MAD_TO_SD = 1.4826


def _daily(daily_peaks: pd.Series) -> pd.Series:
    """One float per calendar day, missing days as NaN, indexed by day (the input's
    timezone kept; naive stays naive)."""
    s = pd.Series(pd.to_numeric(daily_peaks, errors="coerce").to_numpy(dtype=float),
                  index=pd.DatetimeIndex(pd.to_datetime(daily_peaks.index)).floor("D"))
    s = s[~s.index.isna()].groupby(level=0).max().sort_index()
    if s.empty:
        return s
    return s.reindex(pd.date_range(s.index[0], s.index[-1], freq="D"))


def robust_baseline(values: np.ndarray, window_days: int = 15, min_points: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Rolling median and MAD of a daily array over the ``window_days`` nearest days that
    have a value, centred on each day.

    Days without a value (NaN: missing, masked as declared, or left out as outliers) do
    not shrink the window, it reaches further: a spike next to a masked event is judged
    against as many ordinary days as one anywhere else. Out: ``(median, mad)``, one value
    per day (a day without a value gets the baseline around where it sits); NaN where
    fewer than ``min_points`` values are in reach (a short series).
    """
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    median = np.full(len(values), np.nan)
    mad = np.full(len(values), np.nan)
    if finite.sum() < min_points:
        return median, mad
    half = window_days // 2
    kept = values[finite]
    padded = np.concatenate([np.full(half, np.nan), kept, np.full(half, np.nan)])
    windows = sliding_window_view(padded, 2 * half + 1)
    # each day's window is centred on its own position among the days with values (a day
    # without one: on the next day that has one, or the last)
    centre = np.minimum(np.cumsum(finite) - finite, len(kept) - 1)
    w = windows[centre]
    enough = np.isfinite(w).sum(axis=1) >= min_points
    med = np.nanmedian(w[enough], axis=1)
    median[enough] = med
    mad[enough] = np.nanmedian(np.abs(w[enough] - med[:, None]), axis=1)
    return median, mad


def same_weekday_baseline(values: np.ndarray, weeks: int = 2) -> np.ndarray:
    """Median of the same weekday's values ``1..weeks`` weeks before and after each day
    (NaN ignored); NaN where fewer than two of them exist."""
    n, span = len(values), 7 * weeks
    padded = np.concatenate([np.full(span, np.nan), np.asarray(values, dtype=float), np.full(span, np.nan)])
    shifts = [k * 7 for k in range(-weeks, weeks + 1) if k]
    stack = np.stack([padded[span + s: span + s + n] for s in shifts])
    out = np.full(n, np.nan)
    enough = np.isfinite(stack).sum(axis=0) >= 2
    if enough.any():
        out[enough] = np.nanmedian(stack[:, enough], axis=0)
    return out


def weekday_profile(values: np.ndarray, days: pd.DatetimeIndex, min_weeks: int = 3, max_spread: float = 0.15) -> np.ndarray:
    """Each day's weekday factor (mean 1 over the week): the median, per weekday, of the
    peak over its centred 7-day mean. All ones with fewer than ``min_weeks`` weeks of
    values, where a weekday has no factor, or where a weekday's ratios scatter by more
    than ``max_spread`` (relative MAD) around its factor."""
    ones = np.ones(len(values))
    if np.isfinite(values).sum() < 7 * min_weeks:
        return ones
    level = pd.Series(values).rolling(7, center=True, min_periods=5).mean().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(level > 0, values / level, np.nan)
    dow = np.asarray(days.day_of_week)
    factors = np.array([np.nanmedian(ratio[dow == d]) if np.isfinite(ratio[dow == d]).any() else np.nan
                        for d in range(7)])
    if not np.isfinite(factors).all() or (factors <= 0).any():
        return ones
    # An on/off series (idle most Sundays, busy on some) has no weekly pattern to remove:
    # its weekday ratios scatter widely. Then leave the peaks as they are.
    spread = [np.nanmedian(np.abs(ratio[dow == d] - factors[d])) / factors[d] for d in range(7)]
    if max(spread) > max_spread:
        return ones
    return (factors / factors.mean())[dow]


def _outliers(values: np.ndarray, weekday: np.ndarray, window_days: int, spread_days: int, min_points: int,
              k_mad: float, min_excess_pct: float) -> tuple[np.ndarray, np.ndarray]:
    """(is outlier, baseline) per day; two passes so a spike does not lift its own baseline.

    The baseline is worked out on the peaks divided by their weekday factor (a quiet
    weekend would otherwise count as spread and hide a spike) and multiplied back. The
    spread is the MAD of the days' relative excess over a longer window: inside the
    baseline's own 15 days a six-day spike would inflate it and hide itself.
    """
    adjusted = values / weekday
    masked = adjusted.copy()
    flagged = np.zeros(len(values), dtype=bool)
    baseline = np.full(len(values), np.nan)
    for _ in range(2):
        median, _mad = robust_baseline(masked, window_days, min_points)
        with np.errstate(invalid="ignore", divide="ignore"):
            # a baseline at or below zero has no percentage excess: never a spike
            excess = np.where(median > 0, adjusted / median - 1.0, np.nan)
        centre, spread = robust_baseline(np.where(np.isfinite(masked), excess, np.nan), spread_days, min_points)
        threshold = np.maximum(centre + k_mad * _MAD_TO_SD * spread, min_excess_pct / 100)
        # A weekly peak (the Monday batch) is as high as the same weekday of the weeks
        # around it: that is seasonality, not a spike.
        same_day = same_weekday_baseline(np.where(np.isfinite(masked), values, np.nan))
        weekly = np.where(np.isfinite(same_day), same_day * (1 + min_excess_pct / 100), -np.inf)
        with np.errstate(invalid="ignore"):
            flagged = np.isfinite(values) & np.isfinite(excess) & (excess > threshold) & (values > weekly)
        masked = np.where(flagged, np.nan, adjusted)
        baseline = median * weekday
    return flagged, baseline


def _runs(flagged: np.ndarray, max_gap_days: int) -> list[tuple[int, int]]:
    """(first, last) positions of flagged runs, joining runs apart by at most
    ``max_gap_days`` unflagged days."""
    runs: list[tuple[int, int]] = []
    for i in np.flatnonzero(flagged):
        if runs and i - runs[-1][1] - 1 <= max_gap_days:
            runs[-1] = (runs[-1][0], int(i))
        else:
            runs.append((int(i), int(i)))
    return runs


def _declared_days(days: pd.DatetimeIndex, declared: list[tuple[dt.date, dt.date]], margin_days: int) -> np.ndarray:
    """True on days inside a declared window widened by ``margin_days`` each side."""
    day = np.asarray(days.date)
    inside = np.zeros(len(days), dtype=bool)
    for start, end in declared:
        lo, hi = start - dt.timedelta(days=margin_days), end + dt.timedelta(days=margin_days)
        inside |= (day >= lo) & (day <= hi)
    return inside


def find_unexplained_spikes(
    daily_peaks: pd.Series,
    declared: list[tuple[dt.date, dt.date]] | None = None,
    min_excess_pct: float = 10.0,
    k_mad: float = 4.0,
    window_days: int = 15,
    spread_days: int = 61,
    max_gap_days: int = 1,
    min_points: int = 7,
) -> pd.DataFrame:
    """Windows of days whose peak stands far above the local baseline, minus the declared ones.

    In: ``daily_peaks``, one value per day indexed by timestamps or dates (a tz-aware
    index keeps its timezone; NaN and missing days are allowed and never outliers);
    ``declared``, event windows as inclusive ``(start, end)`` dates (the caller widens
    them by the events' ramps). Declared days are left out of the baseline, and a window
    that overlaps a declared one, or touches it within ``max_gap_days``, is explained and
    left out.

    Out: one row per window of outlier days (runs joined across gaps of at most
    ``max_gap_days`` days), sorted by start, with :data:`SPIKE_COLUMNS`:
    ``start``, ``end`` (first and last outlier day, ``datetime.date``), ``excess_pct``
    (mean over the window's days of ``100 * (peak / baseline - 1)``; days without a value
    are skipped) and ``peak_ts`` (the day of the window's highest peak, a timestamp).
    A series shorter than ``min_points`` days gives no rows.
    """
    declared = declared or []
    s = _daily(daily_peaks)
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in SPIKE_COLUMNS}).astype({"excess_pct": float})
    if int(s.notna().sum()) < min_points:
        return empty
    values = s.to_numpy(dtype=float)
    explained = _declared_days(pd.DatetimeIndex(s.index), declared, 0)
    kept = np.where(explained, np.nan, values)
    weekday = weekday_profile(kept, pd.DatetimeIndex(s.index))
    flagged, median = _outliers(kept, weekday, window_days, spread_days, min_points, k_mad, min_excess_pct)
    near_declared = _declared_days(pd.DatetimeIndex(s.index), declared, max_gap_days)
    rows = []
    for first, last in _runs(flagged, max_gap_days):
        if near_declared[first: last + 1].any():
            continue
        v, m = values[first: last + 1], median[first: last + 1]
        ok = np.isfinite(v) & np.isfinite(m) & (m > 0)
        peak = first + int(np.nanargmax(np.where(np.isfinite(v), v, -np.inf)))
        rows.append({
            "start": s.index[first].date(), "end": s.index[last].date(),
            "excess_pct": float(np.mean(100.0 * (v[ok] / m[ok] - 1.0))), "peak_ts": s.index[peak],
        })
    return pd.DataFrame(rows, columns=SPIKE_COLUMNS) if rows else empty
