"""The report renders from frames, escapes untrusted labels and stays self-contained."""

import datetime as dt
import re

import pandas as pd

from forecasting.events import Event
from pipelines.present.report import ReportInputs, render_report
from forecasting.plandoc import pool_summary
from pipelines.present.tables import headline

EVIL = '<script>alert(1)</script>"\'&'


def _inputs(cluster=EVIL, pool=EVIL, event_name=EVIL):
    ts = pd.date_range("2026-12-01", periods=10, freq="D", tz="UTC")
    hist_ts = pd.date_range("2026-11-01", periods=30, freq="D", tz="UTC")
    fc = pd.DataFrame({"series_id": "s", "cluster": cluster, "pool": pool, "resource": "cpu", "kind": "usage", "ts": ts,
                       "yhat": 5.0, "yhat_lower": 4.0, "yhat_upper": 6.0, "yhat_baseline": 5.0, "model": "snaive"})
    hist = pd.DataFrame({"cluster": cluster, "pool": pool, "resource": "cpu", "kind": "usage", "ts": hist_ts, "value": 4.0})
    dec = pd.DataFrame([{"cluster": cluster, "pool": pool, "tier": "compute", "resource": "cpu", "binding_kind": "usage",
                         "capacity": 20.0, "usable": 12.0, "threshold_pct": 70.0, "demand_bound": "risk",
                         "measured_peak_pct": 50.0, "measured_usage_pct": 50.0, "measured_requests_pct": None,
                         "forecast_peak_pct": 75.0, "peak_date": dt.date(2026, 12, 5), "trigger_date": dt.date(2026, 12, 5),
                         "lead_time_days": 30, "lead_time_source": "policy", "order_by_date": dt.date(2026, 11, 5), "late": True,
                         "risk_pct": 30.0, "horizon_risk_pct": 60.0, "earliest_arrival_date": dt.date(2026, 12, 27),
                         "arrival_peak_pct": 75.0, "arrival_over_usable": False, "arrival_over_raw": False,
                         "days_of_headroom": 4, "required_usable": 15.0, "status": "red", "review_reason": None}])
    cap = pd.DataFrame([{"cluster": cluster, "pool": pool, "tier": "compute", "resource": "cpu", "nodes": 5, "units": 5,
                         "failure_unit": "node", "redundancy_k": 2, "capacity": 20.0, "lost": 8.0, "usable": 12.0, "too_small": False}])
    actions = pd.DataFrame([{"order_by_date": dt.date(2026, 11, 5), "needed_by_date": dt.date(2026, 12, 5), "late": True,
                             "cluster": cluster, "pool": pool, "tier": "compute", "action": "add-nodes", "quantity": 2,
                             "instance_type": "c6i.2xlarge", "storage_gib": 0.0, "storage_type": None, "summary": "2 x c6i.2xlarge",
                             "spot_ratio_pct": 70.0, "reserved_ratio_pct": 0.0, "reserved_term_years": 1, "reserved_nodes": 0,
                             "monthly_cost_usd": 270.5, "next_12m_cost_usd": 3000.0, "temporary": False, "rent_start": None,
                             "rent_end": None, "window_cost_usd": 0.0, "buy_12m_cost_usd": None, "binding_resource": "cpu",
                             "binds_on": "cpu usage", "measured_peak_pct": 50.0, "forecast_peak_pct": 75.0, "risk_pct": 30.0,
                             "lead_time_days": 30, "events": "", "reason": f"because {EVIL}"}])
    ev = Event(name=event_name, start="2026-12-03", end="2026-12-04", uplift_pct=50, reason=EVIL)
    return ReportInputs(run_id="r1", as_of=dt.date(2026, 11, 27), horizon_days=10, title=EVIL, decisions=dec, actions=actions,
                        capacity=cap, forecasts=fc, history=hist, scores=pd.DataFrame(), quality=pd.DataFrame(),
                        fleet_costs=pd.DataFrame({"monthly_cost_usd": [1000.0]}), diff=pd.DataFrame(), events=[ev],
                        config_yaml=f"x: '{EVIL}'", prices_as_of=dt.date(2026, 11, 1))


def test_untrusted_labels_never_become_markup():
    html = render_report(_inputs(), include_plotlyjs=False)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text
    # chart JSON blocks cannot be closed early by a label
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, flags=re.S):
        assert "<" not in block


def test_report_is_self_contained():
    html = render_report(_inputs("prod", "compute", "sale"))
    assert "http://" not in html.split("<script type=\"text/javascript\">")[0]
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?:', html)
    assert html.count("Plotly.newPlot") == 1  # one loader; plotly.js inlined once
    assert "default-src 'none'" in html


def test_headline_wording():
    inp = _inputs("prod", "compute", "sale")
    assert headline(pool_summary(inp.decisions, inp.actions), inp.as_of) == "Capacity plan 2026-11: 1 pool must order now; 1 need expansion"
    assert "no expansion needed" in headline(pool_summary(inp.decisions, inp.actions.iloc[0:0]), inp.as_of)


def test_capacity_figure_takes_dates_as_read_back_from_the_store():
    """A notebook passes a decisions row read from DuckDB as is: dates arrive as pandas
    Timestamps (or NaT when a pool never triggers), not ``datetime.date``."""
    from pipelines.present.charts import capacity_figure

    hist_ts = pd.date_range("2026-10-01", periods=30, freq="D", tz="UTC")
    ts = pd.date_range("2026-11-01", periods=60, freq="D", tz="UTC")
    history = pd.DataFrame({"kind": "usage", "ts": hist_ts, "value": 4.0})
    forecast = pd.DataFrame({"kind": "usage", "ts": ts, "yhat": 5.0, "yhat_lower": 4.0, "yhat_upper": 6.0,
                             "yhat_baseline": 5.0})
    fig = capacity_figure("p", "cpu", history, forecast, 10.0, 70.0, trigger=pd.Timestamp("2026-12-01"),
                          order_by=pd.NaT, events=[("sale", pd.Timestamp("2026-11-11"), None)])
    markers = [a.text for a in fig.layout.annotations if a.name == "date-marker"]
    assert markers == ["trigger 2026-12-01"]
    assert [a.text for a in fig.layout.annotations if a.name == "event-label"] == ["sale"]
