"""The stable CLI contract: capplan forecast --input HIST.csv --horizon-days H --output OUT.csv."""

import pandas as pd
import pytest

from forecasting.synthetic import generate_series

from .test_config import capplan


@pytest.mark.parametrize("step, horizon", [("5min", 1), ("1h", 14), ("1D", 30)])
def test_contract_at_any_step(tmp_path, step, horizon):
    days = 30 if step == "5min" else 120
    hist = generate_series(days=days, step=step, seed=1)
    hist = pd.concat([hist.drop(hist.index[50:60]), hist.iloc[[5, 6]]])  # gaps and repeats
    hist.rename(columns={"ts": "timestamp"}).to_csv(tmp_path / "h.csv", index=False)
    r = capplan("forecast", "--input", str(tmp_path / "h.csv"), "--horizon-days", str(horizon), "--output", str(tmp_path / "o.csv"))
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(tmp_path / "o.csv")
    assert list(out.columns) == ["ts", "yhat", "yhat_lower", "yhat_upper"]
    ts = pd.to_datetime(out["ts"], utc=True)
    step_td = pd.Timedelta(step)
    assert len(out) == int(pd.Timedelta(days=horizon) / step_td)
    assert ts.iloc[0] == pd.to_datetime(hist["ts"], utc=True).max() + step_td
    assert (ts.diff().dropna() == step_td).all()
    assert (out["yhat_lower"] <= out["yhat"]).all() and (out["yhat"] <= out["yhat_upper"]).all()


def test_level_widens_the_interval(tmp_path):
    generate_series(days=90, step="1h", seed=2).rename(columns={"ts": "timestamp"}).to_csv(tmp_path / "h.csv", index=False)
    widths = {}
    for level in (50, 95):
        r = capplan("forecast", "-i", str(tmp_path / "h.csv"), "-H", "7", "-o", str(tmp_path / f"o{level}.csv"), "--level", str(level))
        assert r.returncode == 0, r.stderr
        o = pd.read_csv(tmp_path / f"o{level}.csv")
        widths[level] = (o.yhat_upper - o.yhat_lower).mean()
    assert widths[95] > widths[50] * 1.5


def test_events_and_model_options(tmp_path):
    hist = generate_series(days=60, step="1h", seed=3, start="2026-01-01")
    hist.rename(columns={"ts": "timestamp"}).to_csv(tmp_path / "h.csv", index=False)
    (tmp_path / "ev.yaml").write_text("events:\n  - {name: sale, start: 2026-03-10, end: 2026-03-12, uplift_pct: 100}\n")
    r = capplan("forecast", "-i", str(tmp_path / "h.csv"), "-H", "20", "-o", str(tmp_path / "o.csv"), "--events", str(tmp_path / "ev.yaml"), "--model", "seasonal_trend")
    assert r.returncode == 0, r.stderr
    o = pd.read_csv(tmp_path / "o.csv")
    ts = pd.to_datetime(o.ts, utc=True)
    inside = o[(ts >= "2026-03-10") & (ts < "2026-03-13")]["yhat"].mean()
    before = o[(ts >= "2026-03-05") & (ts < "2026-03-08")]["yhat"].mean()
    assert inside == pytest.approx(2 * before, rel=0.15)
    assert "seasonal_trend" in r.stderr


@pytest.mark.parametrize("content, message", [
    ("timestamp,value\n", "empty"),
    ("time,val\n2026-01-01,1\n", "expected columns timestamp,value"),
    ("timestamp,value\nnot-a-date,1\n", "line 2"),
])
def test_bad_input_files(tmp_path, content, message):
    (tmp_path / "h.csv").write_text(content)
    r = capplan("forecast", "-i", str(tmp_path / "h.csv"), "-H", "7", "-o", str(tmp_path / "o.csv"))
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.csv").exists()


def test_unknown_model_is_refused(tmp_path):
    generate_series(days=30, seed=1).rename(columns={"ts": "timestamp"}).to_csv(tmp_path / "h.csv", index=False)
    r = capplan("forecast", "-i", str(tmp_path / "h.csv"), "-H", "7", "-o", str(tmp_path / "o.csv"), "-m", "crystal-ball")
    assert r.returncode == 1 and "unknown model 'crystal-ball'" in r.stderr
