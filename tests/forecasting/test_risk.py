"""Crossing probabilities and risk triggers on tiny frames whose answers are checkable by hand."""

import numpy as np
import pandas as pd
import pytest

from forecasting.frames import QUANTILE_COLUMNS, QUANTILES
from forecasting.risk import crossing_probability, exceedance, risk_trigger


def _frame(bases, spread=100.0):
    """Each row's quantile at p is base + spread * p: the distribution is uniform on
    [base, base + spread], so P(X >= L) = 1 - (L - base) / spread inside the grid."""
    rows = {"ts": pd.date_range("2026-01-01", periods=len(bases), freq="D", tz="UTC")}
    for q, col in zip(QUANTILES, QUANTILE_COLUMNS):
        rows[col] = np.asarray(bases, dtype=float) + spread * q
    return pd.DataFrame(rows)


def test_marginal_exceedance_is_read_off_the_grid():
    f = _frame([0, 10, 5])
    assert exceedance(f, 90) == pytest.approx([0.1, 0.2, 0.15])
    # between grid points (0.3 and 0.4) the distribution is linear in probability
    assert exceedance(f, 35)[0] == pytest.approx(0.65)


def test_beyond_the_grid_reports_the_edge():
    f = _frame([0, 0])
    assert exceedance(f, 1000) == pytest.approx([0.01, 0.01])
    assert exceedance(f, -1000) == pytest.approx([0.99, 0.99])


def test_comonotone_crossing_is_the_running_maximum():
    f = _frame([0, 10, 5])
    assert crossing_probability(f, 90) == pytest.approx([0.1, 0.2, 0.2])


def test_limit_per_row():
    f = _frame([0, 10, 5])
    # day 3's limit was raised (capacity added): its own probability drops, the running one cannot
    assert crossing_probability(f, np.array([90.0, 95.0, 200.0])) == pytest.approx([0.1, 0.15, 0.15])


def test_independent_days_multiply_survival():
    f = _frame([0, 10, 5])
    expected = [1 - 0.9, 1 - 0.9 * 0.8, 1 - 0.9 * 0.8 * 0.85]
    assert crossing_probability(f, 90, dependence=0.0) == pytest.approx(expected, abs=1e-9)


def test_partial_dependence_lies_between_comonotone_and_independent():
    f = _frame([0, 10, 5, 8, 2])
    lo = crossing_probability(f, 90, dependence=1.0)
    hi = crossing_probability(f, 90, dependence=0.0)
    mid = crossing_probability(f, 90, dependence=0.5)
    assert np.all(mid >= lo - 1e-4) and np.all(mid <= hi + 1e-4)  # numerical integration
    assert mid[-1] > lo[-1] + 0.01 and mid[-1] < hi[-1] - 0.01
    assert np.all(np.diff(mid) >= 0)
    # nearly comonotone converges to the running maximum
    assert crossing_probability(f, 90, dependence=0.999999) == pytest.approx(lo, abs=2e-3)


def test_far_limit_does_not_add_up_over_a_long_horizon():
    """Beyond the grid the independent model extends the tail; it does not take 1% a day."""
    f = _frame(np.zeros(365))
    assert crossing_probability(f, 1000, dependence=0.0)[-1] < 1e-3
    assert crossing_probability(f, 1000, dependence=1.0)[-1] == pytest.approx(0.01)


def test_risk_trigger_is_the_first_day_above_the_acceptable_risk():
    f = _frame([0, 10, 5])
    assert risk_trigger(f, 90, 0.15) == 1  # day 0 is 0.10 <= 0.15, day 1 is 0.20
    assert risk_trigger(f, 90, 0.05) == 0
    assert risk_trigger(f, 90, 0.25) is None
    assert risk_trigger(f, 90, 0.25, dependence=0.0) == 1  # 0.28 by day 1 when days are independent


def test_bad_arguments():
    f = _frame([0])
    with pytest.raises(ValueError, match="quantile column"):
        crossing_probability(f.drop(columns=["q500"]), 1.0)
    with pytest.raises(ValueError, match="max_risk"):
        risk_trigger(f, 1.0, 0.0)
    with pytest.raises(ValueError, match="dependence"):
        crossing_probability(f, 1.0, dependence=1.5)


def test_on_a_real_forecast_the_risk_trigger_comes_before_the_point_forecast_crossing():
    from forecasting import forecast_daily_peak
    from forecasting.synthetic import generate_series

    hist = generate_series(days=120, trend_per_day=0.5, noise=2.0, seed=21)
    res = forecast_daily_peak(hist, 120)
    limit = float(res.frame["yhat"].iloc[60])  # the point forecast reaches it on day 60
    assert 0.0 <= res.dependence <= 1.0
    p = crossing_probability(res.frame, limit, res.dependence)
    assert np.all(np.diff(p) >= 0) and p[0] < 0.1 and p[-1] > 0.9
    early, late = risk_trigger(res.frame, limit, 0.10, res.dependence), risk_trigger(res.frame, limit, 0.25, res.dependence)
    point = int(np.flatnonzero(res.frame["yhat"].to_numpy() >= limit)[0])
    assert early is not None and late is not None and early <= late <= point
