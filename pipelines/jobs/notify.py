"""Emailing a stored run's report (after the monthly job, or again with ``capplan report --send``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import Config
from ..io.smtp import EmailError, send_message
from ..io.store import Store
from ..present.charts import capacity_figure
from ..present.email import build_message, chart_png
from ..present.tables import headline

__all__ = ["send_run_report"]


def send_run_report(cfg: Config, run_id: str) -> dict:
    """Email a stored run's report (no recomputation) and record the attempt in DuckDB."""
    store = Store(cfg.path(cfg.store.path))
    info = store.run(run_id)
    summary = store.run_summary(run_id)
    as_of = pd.Timestamp(info["as_of"]).date()
    decisions = store.table("decisions", run_id)
    actions = store.table("plans", run_id)
    for c in ("order_by_date", "needed_by_date"):
        if c in actions:
            actions[c] = pd.to_datetime(actions[c]).dt.date
    subject = headline(decisions, actions, as_of)
    lines = [f"Run {run_id}, as of {as_of}. Added monthly cost ${summary.get('added_monthly_cost_usd', 0):,.0f} "
             f"(yearly ${12 * summary.get('added_monthly_cost_usd', 0):,.0f}); today's fleet ${summary.get('fleet_monthly_cost_usd', 0):,.0f}/month."]
    for cluster, g in decisions.groupby("cluster"):
        red = sorted(set(g[g.status == "red"].pool))  # includes pools without a forecast (review)
        amber = sorted(set(g[g.status == "amber"].pool) - set(red))
        lines.append(f"{cluster}: " + ("; ".join(x for x in (f"order now: {', '.join(red)}" if red else "",
                                                          f"within the horizon: {', '.join(amber)}" if amber else "") if x) or "headroom for the whole horizon"))
    png, title = None, ""
    if len(actions):
        first = actions.sort_values("order_by_date").iloc[0]
        key = (first["cluster"], first["pool"], first["binding_resource"])
        fc = store.table("forecasts", run_id)
        fc = fc[(fc.cluster == key[0]) & (fc.pool == key[1]) & (fc.resource == key[2])]
        cap = store.table("capacity", run_id)
        cap = cap[(cap.cluster == key[0]) & (cap.pool == key[1]) & (cap.resource == key[2])]
        d = decisions[(decisions.cluster == key[0]) & (decisions.pool == key[1]) & (decisions.resource == key[2])]
        title = f"{key[0]} / {key[1]} / {key[2]}"
        fig = capacity_figure(title, key[2], pd.DataFrame(columns=["kind", "ts", "value"]), fc,
                              float(cap["usable"].iloc[0]) if len(cap) else None,
                              float(d["threshold_pct"].iloc[0]) if len(d) else 70.0,
                              trigger=pd.Timestamp(d["trigger_date"].iloc[0]).date() if len(d) and pd.notna(d["trigger_date"].iloc[0]) else None,
                              order_by=pd.Timestamp(d["order_by_date"].iloc[0]).date() if len(d) and pd.notna(d["order_by_date"].iloc[0]) else None)
        png = chart_png(fig)
    report_path = Path(summary.get("files", {}).get("report", "")) if summary.get("files") else None
    msg = build_message(cfg.email, subject, lines, actions, report_path, png, title)
    recipients = [*cfg.email.to, *cfg.email.cc]
    status, error = "sent", None
    try:
        send_message(cfg.email, msg)
    except EmailError as exc:
        status, error = "failed", str(exc)
        raise
    finally:
        store.record_notification(run_id, recipients, subject, status, error)
    return {"status": status, "subject": subject, "recipients": recipients, "inline_chart": png is not None}
