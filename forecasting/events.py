"""Business-event overlays: the calendar a capacity plan must respect.

An event has a window (``start``..``end``, inclusive days, UTC), a scope (the whole
fleet, or named clusters, tiers or pools; and which resources) and a kind:

* ``uplift``: demand x (1 + uplift_pct/100) during the window, with optional ramp-up
  and ramp-down days ("+150%" means x 2.5). Past occurrences in the history are masked
  before fitting so the spike neither bends the trend nor leaks into the season; if
  ``recurring: annual``, the event repeats every year (and when ``uplift_pct`` is not
  given, the uplift measured in last year's occurrence is carried forward).
* ``step``: a change from ``start`` that persists ("+20% from the Q2 launch").
* ``holiday``: a known disturbance in the history that is only masked (no uplift ahead),
  or, with ``country``, every public holiday of that country (``holidays`` package)
  with the given uplift (often negative).

Overlays multiply the forecast and its interval; the baseline and each event's
contribution are kept apart (a long ``ts, event, contribution`` frame) so a report can
show them.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .frames import QUANTILE_COLUMNS

__all__ = ["Scope", "Event", "Occurrence", "Overlaid", "occurrences", "events_for", "mask_events", "measure_uplift",
           "apply_overlays", "event_factor", "CONTRIBUTION_COLUMNS", "AddedWorkload", "rebase_forecasts", "replay_events",
           "OVERLAY_COLUMNS"]

#: Columns of the per-event contributions frame (long: one row per event and day):
#: ``contribution`` is what the event added to ``yhat`` (series units), ``factor`` what it
#: multiplied every value column by (dividing by it removes the event: a counterfactual).
CONTRIBUTION_COLUMNS = ["ts", "event", "contribution", "factor"]
#: The same, for many series (the ``forecast_overlays`` table).
OVERLAY_COLUMNS = ["series_id", *CONTRIBUTION_COLUMNS]


class Scope(BaseModel):
    """Where an event applies: ``level`` fleet, cluster, tier or pool, and their names."""

    model_config = ConfigDict(extra="forbid")
    level: Literal["fleet", "cluster", "tier", "pool"] = "fleet"
    names: list[str] = Field(default_factory=list)
    resources: list[Literal["cpu", "memory", "pods", "storage"]] = Field(
        default_factory=lambda: ["cpu", "memory", "pods"]
    )

    @model_validator(mode="after")
    def _names_match_level(self) -> "Scope":
        if self.level != "fleet" and not self.names:
            raise ValueError(f"scope level {self.level!r} needs at least one name in 'names'")
        return self

    def covers(self, dims: dict[str, str]) -> bool:
        """True if a series with these dimensions (cluster, pool, tier, resource) is in scope."""
        if dims.get("resource") not in self.resources:
            return False
        return self.level == "fleet" or dims.get(self.level) in self.names


class Event(BaseModel):
    """One entry of the events catalog (see the module docstring for the kinds)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    kind: Literal["uplift", "step", "holiday"] = "uplift"
    start: dt.date | None = None
    end: dt.date | None = None
    uplift_pct: float | None = None
    ramp_up_days: int = Field(0, ge=0)
    ramp_down_days: int = Field(0, ge=0)
    recurring: Literal["annual"] | None = None
    country: str | None = None
    scope: Scope = Field(default_factory=Scope)
    reason: str = ""

    @field_validator("uplift_pct")
    @classmethod
    def _above_minus_100(cls, v: float | None) -> float | None:
        if v is not None and v <= -100:
            raise ValueError(f"uplift_pct must be above -100 (demand cannot fall below zero), got {v}")
        return v

    @model_validator(mode="after")
    def _window(self) -> "Event":
        if self.country is None and self.start is None:
            raise ValueError("needs 'start' (or 'country' for public holidays)")
        if self.kind == "uplift" and self.country is None and self.end is None:
            raise ValueError("an uplift needs 'end' (use kind: step for a change that persists)")
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.kind == "step" and self.uplift_pct is None:
            raise ValueError("a step needs 'uplift_pct'")
        return self


class Occurrence(BaseModel):
    """One dated window of an event (an annual event has one per year)."""

    event: Event
    start: dt.date
    end: dt.date | None  # None: persists (a step)

    def window_with_ramps(self) -> tuple[dt.date, dt.date | None]:
        """First and last day the event moves demand: its window widened by its ramps
        (``None`` last day: it persists)."""
        first = self.start - dt.timedelta(days=self.event.ramp_up_days)
        return first, (self.end + dt.timedelta(days=self.event.ramp_down_days) if self.end is not None else None)


