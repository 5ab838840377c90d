"""Why a trigger is where it is: counterfactual triggers without each business event, and
which actions exist only because of a short event (rent, don't buy). Pure.

An event's overlay multiplies a forecast by a factor per day (``forecast_overlays``:
``series_id, ts, event, contribution, factor``); dividing by that factor gives the forecast
without the event. Re-deciding on that forecast with the same policy gives the trigger
without the event; an event is cited for a trigger only if removing it moves the trigger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from .frames import QUANTILE_COLUMNS
from .headroom import LeadLookup, PolicyLookup, decisions, utilisation

__all__ = ["without_events", "event_effects", "TemporaryNeed", "temporary_needs", "EFFECT_COLUMNS", "spike_effects",
           "spike_notes", "SPIKE_EFFECT_COLUMNS"]

VALUE_COLUMNS = ["yhat", "yhat_lower", "yhat_upper", "yhat_baseline", *QUANTILE_COLUMNS]
EFFECT_COLUMNS = ["cluster", "pool", "resource", "event", "event_days", "trigger_without", "shift_days"]


def _by_key(frame: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    """``frame``'s rows per value of ``keys``, in their order and with their index (what
    ``frame[(frame[k1] == v1) & ...]`` gives, for every key at once)."""
    if frame.empty:
        return {}
    return dict(tuple(frame.groupby(keys, sort=False)))


def without_events(forecasts: pd.DataFrame, overlays: pd.DataFrame, events: set[str]) -> pd.DataFrame:
    """The forecasts with the named events' overlays removed (value columns divided by the
    events' factors). In: forecasts (``series_id, ts`` + value columns), overlays
    (``series_id, ts, event, factor``). Out: forecasts, same columns."""
    sel = overlays[overlays["event"].isin(events)]
    if sel.empty:
        return forecasts
    factor = sel.groupby(["series_id", "ts"])["factor"].prod().rename("_factor").reset_index()
    out = forecasts.merge(factor, on=["series_id", "ts"], how="left")
    f = out.pop("_factor").fillna(1.0).to_numpy()
    for c in [c for c in VALUE_COLUMNS if c in out and c != "yhat_baseline"]:
        out[c] = out[c].to_numpy(dtype=float) / f
    return out


def event_effects(forecasts: pd.DataFrame, overlays: pd.DataFrame, usable: pd.DataFrame, base: pd.DataFrame,
                  policy_of: PolicyLookup, as_of: dt.date, horizon_days: int, lead_of: LeadLookup | None = None) -> pd.DataFrame:
    """For every triggered pool resource and every event overlaid on its series: the
    trigger without that event and how many days the event moves it.

    In: forecasts, overlays, ``usable`` (:func:`forecasting.headroom.usable_capacity`),
    ``base`` (the decisions with every event). Out: :data:`EFFECT_COLUMNS`; ``event_days``
    is how many forecast days the event changes; ``shift_days`` is trigger minus the
    trigger without the event (positive: the event brings the trigger earlier by that many
    days), None when there is no trigger without it.
    """
    rows = []
    if overlays.empty or base.empty:
        return pd.DataFrame(columns=EFFECT_COLUMNS)
    keyed = overlays.merge(forecasts[["series_id", "cluster", "pool", "resource"]].drop_duplicates(), on="series_id")
    triggered = base[base["trigger_date"].notna()]
    # each frame split by pool resource once (a mask over the whole frame per pool took
    # most of this function's time at 100 clusters)
    keys = ["cluster", "pool", "resource"]
    trig, fcs, caps = _by_key(triggered, keys), _by_key(forecasts, keys), _by_key(usable, keys)
    for (cluster, pool, res), ov in keyed.groupby(keys, sort=True):
        d = trig.get((cluster, pool, res), triggered.iloc[0:0])
        if d.empty:
            continue
        trigger = d["trigger_date"].iloc[0]
        fc = fcs.get((cluster, pool, res), forecasts.iloc[0:0])
        cap = caps.get((cluster, pool, res), usable.iloc[0:0])
        for event, e in ov.groupby("event", sort=True):
            alt = decisions(utilisation(without_events(fc, e, {event}), cap, policy_of, sizing=False), policy_of, as_of, horizon_days, lead_of)
            after = alt["trigger_date"].iloc[0] if len(alt) else None
            after = None if after is None or pd.isna(after) else after
            rows.append({"cluster": cluster, "pool": pool, "resource": res, "event": event,
                         "event_days": int(e["ts"].nunique()), "trigger_without": after,
                         "shift_days": (after - trigger).days if after else None})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


@dataclass(frozen=True)
class TemporaryNeed:
    """A pool that needs capacity only during short events: rent it for ``start``..``end``."""

    events: tuple[str, ...]
    start: dt.date
    end: dt.date


def temporary_needs(forecasts: pd.DataFrame, overlays: pd.DataFrame, usable: pd.DataFrame, base: pd.DataFrame,
                    policy_of: PolicyLookup, as_of: dt.date, horizon_days: int) -> dict[tuple[str, str], TemporaryNeed]:
    """Pools whose every trigger disappears without their short events (those changing the
    forecast on at most the policy's ``temporary_event_max_days`` days).

    Out: ``(cluster, pool) -> TemporaryNeed`` with the days those events change.
    """
    out: dict[tuple[str, str], TemporaryNeed] = {}
    if overlays.empty or base.empty:
        return out
    keyed = overlays.merge(forecasts[["series_id", "cluster", "pool"]].drop_duplicates(), on="series_id")
    triggered = base[base["trigger_date"].notna()]
    keys = ["cluster", "pool"]
    ovs, fcs, caps = _by_key(keyed, keys), _by_key(forecasts, keys), _by_key(usable, keys)
    for (cluster, pool), d in triggered.groupby(keys, sort=True):
        policy = policy_of(cluster, pool, d["tier"].iloc[0])
        ov = ovs.get((cluster, pool), keyed.iloc[0:0])
        days = ov.groupby("event")["ts"].nunique()
        short = set(days[days <= policy.temporary_event_max_days].index)
        if not short:
            continue
        fc = fcs.get((cluster, pool), forecasts.iloc[0:0])
        cap = caps.get((cluster, pool), usable.iloc[0:0])
        alt = decisions(utilisation(without_events(fc, ov, short), cap, policy_of, sizing=False), policy_of, as_of, horizon_days)
        if len(alt) and alt["trigger_date"].notna().any():
            continue  # needed without the short events too: a permanent need
        window = pd.DatetimeIndex(ov[ov["event"].isin(short)]["ts"])
        out[(cluster, pool)] = TemporaryNeed(tuple(sorted(short)), window.min().date(), window.max().date())
    return out



SPIKE_EFFECT_COLUMNS = ["cluster", "pool", "resource", "kind", "start_date", "end_date", "excess_pct", "trigger_date",
                        "trigger_without"]


def spike_effects(forecasts: pd.DataFrame, refit: pd.DataFrame, spikes: pd.DataFrame, usable: pd.DataFrame,
                  base: pd.DataFrame, policy_of: PolicyLookup, as_of: dt.date, horizon_days: int,
                  lead_of: LeadLookup | None = None) -> pd.DataFrame:
    """The trigger each pool resource would have if its unexplained history peaks were masked.

    In: the forecasts; ``refit`` (the same series forecast again with the spike windows
    masked, same columns); ``spikes`` (``cluster, pool, resource, kind, start_date,
    end_date, excess_pct``); ``usable``; ``base`` (the decisions). Out:
    :data:`SPIKE_EFFECT_COLUMNS`, one row per spike, ``trigger_without`` None when there
    is no trigger without the pool resource's spikes.
    """
    rows = []
    if spikes.empty:
        return pd.DataFrame(columns=SPIKE_EFFECT_COLUMNS)
    for (cluster, pool, res), s in spikes.groupby(["cluster", "pool", "resource"], sort=True):
        at = (forecasts.cluster == cluster) & (forecasts.pool == pool) & (forecasts.resource == res)
        kinds = set(s["kind"])
        replaced = refit[(refit.cluster == cluster) & (refit.pool == pool) & (refit.resource == res) & refit["kind"].isin(kinds)]
        fc = pd.concat([forecasts[at & ~forecasts["kind"].isin(kinds)], replaced], ignore_index=True)
        cap = usable[(usable.cluster == cluster) & (usable.pool == pool) & (usable.resource == res)]
        alt = decisions(utilisation(fc, cap, policy_of, sizing=False), policy_of, as_of, horizon_days, lead_of)
        d = base[(base.cluster == cluster) & (base.pool == pool) & (base.resource == res)]
        trigger = d["trigger_date"].iloc[0] if len(d) else None
        without = alt["trigger_date"].iloc[0] if len(alt) else None
        for r in s.itertuples():
            rows.append({"cluster": cluster, "pool": pool, "resource": res, "kind": r.kind, "start_date": r.start_date,
                         "end_date": r.end_date, "excess_pct": r.excess_pct,
                         "trigger_date": None if trigger is None or pd.isna(trigger) else trigger,
                         "trigger_without": None if without is None or pd.isna(without) else without})
    return pd.DataFrame(rows, columns=SPIKE_EFFECT_COLUMNS)


def spike_notes(effects: pd.DataFrame, events_file: str = "catalogs/events.yaml") -> dict[tuple[str, str], list[str]]:
    """One sentence per unexplained peak that moves a trigger, per pool: 'history has an
    unexplained +17% peak on 2026-10-10..15 (cpu usage); declare it in catalogs/events.yaml
    to exclude it; trigger without it: 2027-03-14'."""
    out: dict[tuple[str, str], list[str]] = {}
    for r in effects.itertuples():
        if r.trigger_date == r.trigger_without:
            continue
        without = r.trigger_without if r.trigger_without is not None else "none within the horizon"
        out.setdefault((r.cluster, r.pool), []).append(
            f"history has an unexplained {r.excess_pct:+.0f}% peak on {r.start_date}..{r.end_date} ({r.resource} {r.kind}); "
            f"declare it in {events_file} to exclude it; trigger without it: {without}")
    return out
