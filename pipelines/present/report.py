"""The management report: a pure function from frames to one self-contained HTML page.

Nothing is loaded from the network: plotly.js is inlined once and every chart is a JSON
spec in a ``<script type="application/json">`` block, drawn by one small loader. Jinja2
autoescaping covers every label; chart JSON has ``<``, ``>`` and ``&`` escaped, so no
label from Prometheus or a config file can become HTML or JavaScript.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import jinja2
import pandas as pd

from forecasting.events import Event, occurrences

from forecasting.plandoc import DEFINITIONS, plan_totals, pool_summary

from .charts import (
    UNIT_SCALE, capacity_figure, figure_json, monthly_peaks, overview_figure, runway_figure, track_record_figure,
)
from .tables import NEEDS_ACTION, is_missing, fmt_date, fmt_money, fmt_pct, headline, late_sentence, pool_table, records

__all__ = ["ReportInputs", "render_report", "plotly_js"]


@dataclass
class ReportInputs:
    """Everything the report shows; frames are the run's output tables."""

    run_id: str
    as_of: dt.date
    horizon_days: int
    title: str
    decisions: pd.DataFrame
    actions: pd.DataFrame
    capacity: pd.DataFrame
    forecasts: pd.DataFrame
    history: pd.DataFrame  # daily peaks: cluster, pool, resource, kind, ts, value
    scores: pd.DataFrame
    quality: pd.DataFrame
    fleet_costs: pd.DataFrame
    diff: pd.DataFrame
    events: list[Event]
    config_yaml: str
    prices_as_of: dt.date
    catalog_rows: list[dict] = field(default_factory=list)
    policies: list[dict] = field(default_factory=list)
    previous_run_id: str | None = None
    max_charts: int = 400
    notes: list[str] = field(default_factory=list)
    #: series_id, cluster, pool, resource, kind, severity (error | note), message
    forecast_notes: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: what the ingest warned about (shown in red at the top of the data-quality section)
    ingest_warnings: list[str] = field(default_factory=list)
    #: the ``headroom`` table (daily utilisation per pool series): the overview chart
    headroom: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: forecasting.reasons.event_effects: what each event does to each trigger
    effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: forecasting.reasons.spike_effects: unexplained history peaks and the trigger without them
    spikes: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: how past plans did: the track_record rows and forecasting.trackrecord.summarise's dict
    track_record: pd.DataFrame = field(default_factory=pd.DataFrame)
    track_summary: dict = field(default_factory=dict)
    #: forecasting.plandoc.pool_summary rows (None: computed from decisions and actions)
    pools: pd.DataFrame | None = None
    #: forecasting.elastic.ElasticOutputs: limits, quotas, autoscaled bills, commitments (None: none)
    elastic: object | None = None
    #: its sentences (pipelines.present.tables.elastic_lines of the run summary)
    elastic_lines: list[str] = field(default_factory=list)


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipelines.present", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["money"] = fmt_money  # the same formats as the CLI and the email
    env.filters["pct"] = fmt_pct
    env.filters["d"] = fmt_date
    return env


def _cluster_sentences(pools: pd.DataFrame) -> list[dict]:
    """One sentence per cluster from the pool summary (the same rows as every other output)."""
    out = []
    for cluster, g in pools.groupby("cluster", sort=True):
        blind = sorted(g[g["review_reason"].notna() & (g["to_add"] == "review")]["pool"])
        late = sorted(g[g["late"]]["pool"])
        soon = sorted(set(g[g["status"].isin(["red", "amber"]) & ~g["late"]]["pool"]) - set(blind))
        parts = []
        if late:
            parts.append(f"{', '.join(late)} must be ordered now")
        if soon:
            first = g[g["pool"].isin(soon)].sort_values("order_by_date").iloc[0]
            parts.append(f"{', '.join(soon)} need capacity within the horizon; first order by {fmt_date(first.order_by_date)} ({first.pool})")
        if blind:
            parts.append(f"no forecast for {', '.join(blind)}: review")
        text = "; ".join(parts) or "has headroom for the whole horizon"
        cost = float(g["monthly_cost_usd"].sum())
        if cost:
            text += f"; adds {fmt_money(cost)}/month"
        status = "red" if late or blind else ("amber" if soon else "green")
        out.append({"cluster": cluster, "status": status, "text": text})
    return out


