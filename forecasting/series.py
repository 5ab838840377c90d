"""Cleaning a raw series into the regular, gap-free series the models need.

Real monitoring data has gaps, repeated timestamps (retries, DST-shifted exports),
counter resets and negative glitches. These functions take one series as a pandas
``Series`` indexed by tz-aware UTC timestamps and return a regular one, with a
:class:`SeriesQuality` record of what was repaired so the report can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SeriesQuality", "infer_step", "regularize", "daily_peak", "to_series", "undo_counter_resets"]

NICE_STEPS = [pd.Timedelta(x) for x in ("1s", "5s", "10s", "15s", "30s", "1min", "2min", "5min", "10min",
                                          "15min", "30min", "1h", "2h", "3h", "6h", "12h", "1D")]
#: Gaps up to this many steps are interpolated linearly; longer gaps are filled from
#: the same hour of the neighbouring weeks so they keep the weekly shape.
SHORT_GAP_STEPS = 6


@dataclass(frozen=True)
class SeriesQuality:
    """What :func:`regularize` found and repaired in one series."""

    points: int
    expected_points: int
    duplicates: int
    gaps: int
    longest_gap_steps: int
    negatives_clipped: int

    @property
    def coverage_pct(self) -> float:
        return 100.0 * self.points / max(self.expected_points, 1)


def to_series(frame: pd.DataFrame, ts: str = "ts", value: str = "value") -> pd.Series:
    """Turn a two-column frame into a float Series indexed by UTC timestamps.

    Naive timestamps are taken as UTC; tz-aware ones are converted to UTC (this is
    what makes DST-shifted local exports line up).
    """
    index = pd.to_datetime(frame[ts], utc=True)
    return pd.Series(frame[value].to_numpy(dtype=float), index=pd.DatetimeIndex(index), name=value)


def infer_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The most common spacing between distinct timestamps."""
    uniq = index.unique().sort_values()
    if len(uniq) < 3:
        raise ValueError(f"need at least 3 distinct timestamps to infer the step, got {len(uniq)}")
    step = pd.Timedelta(pd.Series(uniq[1:] - uniq[:-1]).median())
    if step <= pd.Timedelta(0):
        raise ValueError("timestamps do not increase")
    # Scrapes jitter by seconds: snap to the nearest usual step when within 10%.
    for nice in NICE_STEPS:
        if abs(step - nice) <= 0.1 * nice:
            return nice
    return step


def undo_counter_resets(values: pd.Series) -> pd.Series:
    """Make a monotone counter continuous across resets (a drop means a restart at 0)."""
    diffs = values.diff().fillna(0.0)
    resets = diffs < 0
    increments = np.where(resets, values, diffs)
    return values.iloc[0] + pd.Series(increments, index=values.index).cumsum() - (
        values.iloc[0] if resets.iloc[0] else 0.0
    )


def regularize(
    series: pd.Series, step: pd.Timedelta | None = None, non_negative: bool = True
) -> tuple[pd.Series, SeriesQuality]:
    """Return a regular, gap-free copy of ``series`` and what was repaired.

    Repeated timestamps are averaged; missing steps are filled (short gaps linearly,
    long ones from the same time a week before or after, else linearly); negative
    values are clipped to zero when ``non_negative``. Non-finite values count as gaps.
    """
    s = series[np.isfinite(series.to_numpy(dtype=float))]
    if s.empty:
        raise ValueError("series has no finite values")
    step = step or infer_step(pd.DatetimeIndex(s.index))
    start = pd.Timestamp(s.index.min())
    if step in NICE_STEPS:
        start = start.round(step)
    # Snap jittered timestamps onto the grid anchored at the first sample.
    snapped = start + ((s.index - start) / step).round().astype("int64") * step
    s = pd.Series(s.to_numpy(dtype=float), index=pd.DatetimeIndex(snapped))
    duplicates = int(s.index.duplicated().sum())
    if duplicates or not s.index.is_monotonic_increasing:
        s = s.groupby(level=0).mean().sort_index()
    full = pd.date_range(start, s.index[-1], freq=step)
    s = s.reindex(full)
    missing = s.isna()
    gaps, longest = _gap_runs(missing.to_numpy())
    negatives = 0
    if non_negative:
        negatives = int((s < 0).sum())
        s = s.clip(lower=0)
    if missing.any():
        s = _fill(s, step)
    quality = SeriesQuality(
        points=int((~missing).sum()),
        expected_points=len(full),
        duplicates=duplicates,
        gaps=gaps,
        longest_gap_steps=longest,
        negatives_clipped=negatives,
    )
    return s.astype(float), quality


def _gap_runs(missing: np.ndarray) -> tuple[int, int]:
    if not missing.any():
        return 0, 0
    padded = np.concatenate([[False], missing, [False]]).astype(int)
    edges = np.diff(padded)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    return int(len(lengths)), int(lengths.max())


def _fill(s: pd.Series, step: pd.Timedelta) -> pd.Series:
    week = int(pd.Timedelta(days=7) / step) if step <= pd.Timedelta(days=1) else 0
    short = s.interpolate(limit=SHORT_GAP_STEPS, limit_area="inside")
    if week:
        for shift in (week, -week, 2 * week, -2 * week):
            short = short.fillna(s.shift(shift))
    return short.interpolate(limit_direction="both")


def daily_peak(series: pd.Series, min_coverage: float = 0.5) -> pd.Series:
    """Daily maximum (UTC days) of a regular sub-daily series.

    Days with less than ``min_coverage`` of their steps present are dropped, so a
    half-empty first or last day does not look like a dip.
    """
    if len(series) < 2:
        raise ValueError("need at least two points for a daily peak")
    step = pd.Timedelta(series.index[1] - series.index[0])
    if step >= pd.Timedelta(days=1):
        return series.copy()
    per_day = pd.Timedelta(days=1) / step
    grouped = series.groupby(series.index.floor("D"))
    peaks = grouped.max()
    counts = grouped.count()
    return peaks[counts >= min_coverage * per_day].astype(float)
