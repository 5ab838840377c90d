"""The plan's math, in order: one function over one input.

:func:`make_plan` takes a :class:`PlanInputs` (the inventory, storage pools, forecasts and
their overlays, the history's daily peaks, policies, catalog, calendar and what the run
compares with) and returns :class:`PlanOutputs` (every plan table, the finished
CapacityPlan document, the diff and the summary figures). The monthly job, the what-if and
the notebook all call it; nothing edits its results afterwards.

The steps, each a pure function of its own module:

1. N+k usable capacity (:mod:`forecasting.headroom`), lead times (:mod:`forecasting.sizing`);
2. utilisation, measured peaks, triggers and their risk; pools without a forecast marked
   for review (:mod:`forecasting.headroom`);
3. what moves each trigger: events, short needs, unexplained peaks (:mod:`forecasting.reasons`);
4. sized, costed actions, rentals decided again with their lead time (:mod:`forecasting.actions`);
5. one row per pool, today's capacity and cost, the document, the diff and the totals
   (:mod:`forecasting.plandoc`, :mod:`forecasting.costs`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .actions import apply_rentals, build_plan
from .autoscaling import LIMIT_COLUMNS, AutoscaledInputs
from .commitments import CommitmentCatalog
from .costs import fleet_cost
from .elastic import ElasticOutputs, elastic_plan
from .events import Event, occurrences
from .frames import check_frame
from .headroom import PolicyLookup, decisions, mark_for_review, measured_peaks, storage_capacity, usable_capacity, utilisation
from .plandoc import (
    DEFINITIONS, commitment_section, current_capacity, diff_plans, limit_section, plan_document, plan_totals, pool_rows,
    pool_summary, quota_section,
)
from .policy import Catalog
from .quotas import Quota
from .reasons import event_effects, spike_effects, spike_notes, temporary_needs
from .sizing import lead_lookup

__all__ = ["PlanInputs", "PlanBaseline", "PlanOutputs", "make_plan", "business_forecast", "SPIKE_DATE_COLUMNS"]

#: Date columns of the unexplained peaks written as text into the document.
SPIKE_DATE_COLUMNS = ("start_date", "end_date", "trigger_date", "trigger_without")


@dataclass
class PlanBaseline:
    """The plan a run is compared with (the previous monthly run, or a what-if's baseline).

    ``decisions`` and ``actions`` are that run's tables; ``events`` the event names it knew;
    ``nodes`` its node count per ``(cluster, pool)``."""

    run_id: str
    decisions: pd.DataFrame
    actions: pd.DataFrame
    events: list[str]
    nodes: dict[tuple[str, str], int]


@dataclass(frozen=True)
class PlanInputs:
    """Everything the plan needs, resolved by the caller.

    * ``inventory``: one row per node (the ``inventory`` contract of :mod:`forecasting.frames`);
    * ``storage_pools``: ``cluster, pool, capacity`` (bytes);
    * ``forecasts``: daily-peak forecasts (the ``forecasts`` contract), ``overlays``:
      ``series_id, ts, event, contribution, factor``, ``failures``: the series that could
      not be forecast (``cluster, pool, resource, kind, message``);
    * ``daily``: daily peaks of the history (``cluster, pool, resource, kind, ts, value``);
    * ``policy_of``: ``(cluster, pool, tier) -> PoolPolicy``; ``thresholds``: the default
      policy's ``{"cpu": %, "storage": %}`` for the document's alerts;
    * ``events``: the business calendar; ``events_file``: where it is (named in reasons);
    * ``spikes`` / ``spike_refit``: unexplained history peaks and their series forecast
      again without them (None: not searched, and the document has no ``unexplainedPeaks``);
    * ``previous``: the plan to diff against; ``track_record``: how past plans did (None:
      the document has no ``trackRecord``);
    * ``limits``: autoscaled pools' limits over time (:data:`forecasting.autoscaling.LIMIT_COLUMNS`),
      ``hourly``: the hourly pool history (hour-of-week profiles of autoscaled pools),
      ``quotas`` and ``commitments``: the catalogs (docs/AUTOSCALING.md), planned at the
      default policy's ``max_late_risk_pct``.
    """

    as_of: dt.date
    horizon_days: int
    run_id: str
    inventory: pd.DataFrame
    storage_pools: pd.DataFrame
    forecasts: pd.DataFrame
    overlays: pd.DataFrame
    failures: pd.DataFrame
    daily: pd.DataFrame
    policy_of: PolicyLookup
    catalog: Catalog
    events: list[Event]
    thresholds: dict[str, float]
    events_file: str = "catalogs/events.yaml"
    spikes: pd.DataFrame | None = None
    spike_refit: pd.DataFrame = field(default_factory=pd.DataFrame)
    previous: PlanBaseline | None = None
    track_record: dict[str, Any] | None = None
    limits: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LIMIT_COLUMNS))
    hourly: pd.DataFrame | None = None
    quotas: list[Quota] = field(default_factory=list)
    commitments: CommitmentCatalog | None = None
    max_late_risk_pct: float = 10.0  # fleet-wide figures (quotas): the default policy's

    @property
    def horizon_end(self) -> dt.date:
        return self.as_of + dt.timedelta(days=self.horizon_days)


@dataclass
class PlanOutputs:
    """Headroom and plan frames (the run's tables), the finished CapacityPlan document, the
    diff against the previous plan and the summary figures."""

    capacity: pd.DataFrame
    headroom: pd.DataFrame
    decisions: pd.DataFrame
    actions: pd.DataFrame
    fleet_costs: pd.DataFrame
    document: dict
    diff: pd.DataFrame
    summary: dict
    effects: pd.DataFrame  # forecasting.reasons.EFFECT_COLUMNS: what each event does to each trigger
    spikes: pd.DataFrame  # forecasting.reasons.SPIKE_EFFECT_COLUMNS: unexplained history peaks and their effect
    pools: pd.DataFrame  # forecasting.plandoc.pool_summary: one row per pool, the figures every output shows
    elastic: ElasticOutputs = field(default_factory=ElasticOutputs.empty)  # limits, quotas, pool bills, commitments


def business_forecast(events: list[Event], start: dt.date, end: dt.date) -> list[dict]:
    """The calendar's occurrences in ``[start, end]`` as the document's ``businessForecast``
    entries: ``name, window, expectedGrowth, kind, reason``."""
    rows = []
    for o in occurrences(events, start, end):
        e = o.event
        growth = f"{e.uplift_pct:+g}%" if e.uplift_pct is not None else "measured from last occurrence"
        rows.append({"name": e.name, "window": f"{o.start} .. {o.end or 'onwards'}", "expectedGrowth": growth,
                     "kind": e.kind, "reason": e.reason})
    return rows


def make_plan(inp: PlanInputs) -> PlanOutputs:
    """Headroom, triggers with their risk, sized and costed actions, the finished plan
    document, the diff against ``inp.previous`` and the summary. Every pool with capacity
    is in the decisions, forecast or not (:func:`forecasting.headroom.mark_for_review`)."""
    check_frame(inp.inventory, "inventory", "plan input")
    if len(inp.forecasts):
        check_frame(inp.forecasts, "forecasts", "plan input")
    as_of, horizon, policy_of = inp.as_of, inp.horizon_days, inp.policy_of
    auto = AutoscaledInputs.build(inp.inventory, inp.limits, policy_of, inp.catalog, as_of)
    actual = usable_capacity(inp.inventory, policy_of)  # today's nodes (currentCapacity)
    fixed = actual[[k not in auto.shapes for k in zip(actual["cluster"], actual["pool"])]] if len(actual) else actual
    usable = pd.concat([fixed, auto.ceilings], ignore_index=True) if len(auto.ceilings) else actual
    if not inp.storage_pools.empty:
        usable = pd.concat([usable, storage_capacity(inp.storage_pools)], ignore_index=True)
    lead_of = lead_lookup(inp.inventory, policy_of, inp.catalog, set(auto.shapes))
    util = utilisation(inp.forecasts, usable, policy_of)
    measured = measured_peaks(inp.daily, as_of)
    dec = decisions(util, policy_of, as_of, horizon, lead_of, measured)
    dec = _unlimited_for_review(mark_for_review(dec, usable, inp.forecasts, inp.failures), auto)
    effects = event_effects(inp.forecasts, inp.overlays, usable, dec, policy_of, as_of, horizon, lead_of)
    temporary = temporary_needs(inp.forecasts, inp.overlays, usable, dec, policy_of, as_of, horizon)
    spikes = spike_effects(inp.forecasts, inp.spike_refit, inp.spikes if inp.spikes is not None else pd.DataFrame(),
                           usable, dec, policy_of, as_of, horizon, lead_of)
    actions = build_plan(dec, util, inp.inventory, inp.storage_pools, policy_of, inp.catalog, as_of, effects, temporary,
                         spike_notes(spikes, inp.events_file), auto)
    dec, actions = apply_rentals(dec, actions, util, policy_of, as_of, horizon, measured)
    elastic = elastic_plan(auto, dec, actions, inp.forecasts, usable, inp.daily, inp.hourly, inp.inventory, policy_of,
                           inp.catalog, inp.quotas, inp.commitments, as_of, horizon,
                           inp.max_late_risk_pct, inp.events)
    if len(elastic.actions):
        actions = pd.concat([actions, elastic.actions], ignore_index=True)
    check_frame(dec, "decisions", "plan output")
    check_frame(actions, "actions", "plan output")
    pools = pool_summary(dec, actions)
    costs = fleet_cost(inp.inventory, policy_of, inp.catalog, inp.storage_pools)
    current = current_capacity(pd.concat([actual, usable[usable["resource"] == "storage"]], ignore_index=True),
                               inp.inventory, inp.daily, costs, as_of)
    document = plan_document(
        f"capacity-plan-{as_of:%Y-%m}", inp.run_id, as_of, actions, current,
        business_forecast(inp.events, as_of, inp.horizon_end), inp.thresholds, inp.catalog,
        pools=pool_rows(pools), definitions=DEFINITIONS,
    )
    _finish_document(document, inp, spikes, elastic)
    nodes = {(c, p): int(n) for (c, p), n in inp.inventory.groupby(["cluster", "pool"]).size().items()}
    events = sorted(e.name for e in inp.events)
    diff = pd.DataFrame()
    if inp.previous:
        prev = inp.previous
        diff = diff_plans(prev.decisions, dec, prev.actions, actions,
                          {"events": prev.events, "nodes": prev.nodes}, {"events": events, "nodes": nodes})
        if len(diff):
            diff = diff.assign(previous_run_id=prev.run_id)
    summary = {
        "as_of": str(as_of), **plan_totals(pools, actions, costs),
        "context": {"events": events, "nodes": [{"cluster": c, "pool": p, "nodes": n} for (c, p), n in nodes.items()]},
        "elastic": elastic.records(),
    }
    return PlanOutputs(usable, util, dec, actions, costs, document, diff, summary, effects, spikes, pools, elastic)


def _unlimited_for_review(dec: pd.DataFrame, auto: AutoscaledInputs) -> pd.DataFrame:
    """An autoscaled pool whose limits nobody knows grows until a cloud quota stops it: its
    rows say so (to review) and show no utilisation of a ceiling that does not exist."""
    blind = [k for k in auto.shapes if k not in auto.limits]
    if not blind or dec.empty:
        return dec
    dec = dec.copy()
    at = pd.Series([k in blind for k in zip(dec["cluster"], dec["pool"])], index=dec.index)
    text = ("autoscaled, no limit known: it grows until a cloud quota stops it; declare its limits (policies: limits) "
            "or export karpenter_nodepools_limit")
    dec.loc[at, "review_reason"] = [f"{r}; {text}" if isinstance(r, str) else text for r in dec.loc[at, "review_reason"]]
    for c in ("measured_peak_pct", "measured_usage_pct", "measured_requests_pct", "forecast_peak_pct"):
        dec.loc[at, c] = float("nan")
    return dec


def _finish_document(document: dict, inp: PlanInputs, spikes: pd.DataFrame, elastic: ElasticOutputs) -> None:
    """The sections that come from outside the fixed pools' math: limits, quotas and
    commitments (when there are any), how past plans did and the unexplained peaks (each
    only when the run looked for them)."""
    spec = document["spec"]
    if len(elastic.limits) or len(elastic.pool_costs):
        spec["limits"] = limit_section(elastic.limits, elastic.pool_costs)
    if len(elastic.quotas):
        spec["quotas"] = quota_section(elastic.quotas)
    if len(elastic.ladder):
        spec["commitments"] = commitment_section(elastic.ladder, elastic.commitment)
    if inp.track_record is not None:
        spec["trackRecord"] = {k: (None if isinstance(v, float) and v != v else v) for k, v in inp.track_record.items()}
    if inp.spikes is not None:
        text = spikes.astype({c: str for c in SPIKE_DATE_COLUMNS})
        spec["unexplainedPeaks"] = text.astype(object).where(text.notna(), None).to_dict("records")