def _resource_rules(policies: list[dict]) -> list[dict]:
    """What each resource is planned against, in words (the Assumptions table)."""
    default = policies[0] if policies else {}
    k, unit = default.get("redundancy_k", 2), default.get("failure_unit", "node")
    spot = default.get("spot_failure", "independent")
    compute = (f"threshold {default.get('threshold_pct', 70):g}% of N+{k} usable capacity (lose the {k} largest "
               f"{unit}s{'; spot nodes of one type fail together' if spot == 'together' else '; spot nodes fail one by one'})")
    return [{"resource": r, "rule": compute} for r in ("cpu", "memory", "pods")] + [
        {"resource": "storage", "rule": f"threshold {default.get('storage_threshold_pct', 75):g}% of raw capacity (no N+k: "
                                        "replication is inside the storage system)"}]


def _charts(inp: ReportInputs) -> tuple[list[dict], list[dict]]:
    """Chart specs grouped by cluster; the first storage charts go into their own list."""
    dec = inp.decisions.set_index(["cluster", "pool", "resource"])
    usable = inp.capacity.set_index(["cluster", "pool", "resource"])["usable"].to_dict() if len(inp.capacity) else {}
    end = inp.as_of + dt.timedelta(days=inp.horizon_days)
    clusters: dict[str, dict] = {}
    storage = []
    count = 0
    fc_groups = dict(tuple(inp.forecasts.groupby(["cluster", "pool", "resource"]))) if len(inp.forecasts) else {}
    hist_groups = dict(tuple(inp.history.groupby(["cluster", "pool", "resource"]))) if len(inp.history) else {}
    for key in sorted(fc_groups):
        if count >= inp.max_charts:
            inp.notes.append(f"only the first {inp.max_charts} charts are drawn (report.max_charts)")
            break
        cluster, pool, resource = key
        d = dec.loc[key] if key in dec.index else None
        tier = d["tier"] if d is not None else ""
        evs = [(o.event.name, o.start, o.end) for o in occurrences(
            [e for e in inp.events if e.scope.covers({"cluster": cluster, "pool": pool, "tier": tier, "resource": resource})],
            inp.as_of - dt.timedelta(days=200), end)]
        threshold = float(d["threshold_pct"]) if d is not None else 70.0
        full = None
        f = fc_groups[key]
        if resource == "storage" and usable.get(key):
            hit = f[f["yhat_upper"] >= usable[key]]
            full = hit["ts"].min().date() if len(hit) else None
        fig = capacity_figure(
            f"{cluster} / {pool} / {resource}", resource, hist_groups.get(key, pd.DataFrame(columns=["kind", "ts", "value"])),
            f, usable.get(key), threshold,
            trigger=d["trigger_date"] if d is not None else None,
            order_by=d["order_by_date"] if d is not None else None, events=evs, full_date=full,
        )
        spec = {"id": f"c{count}", "json": figure_json(fig), "pool": pool, "resource": resource,
                "status": d["status"] if d is not None else "green", "full": full}
        count += 1
        if resource == "storage":
            storage.append({**spec, "cluster": cluster})
            continue
        clusters.setdefault(cluster, {}).setdefault(pool, []).append(spec)
    grouped = [{"cluster": c, "anchor": f"cl{i}", "pools": [{"pool": p, "anchor": f"cl{i}p{j}", "charts": ch}
                                                         for j, (p, ch) in enumerate(sorted(pools.items()))]}
               for i, (c, pools) in enumerate(sorted(clusters.items()))]
    return grouped, storage