def occurrences(events: list[Event], first: dt.date, last: dt.date) -> list[Occurrence]:
    """Every window of every event that overlaps ``first``..``last``."""
    out: list[Occurrence] = []
    for ev in events:
        if ev.country:
            import holidays

            days = holidays.country_holidays(ev.country, years=range(first.year, last.year + 1))
            out += [Occurrence(event=ev, start=d, end=d) for d in sorted(days) if first <= d <= last]
            continue
        assert ev.start is not None
        years = range(first.year - ev.start.year - 1, last.year - ev.start.year + 2) if ev.recurring else [0]
        for k in years:
            start = _add_years(ev.start, k)
            end = _add_years(ev.end, k) if ev.end else None
            if start <= last and (end is None or end >= first):
                out.append(Occurrence(event=ev, start=start, end=end))
    return out


def _add_years(d: dt.date, k: int) -> dt.date:
    try:
        return d.replace(year=d.year + k)
    except ValueError:  # 29 February
        return d.replace(year=d.year + k, day=28)


def events_for(events: list[Event], dims: dict[str, str]) -> list[Event]:
    """The events whose scope covers a series with these dimensions."""
    return [e for e in events if e.scope.covers(dims)]


def _day_index(index: pd.DatetimeIndex) -> np.ndarray:
    return index.tz_convert("UTC").floor("D").date if index.tz is not None else index.floor("D").date


def mask_events(y: pd.Series, occ: list[Occurrence]) -> pd.Series:
    """Set history inside uplift and holiday windows, ramps included, to NaN (steps are
    left: they persist). A ramp left in the fit is a climb the models would extrapolate."""
    days = pd.Series(_day_index(pd.DatetimeIndex(y.index)), index=y.index)
    out = y.copy()
    for o in occ:
        if o.event.kind == "step" or o.end is None:
            continue
        first, last = o.window_with_ramps()
        out[(days >= first) & (days <= last)] = np.nan
    return out


def measure_uplift(actual: pd.Series, baseline: pd.Series, o: Occurrence) -> float | None:
    """Uplift in % seen in one past window: mean actual over mean counterfactual, minus 1."""
    days = pd.Series(_day_index(pd.DatetimeIndex(actual.index)), index=actual.index)
    inside = (days >= o.start) & (days <= (o.end or o.start))
    base = float(baseline[inside].mean()) if inside.any() else 0.0
    if not inside.any() or base <= 0:
        return None
    return 100.0 * (float(actual[inside].mean()) / base - 1.0)


def event_factor(days: np.ndarray, o: Occurrence, uplift_pct: float) -> np.ndarray:
    """Multiplier per day: 1 outside, 1+u inside, linear ramps at the edges."""
    u = uplift_pct / 100.0
    d = np.array([(x - o.start).days for x in days], dtype=float)
    ramp_up = o.event.ramp_up_days
    w = np.where(d >= 0, 1.0, 0.0)
    if ramp_up:
        w = np.clip((d + ramp_up + 1) / (ramp_up + 1), 0, 1)
    if o.end is not None:
        e = np.array([(x - o.end).days for x in days], dtype=float)
        ramp_down = o.event.ramp_down_days
        w = np.minimum(w, np.clip(1 - e / (ramp_down + 1), 0, 1) if ramp_down else np.where(e <= 0, 1.0, 0.0))
    return 1.0 + u * w


class Overlaid(NamedTuple):
    """A forecast with overlays applied, and what each event added to ``yhat``."""

    frame: pd.DataFrame
    contributions: pd.DataFrame  # ts, event, contribution (series units), factor; non-zero rows only


