"""How past plans did: every earlier monthly run still inside its horizon, scored against
the history this run has (forecasting.trackrecord does the arithmetic).

In: the run's daily peaks (``cluster, pool, resource, kind, ts, value``). Out: the
``track_record`` table's rows and the summary (figures and one sentence) the report and
the email show.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from forecasting.backtest import naive_scale
from forecasting.frames import QUANTILE_COLUMNS
from forecasting.trackrecord import score_forecast, summarise, trigger_outcome

from .context import RunContext

__all__ = ["score_past_plans", "TRACK_COLUMNS"]

TRACK_COLUMNS = ["past_run_id", "past_as_of", "cluster", "pool", "resource", "kind", "days", "mae", "mase", "coverage_80",
                 "coverage_95", "bias_pct", "predicted_trigger", "actual_crossing", "status", "late", "error_days"]
KEYS = ["cluster", "pool", "resource", "kind"]


def score_past_plans(ctx: RunContext, daily: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Score the earlier monthly runs whose horizon reaches this run's as-of date.

    Out: (rows with :data:`TRACK_COLUMNS`, :func:`forecasting.trackrecord.summarise`'s dict)."""
    past = ctx.store.past_runs(ctx.as_of)
    rows = []
    until = ctx.as_of - dt.timedelta(days=1)
    by_series = {k: g.sort_values("ts") for k, g in daily.groupby(KEYS)}
    for p in past.itertuples():
        as_of = pd.Timestamp(p.as_of).date()
        if as_of + dt.timedelta(days=int(p.horizon_days or 0)) <= ctx.as_of:
            continue  # its horizon has passed: nothing left to learn from it
        fc = ctx.store.table("forecasts", p.run_id)
        if fc.empty or not all(c in fc for c in QUANTILE_COLUMNS) or fc[list(QUANTILE_COLUMNS)].isna().all().all():
            continue  # made before forecasts carried quantiles
        decisions = ctx.store.table("decisions", p.run_id)
        binding = {(r.cluster, r.pool, r.resource): r for r in decisions.itertuples() if isinstance(r.binding_kind, str)}
        start = pd.Timestamp(as_of, tz="UTC")
        for key, f in fc.groupby(KEYS):
            hist = by_series.get(key)
            if hist is None:
                continue
            actual = hist[(hist["ts"] >= start) & (hist["ts"] < pd.Timestamp(ctx.as_of, tz="UTC"))]
            before = hist[hist["ts"] < start]["value"]
            score = score_forecast(f.sort_values("ts"), actual[["ts", "value"]], naive_scale(before.dropna().to_numpy(dtype=float), 7))
            row = {"past_run_id": p.run_id, "past_as_of": as_of, **dict(zip(KEYS, key)), **score,
                   "predicted_trigger": None, "actual_crossing": None, "status": None, "late": None, "error_days": None}
            d = binding.get(key[:3])
            if d is not None and d.binding_kind == key[3] and pd.notna(d.usable):
                trigger = None if d.trigger_date is None or pd.isna(d.trigger_date) else pd.Timestamp(d.trigger_date).date()
                row |= trigger_outcome(trigger, actual[["ts", "value"]], float(d.usable) * float(d.threshold_pct) / 100, as_of, until)
            rows.append(row)
    table = pd.DataFrame(rows, columns=TRACK_COLUMNS)
    scores = table.rename(columns={"past_run_id": "run_id"})
    outcomes = scores[scores["status"].notna()]
    return table, summarise(scores, outcomes)