def _past_runs(track: pd.DataFrame) -> pd.DataFrame:
    """One row per earlier run: days and series scored, band coverage, median MASE, triggers."""
    if track.empty:
        return pd.DataFrame(columns=["past_run_id", "past_as_of", "series", "coverage_80", "coverage_95", "median_mase",
                                     "hit", "missed", "pending", "late"])
    rows = []
    for (rid, as_of), g in track.groupby(["past_run_id", "past_as_of"], sort=True):
        days = g["days"].clip(lower=0).to_numpy(dtype=float)
        w = days.sum() or 1.0
        status = g["status"].dropna()
        rows.append({"past_run_id": rid, "past_as_of": as_of, "series": int((g["days"] > 0).sum()),
                     "days": int(g["days"].max()) if len(g) else 0,
                     "coverage_80": float((g["coverage_80"].fillna(0) * days).sum() / w),
                     "coverage_95": float((g["coverage_95"].fillna(0) * days).sum() / w),
                     "median_mase": float(g["mase"].median()), "hit": int((status == "hit").sum()),
                     "missed": int((status == "missed").sum()),
                     "pending": int(status.isin(["pending", "false_alarm_so_far"]).sum()),
                     "late": int(g["late"].fillna(False).astype(bool).sum())})
    return pd.DataFrame(rows)


def overview_chart(headroom: pd.DataFrame, pools: pd.DataFrame, as_of: dt.date, width: int | None = None):
    """The executive summary's picture: pools x months by forecast peak utilisation, with
    order-by dates (None when there is nothing to draw)."""
    monthly = monthly_peaks(headroom, as_of)
    if monthly.empty:
        return None
    order_by = {f"{r.cluster} / {r.pool}": r.order_by_date for r in pools.itertuples()
                if r.to_add not in ("-", "review") and not is_missing(r.order_by_date)}
    return overview_figure(monthly, order_by, width)


def _runway_charts(inp: ReportInputs) -> list[dict]:
    """One runway chart per autoscaled pool's binding limit and per quota."""
    e = inp.elastic
    if e is None:
        return []
    from forecasting.autoscaling import GIB
    from forecasting.headroom import quantile_at

    out = []
    for r in e.limits.itertuples():
        need = e.needed[(e.needed["cluster"] == r.cluster) & (e.needed["pool"] == r.pool)]
        hist = e.limit_history
        hist = hist[(hist["cluster"] == r.cluster) & (hist["pool"] == r.pool) & (hist["resource"] == r.binding_limit)] \
            if len(hist) else hist
        scale, unit = (GIB, "GiB") if r.binding_limit == "memory" else (1.0, "cores" if r.binding_limit == "cpu" else "nodes")
        if need.empty or hist.empty:
            continue
        frame = need.assign(**{c: need[c] / scale for c in ("q100", "q500", "q900")},
                            risk=quantile_at(need, 0.9) / scale)
        fig = runway_figure(f"{r.cluster} / {r.pool}: {r.binding_limit} limit", unit, frame, float(hist["value"].iloc[-1]) / scale,
                            r.crossing_date, r.file_by_date, "risk",
                            history=hist.assign(value=hist["value"] / scale))
        out.append({"id": f"rw{len(out)}", "json": figure_json(fig), "status": r.status})
    for q in e.quotas.itertuples():
        use = e.quota_usage[e.quota_usage["code"] == q.code]
        if use.empty:
            continue
        fig = runway_figure(f"quota {q.code} ({q.region})", "vCPU", use.assign(risk=quantile_at(use, 0.9)), float(q.value),
                            q.crossing_date, q.file_by_date, "risk")
        out.append({"id": f"rw{len(out)}", "json": figure_json(fig), "status": q.status})
    return out


