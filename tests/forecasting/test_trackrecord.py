"""How past plans did: scores, trigger outcomes and the summary, on tables checkable on paper."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from forecasting.trackrecord import OUTCOME_KEYS, SCORE_KEYS, score_forecast, summarise, trigger_outcome

D0 = dt.date(2026, 6, 1)


def days(n: int, start: dt.date = D0) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq="D")


def forecast(yhat, band80=1.0, band95=2.0, start: dt.date = D0) -> pd.DataFrame:
    y = np.asarray(yhat, dtype=float)
    return pd.DataFrame({"ts": days(len(y), start), "yhat": y, "q100": y - band80, "q900": y + band80,
                         "q025": y - band95, "q975": y + band95})


def actual(values, start: dt.date = D0) -> pd.DataFrame:
    v = np.asarray(values, dtype=float)
    return pd.DataFrame({"ts": days(len(v), start), "value": v})


# --- score_forecast ------------------------------------------------------------------

def test_scores_by_hand():
    # errors (actual - yhat): 0, +1, -1.5, +3 -> mae 5.5 / 4 = 1.375
    f = forecast([10, 10, 10, 10])
    a = actual([10, 11, 8.5, 13])
    s = score_forecast(f, a, scale=2.0)
    assert set(s) == set(SCORE_KEYS)
    assert s["days"] == 4
    assert s["mae"] == pytest.approx(1.375)
    assert s["mase"] == pytest.approx(0.6875)
    # 80% band [9, 11]: 10 and 11 (edge included) -> 2 of 4; 95% band [8, 12]: 3 of 4
    assert s["coverage_80"] == pytest.approx(0.5)
    assert s["coverage_95"] == pytest.approx(0.75)
    # forecast total 40, actual total 42.5: 100 * (40 - 42.5) / 42.5
    assert s["bias_pct"] == pytest.approx(100 * -2.5 / 42.5)


def test_only_common_days_count():
    f = forecast([10, 10, 10, 10])                       # Jun 1-4
    a = actual([12, 10, np.nan, 14], start=D0 + dt.timedelta(days=2))  # Jun 3-6, Jun 5 missing
    s = score_forecast(f, a, scale=1.0)
    assert s["days"] == 2                                 # Jun 3 and 4
    assert s["mae"] == pytest.approx(1.0)                 # |12-10| and |10-10|


def test_no_common_day_and_bad_scale():
    s = score_forecast(forecast([1, 2]), actual([1, 2], start=dt.date(2027, 1, 1)), scale=1.0)
    assert s["days"] == 0 and np.isnan(s["mae"]) and np.isnan(s["coverage_80"])
    assert np.isnan(score_forecast(forecast([1, 2]), actual([1, 3]), scale=0.0)["mase"])
    with pytest.raises(ValueError, match="q975"):
        score_forecast(forecast([1]).drop(columns="q975"), actual([1]), scale=1.0)


def test_timestamps_within_the_day_match_their_day():
    f = forecast([10, 10])
    a = pd.DataFrame({"ts": days(2) + pd.Timedelta(hours=15), "value": [10.0, 12.0]})
    assert score_forecast(f, a, scale=1.0)["days"] == 2


# --- trigger_outcome -----------------------------------------------------------------

def test_every_status():
    since, until = D0, D0 + dt.timedelta(days=9)   # scored days: Jun 2 .. Jun 10
    a = actual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14])  # reaches 10 on Jun 6
    crossing = dt.date(2026, 6, 6)
    # predicted Jun 4, happened Jun 6: hit, two days after the prediction
    hit = trigger_outcome(dt.date(2026, 6, 4), a, 10.0, since, until)
    assert set(hit) == set(OUTCOME_KEYS)
    assert (hit["status"], hit["actual_crossing"], hit["error_days"], hit["late"]) == ("hit", crossing, 2, False)
    # on the day: still a hit
    assert trigger_outcome(crossing, a, 10.0, since, until)["error_days"] == 0
    # predicted Jun 18, happened Jun 6: an order on that schedule comes 12 days late
    early = trigger_outcome(dt.date(2026, 6, 18), a, 10.0, since, until)
    assert (early["status"], early["error_days"], early["late"]) == ("missed", -12, True)
    # not predicted at all
    unforeseen = trigger_outcome(None, a, 10.0, since, until)
    assert (unforeseen["status"], unforeseen["error_days"], unforeseen["late"]) == ("missed", None, True)
    # predicted, nothing happened (limit never reached)
    fa = trigger_outcome(dt.date(2026, 6, 8), a, 100.0, since, until)
    assert (fa["status"], fa["actual_crossing"], fa["late"]) == ("false_alarm_so_far", None, False)
    assert trigger_outcome(until, a, 100.0, since, until)["status"] == "false_alarm_so_far"
    # predicted after the last day with data
    assert trigger_outcome(dt.date(2026, 7, 1), a, 100.0, since, until)["status"] == "pending"
    # neither
    quiet = trigger_outcome(None, a, 100.0, since, until)
    assert (quiet["status"], quiet["actual_crossing"], quiet["error_days"]) == ("quiet", None, None)


def test_crossing_window_is_after_since_up_to_until():
    a = actual([20, 1, 1, 1, 20, 20])  # Jun 1 and Jun 5-6 above the limit
    # Jun 1 is the run's own as-of day: not "since"; Jun 6 is after until
    out = trigger_outcome(None, a, 10.0, since=D0, until=dt.date(2026, 6, 4))
    assert out["status"] == "quiet"
    assert trigger_outcome(None, a, 10.0, since=D0, until=dt.date(2026, 6, 5))["actual_crossing"] == dt.date(2026, 6, 5)


# --- summarise -----------------------------------------------------------------------

def scores_frame() -> pd.DataFrame:
    rows = [
        # run, pool, days, coverage_80, coverage_95, mase
        ("2026-09", "data", 60, 0.9, 1.0, 0.8),
        ("2026-09", "compute", 60, 0.7, 0.9, 1.2),
        ("2026-10", "data", 30, 0.6, 0.8, 1.0),
        ("2026-10", "compute", 0, np.nan, np.nan, np.nan),  # nothing to score yet
    ]
    return pd.DataFrame([{"run_id": r, "cluster": "prod-cn-east", "pool": p, "resource": "cpu", "kind": "usage",
                          "days": d, "mae": 1.0, "mase": m, "coverage_80": c80, "coverage_95": c95, "bias_pct": 0.0}
                         for r, p, d, c80, c95, m in rows])


def outcomes_frame(missed: bool) -> pd.DataFrame:
    since, until = dt.date(2026, 9, 1), dt.date(2026, 11, 1)
    a = actual(np.linspace(0, 30, 62), start=since)  # crosses 20 on Oct 12
    rows = [("2026-09", "compute", trigger_outcome(dt.date(2026, 10, 10), a, 20.0, since, until)),
            ("2026-10", "compute", trigger_outcome(dt.date(2027, 2, 1), a, 100.0, since, until))]
    if missed:
        rows.append(("2026-09", "data", trigger_outcome(dt.date(2026, 10, 24), a, 20.0, since, until)))
    return pd.DataFrame([{"run_id": r, "cluster": "prod-cn-east", "pool": p, "resource": "cpu", **o} for r, p, o in rows])


def test_summary_pools_days_and_counts():
    out = summarise(scores_frame(), outcomes_frame(missed=False))
    assert out["runs"] == 2 and out["series"] == 2
    # pooled over days: (60*0.9 + 60*0.7 + 30*0.6) / 150 = 114 / 150
    assert out["coverage_80"] == pytest.approx(0.76)
    assert out["coverage_95"] == pytest.approx((60 * 1.0 + 60 * 0.9 + 30 * 0.8) / 150)
    assert out["median_mase"] == pytest.approx(1.0)
    assert (out["triggers_hit"], out["triggers_missed"], out["late_orders"]) == (1, 0, 0)
    assert out["text"] == "the last 2 plans: 80% bands held 76% of days; no missed trigger"


def test_summary_names_a_missed_trigger():
    out = summarise(scores_frame(), outcomes_frame(missed=True))
    assert (out["triggers_hit"], out["triggers_missed"], out["late_orders"]) == (1, 1, 1)
    assert out["text"] == ("the last 2 plans: 80% bands held 76% of days; "
                           "1 missed trigger (prod-cn-east/data cpu, 12 days early)")


def test_summary_of_nothing_and_of_an_unforeseen_crossing():
    empty = summarise(scores_frame().iloc[0:0], outcomes_frame(False).iloc[0:0])
    assert empty["runs"] == 0 and empty["text"] == "no earlier plan to score yet"
    a = actual([1, 30], start=dt.date(2026, 9, 1))
    o = pd.DataFrame([{"run_id": "2026-09", "cluster": "c", "pool": "p", "resource": "memory",
                       **trigger_outcome(None, a, 20.0, dt.date(2026, 8, 31), dt.date(2026, 9, 2))}])
    out = summarise(scores_frame().iloc[:1], o)
    assert out["text"] == "the last plan: 80% bands held 90% of days; 1 missed trigger (c/p memory, not foreseen)"
