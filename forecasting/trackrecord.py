"""How past plans did: an earlier run's forecast and triggers against what happened since.
Pure and hand-checkable.

A monthly report scores every earlier run that is still inside its horizon:

* :func:`score_forecast`: the run's daily-peak forecast of one series against the daily
  peaks that happened (error, scaled error, whether the bands held, bias);
* :func:`trigger_outcome`: whether the capacity trigger it predicted came true, came
  early (an order placed on that schedule would have been late), has not come yet, or
  came with no warning at all;
* :func:`summarise`: the figures and the one sentence the report shows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from .frames import TS, VALUE, YHAT, quantile_column

__all__ = ["SCORE_KEYS", "OUTCOME_KEYS", "STATUSES", "score_forecast", "trigger_outcome", "summarise"]

#: Band edges: the 80% band is q100..q900, the 95% band q025..q975.
LOW_80, HIGH_80 = quantile_column(0.1), quantile_column(0.9)
LOW_95, HIGH_95 = quantile_column(0.025), quantile_column(0.975)

#: Keys of :func:`score_forecast`'s answer.
SCORE_KEYS = ("days", "mae", "mase", "coverage_80", "coverage_95", "bias_pct")
#: Keys of :func:`trigger_outcome`'s answer.
OUTCOME_KEYS = ("predicted_trigger", "actual_crossing", "status", "late", "error_days")
#: The possible ``status`` values of :func:`trigger_outcome`.
STATUSES = ("hit", "missed", "false_alarm_so_far", "pending", "quiet")


def _days(ts: pd.Series) -> pd.Series:
    """UTC calendar days of a timestamp column (naive timestamps are taken as UTC)."""
    t = pd.to_datetime(ts, utc=True)
    return t.dt.floor("D")


def _actual_days(actual: pd.DataFrame) -> pd.DataFrame:
    """``day, value`` with one finite value per day (the day's highest, if repeated)."""
    a = pd.DataFrame({"day": _days(actual[TS]), VALUE: pd.to_numeric(actual[VALUE], errors="coerce")})
    a = a[np.isfinite(a[VALUE].to_numpy(dtype=float))]
    return a.groupby("day", as_index=False)[VALUE].max()


def score_forecast(forecast: pd.DataFrame, actual: pd.DataFrame, scale: float) -> dict[str, float | int]:
    """Score a past run's daily-peak forecast against the daily peaks that happened.

    In: ``forecast`` with ``ts, yhat, q100, q900, q025, q975`` (one row per day);
    ``actual`` with ``ts, value`` (daily peaks; NaN rows are ignored); ``scale``, the
    in-sample mean absolute error of the weekly seasonal-naive forecast on the run's own
    history (what makes MASE comparable between series).

    Out, over the days both frames have: ``days``; ``mae`` (mean ``|value - yhat|``);
    ``mase`` (``mae / scale``, NaN when ``scale`` is not positive); ``coverage_80`` and
    ``coverage_95`` (share of days whose actual lies inside ``[q100, q900]``, resp.
    ``[q025, q975]``, edges included); ``bias_pct`` (``100 * sum(yhat - value) /
    sum(value)``: positive when the forecast ran high). With no common day: ``days`` 0 and
    NaN for the rest.
    """
    needed = [TS, YHAT, LOW_80, HIGH_80, LOW_95, HIGH_95]
    missing = [c for c in needed if c not in forecast.columns]
    if missing:
        raise ValueError(f"forecast lacks column(s) {', '.join(missing)}")
    f = forecast[needed].assign(day=_days(forecast[TS])).drop(columns=TS).drop_duplicates("day", keep="last")
    both = f.merge(_actual_days(actual), on="day", how="inner")
    n = len(both)
    if n == 0:
        return {"days": 0, "mae": np.nan, "mase": np.nan, "coverage_80": np.nan, "coverage_95": np.nan,
                "bias_pct": np.nan}
    y, yhat = both[VALUE].to_numpy(dtype=float), both[YHAT].to_numpy(dtype=float)
    mae = float(np.mean(np.abs(y - yhat)))
    total = float(np.sum(y))
    return {
        "days": n,
        "mae": mae,
        "mase": mae / scale if np.isfinite(scale) and scale > 0 else np.nan,
        "coverage_80": float(np.mean((both[LOW_80] <= y) & (y <= both[HIGH_80]))),
        "coverage_95": float(np.mean((both[LOW_95] <= y) & (y <= both[HIGH_95]))),
        "bias_pct": 100.0 * float(np.sum(yhat - y)) / total if total != 0 else np.nan,
    }


def trigger_outcome(
    predicted_trigger: dt.date | None, actual: pd.DataFrame, limit: float, since: dt.date, until: dt.date
) -> dict[str, Any]:
    """What became of one predicted trigger (the day demand reaches ``limit``).

    In: the trigger a past run predicted (None: it foresaw no crossing); ``actual`` with
    ``ts, value`` (daily peaks); ``limit`` in the series' units (e.g. 70% of N+2 usable
    capacity at that run); ``since`` (the run's as-of date) and ``until`` (the last day
    with data).

    Out: ``predicted_trigger``; ``actual_crossing``, the first day in ``(since, until]``
    whose peak reached ``limit`` (or None); ``status``:

    * ``hit``: predicted, and the crossing came on or after the predicted day;
    * ``missed``: the crossing came without a prediction, or before the predicted day
      (capacity ordered on the predicted schedule would have arrived late);
    * ``false_alarm_so_far``: predicted on or before ``until``, no crossing yet;
    * ``pending``: predicted after ``until``, no crossing yet;
    * ``quiet``: neither predicted nor happened;

    ``late`` (True exactly when missed: the crossing came before the predicted day or
    without one) and ``error_days`` (crossing minus prediction in days, negative when
    early; None unless both exist).
    """
    a = _actual_days(actual)
    day = a["day"].dt.date
    inside = a[(day > since) & (day <= until) & (a[VALUE] >= limit)]
    crossing = inside["day"].min().date() if len(inside) else None
    error = (crossing - predicted_trigger).days if crossing is not None and predicted_trigger is not None else None
    if crossing is not None:
        status = "hit" if error is not None and error >= 0 else "missed"
    elif predicted_trigger is None:
        status = "quiet"
    else:
        status = "false_alarm_so_far" if predicted_trigger <= until else "pending"
    return {"predicted_trigger": predicted_trigger, "actual_crossing": crossing, "status": status,
            "late": status == "missed", "error_days": error}


def _pooled(scores: pd.DataFrame, column: str) -> float:
    """Share of all scored days (not the mean of the runs' shares)."""
    ok = scores[column].notna() & (scores["days"] > 0)
    days = scores.loc[ok, "days"].to_numpy(dtype=float)
    if not days.sum():
        return np.nan
    return float(np.sum(scores.loc[ok, column].to_numpy(dtype=float) * days) / days.sum())


def _missed_text(missed: pd.DataFrame) -> str:
    """``1 missed trigger (prod-cn-east/data cpu, 12 days early)``."""
    parts = []
    for r in missed.itertuples(index=False):
        err = getattr(r, "error_days", None)
        early = -int(err) if err is not None and pd.notna(err) else None
        when = "not foreseen" if early is None else f"{early} day{'s' if early != 1 else ''} early"
        parts.append(f"{r.cluster}/{r.pool} {r.resource}, {when}")
    n = len(missed)
    return f"{n} missed trigger{'s' if n != 1 else ''} ({'; '.join(parts)})"


def summarise(scores: pd.DataFrame, outcomes: pd.DataFrame) -> dict[str, Any]:
    """The track record of earlier plans in figures and one sentence.

    In: ``scores``, one row per past run and series: ``run_id, cluster, pool, resource,
    kind`` and :data:`SCORE_KEYS` (as :func:`score_forecast` gives them); ``outcomes``,
    one row per past run and pool resource: ``run_id, cluster, pool, resource`` and
    :data:`OUTCOME_KEYS` (as :func:`trigger_outcome` gives them).

    Out: ``runs`` (distinct ``run_id`` in either frame), ``series`` (distinct
    ``cluster, pool, resource, kind`` scored), ``coverage_80`` and ``coverage_95``
    (pooled over every scored day), ``median_mase``, ``triggers_hit``,
    ``triggers_missed``, ``late_orders``, and ``text``, e.g. "the last 6 plans: 80% bands
    held 81% of days; no missed trigger".
    """
    scored = scores[scores["days"] > 0]
    status = outcomes["status"]
    missed = outcomes[status == "missed"].sort_values(["run_id", "cluster", "pool", "resource"])
    out: dict[str, Any] = {
        "runs": len(set(scores["run_id"]) | set(outcomes["run_id"])),
        "series": len(scored[["cluster", "pool", "resource", "kind"]].drop_duplicates()),
        "coverage_80": _pooled(scored, "coverage_80"),
        "coverage_95": _pooled(scored, "coverage_95"),
        "median_mase": float(scored["mase"].median()) if scored["mase"].notna().any() else np.nan,
        "triggers_hit": int((status == "hit").sum()),
        "triggers_missed": len(missed),
        "late_orders": int(outcomes["late"].astype(bool).sum()),
    }
    out["text"] = _sentence(out, missed)
    return out


def _sentence(figures: dict[str, Any], missed: pd.DataFrame) -> str:
    runs = figures["runs"]
    if runs == 0:
        return "no earlier plan to score yet"
    who = "the last plan" if runs == 1 else f"the last {runs} plans"
    cov = figures["coverage_80"]
    bands = f"80% bands held {cov:.0%} of days" if np.isfinite(cov) else "no day to score yet"
    triggers = _missed_text(missed) if len(missed) else "no missed trigger"
    return f"{who}: {bands}; {triggers}"