def render_report(inp: ReportInputs, include_plotlyjs: bool = True) -> str:
    """Frames in, HTML string out. No I/O."""
    dec, actions = inp.decisions, inp.actions
    pools = inp.pools if inp.pools is not None else pool_summary(dec, actions)
    totals = plan_totals(pools, actions, inp.fleet_costs)
    clusters, storage = _charts(inp)
    chosen = inp.scores[inp.scores["chosen"]] if len(inp.scores) else inp.scores
    accuracy = []
    if len(chosen):
        for r in chosen.sort_values("series_id").itertuples():
            accuracy.append({"series": r.series_id.replace("cluster=", "").replace("/pool=", " / ").replace("/resource=", " / ").replace("/kind=", " / "),
                             "model": r.model, "mase": r.mase, "rel_mase": r.rel_mase,
                             "coverage_80": r.coverage_80, "coverage_95": r.coverage_95, "bias_pct": r.bias_pct})
    acc_summary = {}
    if len(chosen):
        rel = chosen["rel_mase"].clip(lower=1e-6)
        import numpy as np

        acc_summary = {"series": len(chosen), "geo_rel_mase": float(np.exp(np.log(rel).mean())),
                       "coverage_80": float(chosen["coverage_80"].mean()), "coverage_95": float(chosen["coverage_95"].mean()),
                       "models": chosen["model"].value_counts().to_dict()}
    q = inp.quality
    quality_notes = []
    if len(q):
        bad = q[(q["coverage_pct"] < 95) | q["stale"] | q["new_series"] | (q["gaps"] > 0)]
        quality_notes = bad.sort_values("coverage_pct").head(50).to_dict("records")
        quality_stats = {"series": len(q), "with_gaps": int((q["gaps"] > 0).sum()), "stale": int(q["stale"].sum()),
                         "new": int(q["new_series"].sum()), "mean_coverage": float(q["coverage_pct"].mean())}
    else:
        quality_stats = {}
    overview = overview_chart(inp.headroom, pools, inp.as_of) if len(inp.headroom) else None
    late = pools[pools["late"]].sort_values("order_by_date")
    past = _past_runs(inp.track_record)
    green = pools[pools["status"] == "green"]
    ctx = {
        "inp": inp, "headline": headline(pools, inp.as_of), "cluster_sentences": _cluster_sentences(pools),
        "totals": totals, "late": [late_sentence(r) for r in late.itertuples()],
        "pools": records(pool_table(pools)), "green_pools": len(green),
        "green_max_risk": float(green["horizon_risk_pct"].max()) if len(green) and green["horizon_risk_pct"].notna().any() else None,
        "review": records(pools[pools["review_reason"].notna()]),
        "forecast_errors": records(inp.forecast_notes[inp.forecast_notes["severity"] == "error"]) if len(inp.forecast_notes) else [],
        "forecast_notes": records(inp.forecast_notes[inp.forecast_notes["severity"] == "note"].head(100)) if len(inp.forecast_notes) else [],
        "too_small": inp.capacity[inp.capacity["too_small"]].to_dict("records") if len(inp.capacity) else [],
        "actions": records(actions.sort_values(["order_by_date", "cluster", "pool"])) if len(actions) else [],
        "diff": inp.diff.to_dict("records") if len(inp.diff) else [],
        "clusters": clusters, "storage": storage, "accuracy": accuracy, "acc": acc_summary,
        "quality_notes": quality_notes, "quality": quality_stats, "overview": figure_json(overview) if overview else None,
        "definitions": DEFINITIONS, "resource_rules": _resource_rules(inp.policies),
        "spikes": records(inp.spikes) if len(inp.spikes) else [],
        "past_runs": records(past), "track": inp.track_summary,
        "track_chart": figure_json(track_record_figure(past)) if len(past) else None,
        "events": inp.events, "plotly_js": plotly_js() if include_plotlyjs else "",
        "unit_scale": UNIT_SCALE, "generated": inp.as_of, "needs_action": NEEDS_ACTION,
        "elastic_lines": inp.elastic_lines, "runways": _runway_charts(inp),
        "limits": records(inp.elastic.limits) if inp.elastic is not None and len(inp.elastic.limits) else [],
        "quotas": records(inp.elastic.quotas) if inp.elastic is not None and len(inp.elastic.quotas) else [],
        "ladder": records(inp.elastic.ladder) if inp.elastic is not None and len(inp.elastic.ladder) else [],
    }
    return _env().get_template("report.html.j2").render(**ctx)
