import numpy as np
import pandas as pd
import pytest

from forecasting.frames import FrameError, make_series_id, parse_series_id, validate_long
from forecasting.series import daily_peak, infer_step, regularize, to_series, undo_counter_resets


def _series(values, start="2026-01-01", freq="h"):
    idx = pd.date_range(start, periods=len(values), freq=freq, tz="UTC")
    return pd.Series(np.asarray(values, dtype=float), index=idx)


def test_series_id_round_trip_escapes_separators():
    sid = make_series_id(cluster="a/b", pool="x=y", resource="cpu", kind="usage")
    assert parse_series_id(sid) == {"cluster": "a/b", "pool": "x=y", "resource": "cpu", "kind": "usage"}
    assert sid.count("/") == 3


def test_validate_long_names_the_series_with_a_bad_value():
    df = pd.DataFrame({"series_id": ["s1", "s2"], "ts": pd.to_datetime(["2026-01-01", "2026-01-01"], utc=True), "value": [1.0, np.inf]})
    with pytest.raises(FrameError, match="s2"):
        validate_long(df)


def test_regularize_fills_gaps_and_averages_duplicates():
    s = _series(np.arange(48.0))
    s = pd.concat([s.drop(s.index[10:13]), pd.Series([100.0], index=[s.index[5]])])
    out, q = regularize(s)
    assert len(out) == 48
    assert q.duplicates == 1 and q.gaps == 1 and q.longest_gap_steps == 3
    assert out.iloc[5] == pytest.approx((5 + 100) / 2)
    assert out.iloc[11] == pytest.approx(11.0)  # linear fill of a short gap


def test_regularize_snaps_jittered_timestamps_and_clips_negatives():
    s = _series([1.0, -2.0, 3.0, 4.0])
    s.index = s.index + pd.to_timedelta([0, 20, -15, 5], unit="s")
    out, q = regularize(s)
    assert list(out) == [1.0, 0.0, 3.0, 4.0]
    assert q.negatives_clipped == 1


def test_infer_step_and_daily_peak():
    s = _series(np.tile(np.arange(24.0), 3))
    assert infer_step(s.index) == pd.Timedelta(hours=1)
    peaks = daily_peak(s)
    assert list(peaks) == [23.0, 23.0, 23.0]


def test_daily_peak_drops_thin_days():
    s = _series(np.arange(30.0))  # 24 h + 6 h
    assert len(daily_peak(s)) == 1


def test_counter_reset_is_undone():
    s = pd.Series([5.0, 7.0, 2.0, 4.0])
    assert list(undo_counter_resets(s)) == [5.0, 7.0, 9.0, 11.0]


def test_to_series_converts_offsets_to_utc():
    df = pd.DataFrame({"ts": ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"], "value": [1, 2]})
    s = to_series(df)
    assert list(s.index.hour) == [0, 1]
