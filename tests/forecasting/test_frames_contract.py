"""The stage-boundary contracts of forecasting/frames.py."""

import pandas as pd
import pytest

from forecasting.frames import CONTRACTS, FrameError, check_frame


def test_missing_column_is_named():
    frame = pd.DataFrame({c: [] for c in CONTRACTS["pool_history"] if c != "kind"})
    with pytest.raises(FrameError, match="ingest: pool_history: missing column.*kind"):
        check_frame(frame, "pool_history", "ingest")


def test_naive_timestamps_are_refused_and_a_good_frame_passes():
    row = {"cluster": "c", "pool": "p", "resource": "cpu", "kind": "usage", "value": 1.0}
    naive = pd.DataFrame([{**row, "ts": pd.Timestamp("2026-01-01")}])
    with pytest.raises(FrameError, match="tz-aware"):
        check_frame(naive, "pool_history")
    good = naive.assign(ts=pd.Timestamp("2026-01-01", tz="UTC"))
    assert check_frame(good, "pool_history") is good
