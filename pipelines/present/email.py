"""The email to management: built here, sent by :mod:`pipelines.io.smtp`.

The message is multipart: a plain-text part and an HTML body that needs no JavaScript and
no remote images (mail clients block both) with the summary, the plan table and one chart
as an inline PNG (Content-ID), plus the full interactive report attached.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pandas as pd

from ..config import Email

__all__ = ["build_message", "chart_png"]

log = logging.getLogger("capplan.email")
LATE = ' <b style="color:#b00020">late</b>'


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