def apply_overlays(
    forecast: pd.DataFrame, occ: list[Occurrence], measured: dict[str, float] | None = None
) -> Overlaid:
    """Multiply every value column of ``forecast`` by each occurrence's factor.

    Columns in: ``ts`` and value columns (``yhat``, ``yhat_lower``, ``yhat_upper`` and
    any quantile columns). Out: :class:`Overlaid`: the same frame plus ``yhat_baseline``
    (``yhat`` before any overlay), and ``contributions`` (``ts, event, contribution,
    factor``: what that event added to ``yhat`` in the series' units, and the factor it
    multiplied by). ``measured`` gives the uplift to use for an event declared without
    ``uplift_pct``.
    """
    out = forecast.copy()
    values = [c for c in out.columns if c != "ts"]
    out["yhat_baseline"] = out["yhat"]
    days = _day_index(pd.DatetimeIndex(out["ts"]))
    parts = []
    for o in occ:
        uplift = o.event.uplift_pct
        if uplift is None:
            uplift = (measured or {}).get(o.event.name)
        if uplift is None or o.event.kind == "holiday" and not o.event.country:
            continue
        factor = event_factor(days, o, uplift)
        before = out["yhat"].to_numpy()
        for c in values:
            out[c] = out[c].to_numpy() * factor
        added = out["yhat"].to_numpy() - before
        keep = factor != 1.0
        if keep.any():
            parts.append(pd.DataFrame({"ts": out["ts"].to_numpy()[keep], "event": o.event.name, "contribution": added[keep],
                                       "factor": factor[keep]}))
    contributions = pd.DataFrame(columns=CONTRIBUTION_COLUMNS)
    if parts:  # an annual event may occur twice in the horizon: one row per day and event
        contributions = (pd.concat(parts, ignore_index=True).groupby(["ts", "event"], as_index=False, sort=True)
                         .agg(contribution=("contribution", "sum"), factor=("factor", "prod")))
    return Overlaid(out, contributions)


# --- replaying a stored forecast under other events (what-if) ---------------------------

#: Value columns a stored forecast carries (overlays multiply all of them).
FORECAST_VALUES = ["yhat", "yhat_lower", "yhat_upper", *QUANTILE_COLUMNS]


class AddedWorkload(BaseModel):
    """Extra demand from a date, in base units (cores, bytes, pods), for the named kinds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    cluster: str
    pool: str
    resource: str = Field(pattern="^(cpu|memory|pods|storage)$")
    amount: float
    from_date: dt.date = Field(alias="from")
    kinds: list[str] = Field(default_factory=lambda: ["usage", "requests"])


def rebase_forecasts(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Stored forecasts without their overlays: every value column scaled back by
    ``yhat_baseline / yhat`` (overlays multiply all value columns). Columns in and out:
    ``yhat, yhat_baseline`` and the other :data:`FORECAST_VALUES`."""
    f = forecasts.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(f["yhat"] > 0, f["yhat_baseline"] / f["yhat"], 1.0)
    for c in FORECAST_VALUES[1:]:
        f[c] = f[c] * ratio
    f["yhat"] = f["yhat_baseline"]
    return f


def replay_events(forecasts: pd.DataFrame, events: list[Event], as_of: dt.date, tiers: dict[tuple[str, str], str],
                  added: list[AddedWorkload] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stored forecasts under another calendar (and added workload), without refitting.

    In: forecasts (``series_id, cluster, pool, resource, kind, ts, yhat_baseline`` and
    :data:`FORECAST_VALUES`), the events, each pool's tier (``(cluster, pool) -> tier``,
    for event scopes). The overlay-free forecast (:func:`rebase_forecasts`) gets every
    occurrence that has not ended by ``as_of``; added workload is added to every value
    column from its date. Out: ``(forecasts, overlays)``, overlays with :data:`OVERLAY_COLUMNS`.
    """
    frames, overlays = [], []
    for sid, f in rebase_forecasts(forecasts).groupby("series_id", sort=True):
        d = f.iloc[0]
        dims = {"cluster": d.cluster, "pool": d.pool, "tier": tiers.get((d.cluster, d.pool), d.pool), "resource": d.resource}
        f = f.sort_values("ts").reset_index(drop=True)
        occ = [o for o in occurrences(events_for(events, dims), as_of, f["ts"].max().date()) if o.end is None or o.end >= as_of]
        out, contributions = apply_overlays(f[["ts", *FORECAST_VALUES]], occ)
        for w in added or []:
            if (w.cluster, w.pool, w.resource) == (d.cluster, d.pool, d.resource) and d.kind in w.kinds:
                extra = np.where(out["ts"].dt.date >= w.from_date, w.amount, 0.0)
                for c in FORECAST_VALUES:
                    out[c] = out[c] + extra
        if len(contributions):
            overlays.append(contributions.assign(series_id=sid)[OVERLAY_COLUMNS])
        frames.append(f.assign(**{c: out[c] for c in FORECAST_VALUES}))
    return (pd.concat(frames, ignore_index=True),
            pd.concat(overlays, ignore_index=True) if overlays else pd.DataFrame(columns=OVERLAY_COLUMNS))
