"""Email the report to management over SMTP.

The message is multipart: a plain-text part and an HTML body that needs no JavaScript and
no remote images (mail clients block both) with the summary, the plan table and one chart
as an inline PNG (Content-ID), plus the full interactive report attached. Credentials come
from the environment variables the config names; they are never logged, stored or put in
an error message. A failed send is retried, then reported; the report on disk is kept.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pandas as pd

from .config import Config, Email
from .report import headline
from .store import Store

__all__ = ["EmailError", "build_message", "send_message", "send_run_report", "chart_png"]

log = logging.getLogger("capplan.notify")
LATE = ' <b style="color:#b00020">late</b>'


class EmailError(RuntimeError):
    """The report could not be emailed (after retries). The report on disk is kept."""


def _credentials(cfg: Email) -> tuple[str | None, str | None]:
    user = os.environ.get(cfg.username_env) if cfg.username_env else None
    password = os.environ.get(cfg.password_env) if cfg.password_env else None
    return user, password


def chart_png(fig) -> bytes | None:
    """A static PNG of a plotly figure (kaleido + Chromium); None if it cannot be made."""
    try:
        return fig.to_image(format="png", width=900, height=380, scale=1)
    except Exception as exc:  # no browser for kaleido: the email still goes, without the chart
        log.warning("could not render the email chart (%s); sending without it", type(exc).__name__)
        return None


def build_message(
    cfg: Email, subject: str, summary_lines: list[str], actions: pd.DataFrame, report_path: Path | None,
    png: bytes | None, chart_title: str = "",
) -> EmailMessage:
    """Plain text + HTML (with the inline chart) + the report attached."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    if cfg.cc:
        msg["Cc"] = ", ".join(cfg.cc)
    msg["Date"] = dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = make_msgid(domain="capplan")
    rows = actions.sort_values(["order_by_date", "cluster", "pool"]).to_dict("records") if len(actions) else []
    text = [subject, "", *summary_lines, "", "Expansion plan:"]
    for a in rows:
        qty = f"+{a['storage_gib'] / 1024:g} TiB {a['storage_type']}" if a["action"] == "expand-storage" else f"{a['quantity']} x {a['instance_type']}"
        text.append(f"- order by {a['order_by_date']}{' (LATE)' if a['late'] else ''}: {a['cluster']}/{a['pool']} {a['action']} {qty}, ${a['monthly_cost_usd']:,.0f}/month")
    if not rows:
        text.append("- no expansion needed within the horizon")
    text += ["", "The full interactive report is attached (open it in a browser)."]
    msg.set_content("\n".join(text))
    e = html.escape
    cid = make_msgid(domain="capplan")
    table = "".join(
        f"<tr><td>{e(str(a['order_by_date']))}{LATE if a['late'] else ''}</td>"
        f"<td>{e(str(a['needed_by_date']))}</td><td>{e(a['cluster'])}</td><td>{e(a['pool'])}</td><td>{e(a['action'])}</td>"
        f"<td align=right>{e(str(a['quantity']))}</td><td>{e(str(a['instance_type'] or a['storage_type'] or '-'))}</td>"
        f"<td align=right>{a['spot_ratio_pct']:g}%</td><td align=right>${a['monthly_cost_usd']:,.0f}</td></tr>"
        for a in rows
    )
    body = (
        "<html><body style=\"font-family:Arial,Helvetica,sans-serif;color:#222\">"
        f"<h2 style=\"margin:0 0 8px\">{e(subject)}</h2>"
        + "".join(f"<p style=\"margin:4px 0\">{e(line)}</p>" for line in summary_lines)
        + "<h3>Expansion plan</h3>"
        + ("<table cellpadding=4 cellspacing=0 border=1 style=\"border-collapse:collapse;font-size:13px\">"
           "<tr><th>order by</th><th>needed by</th><th>cluster</th><th>pool</th><th>action</th><th>quantity</th>"
           f"<th>type</th><th>spot</th><th>monthly cost</th></tr>{table}</table>" if rows else "<p>No expansion needed within the horizon.</p>")
        + (f"<h3>{e(chart_title)}</h3><img src=\"cid:{cid[1:-1]}\" alt=\"{e(chart_title)}\" width=900>" if png else "")
        + "<p style=\"font-size:12px;color:#555\">The full interactive report is attached.</p></body></html>"
    )
    msg.add_alternative(body, subtype="html")
    if png:
        msg.get_payload()[1].add_related(png, "image", "png", cid=cid, filename="chart.png")
    if report_path and report_path.exists():
        msg.add_attachment(report_path.read_bytes(), maintype="text", subtype="html", filename=report_path.name)
    return msg


def send_message(cfg: Email, msg: EmailMessage) -> None:
    """Send with retries; raise :class:`EmailError` naming the server, never the password."""
    user, password = _credentials(cfg)
    if cfg.password_env and cfg.username_env and user and not password:
        raise EmailError(f"environment variable {cfg.password_env} is not set (SMTP password)")
    if not cfg.to:
        raise EmailError("email.to is empty: no recipients")
    last = ""
    for attempt in range(cfg.retries + 1):
        try:
            context = ssl.create_default_context()
            if cfg.security == "ssl":
                server: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=context)
            else:
                server = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with server:
                if cfg.security == "starttls":
                    server.starttls(context=context)
                if user and password:
                    server.login(user, password)
                server.send_message(msg)
            return
        except (smtplib.SMTPException, OSError) as exc:
            last = _describe(exc, password)
            log.warning("email attempt %d/%d to %s:%d failed: %s", attempt + 1, cfg.retries + 1, cfg.host, cfg.port, last)
            if attempt < cfg.retries:
                time.sleep(cfg.retry_delay_s * (2**attempt))
    raise EmailError(f"could not send the report via {cfg.host}:{cfg.port} after {cfg.retries + 1} attempt(s): {last}; "
                     "the report is on disk; re-send with `capplan report --send RUN_ID`")


def _describe(exc: BaseException, secret: str | None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.replace(secret, "***") if secret else text


def send_run_report(cfg: Config, run_id: str) -> dict:
    """Email a stored run's report (no recomputation) and record the attempt in DuckDB."""
    from .charts import capacity_figure

    store = Store(cfg.path(cfg.store.path))
    info = store.run(run_id)
    summary = json.loads(info.get("summary_json") or "{}")
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
        red = sorted(set(g[g.status == "red"].pool))
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
        with store.connect() as con:
            con.execute("INSERT INTO notifications VALUES (?, ?, ?, ?, ?, ?)",
                        [run_id, dt.datetime.now(dt.timezone.utc), ", ".join(recipients), subject, status, error])
    return {"status": status, "subject": subject, "recipients": recipients, "inline_chart": png is not None}
