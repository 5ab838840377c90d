"""The email to management: built here, sent by :mod:`pipelines.io.smtp`.

The message is multipart: a plain-text part and an HTML body that needs no JavaScript and
no remote images (mail clients block both) with the summary, the pools to act on, the plan
table and inline PNG charts (Content-ID, at most :data:`MAX_IMAGE_PX` wide so they fit a
reading pane), plus the full interactive report attached. Every figure is formatted by
:mod:`pipelines.present.tables`, like the report and the CLI.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pandas as pd

from ..config import Email
from ..io.retry import Transient, with_retries
from .tables import fmt_date, fmt_money, fmt_pct

__all__ = ["build_message", "chart_png", "Image", "MAX_IMAGE_PX"]

log = logging.getLogger("capplan.email")
#: The widest an inline image may be: mail clients' reading panes are about this wide.
MAX_IMAGE_PX = 640
#: How often a chart render is tried, and the first pause (seconds, doubling) between tries.
RENDER_ATTEMPTS, RENDER_PAUSE_S = 3, 1.0
LATE = ' <b style="color:#b00020">late</b>'


@dataclass
class Image:
    """An inline PNG and its caption."""

    title: str
    png: bytes
    width: int = MAX_IMAGE_PX


def chart_png(fig, width: int = MAX_IMAGE_PX, height: int | None = None) -> bytes | None:
    """A static PNG of a plotly figure (kaleido + Chromium); None if it cannot be made.

    Tried :data:`RENDER_ATTEMPTS` times (:func:`pipelines.io.retry.with_retries`, pauses from
    :data:`RENDER_PAUSE_S`, doubling): on a cold or loaded machine kaleido's page can still be
    loading plotly.js when the figure is sent, which fails at once with a ``JavascriptError``
    (seen in CI, twice in a row without a pause)."""
    def render() -> bytes:
        try:
            return fig.to_image(format="png", width=min(width, MAX_IMAGE_PX), height=height or fig.layout.height or 340,
                                scale=1)
        except Exception as exc:  # no browser, or a page not ready: worth another try
            raise Transient(f"{type(exc).__name__}: {str(exc)[:200]}") from exc

    try:
        return with_retries(render, RENDER_ATTEMPTS - 1, "email chart", base_delay_s=RENDER_PAUSE_S)
    except Transient as exc:  # the email still goes, without the chart
        log.warning("could not render the email chart (%s); sending without it", exc)
        return None


def _pool_line(r) -> str:
    status = r.status + (", late" if r.late else "") + (", temporary" if r.temporary else "")
    return (f"- {r.cluster}/{r.pool} ({status}): order by {fmt_date(r.order_by_date)}; {r.to_add}; "
            f"{fmt_money(r.monthly_cost_usd)}/month, {fmt_money(r.next_12m_cost_usd)} in the next 12 months; binds on "
            f"{r.binds_on or '-'}: measured peak {fmt_pct(r.measured_peak_pct)}, forecast peak {fmt_pct(r.forecast_peak_pct)} "
            f"of {'raw capacity' if r.tier == 'storage' else 'N+k usable'}; risk of late {fmt_pct(r.risk_pct)}")


def build_message(
    cfg: Email, subject: str, summary_lines: list[str], pools: pd.DataFrame, actions: pd.DataFrame,
    report_path: Path | None, images: list[Image] | None = None,
) -> EmailMessage:
    """Plain text + HTML (with the inline charts) + the report attached.

    ``pools``: the pools to act on (:func:`forecasting.plandoc.pool_summary` rows);
    ``actions``: the plan (``plans`` table rows)."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    if cfg.cc:
        msg["Cc"] = ", ".join(cfg.cc)
    msg["Date"] = dt.datetime.now(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = make_msgid(domain="capplan")
    rows = actions.sort_values(["order_by_date", "cluster", "pool"]).to_dict("records") if len(actions) else []
    text = [subject, "", *summary_lines, "", "Pools to act on:"]
    text += [_pool_line(r) for r in pools.itertuples()] or ["- none: every pool has headroom for the horizon"]
    text += ["", "Expansion plan:"]
    for a in rows:
        text.append(f"- order by {fmt_date(a['order_by_date'])}{' (LATE)' if a['late'] else ''}: {a['cluster']}/{a['pool']} "
                    f"{a['summary']}, {fmt_money(a['monthly_cost_usd'])}/month, {fmt_money(a['next_12m_cost_usd'])} in the next 12 months")
    if not rows:
        text.append("- no expansion needed within the horizon")
    text += ["", "The full interactive report is attached (open it in a browser)."]
    msg.set_content("\n".join(text))
    e = html.escape
    images = [i for i in (images or []) if i.png]
    cids = [make_msgid(domain="capplan") for _ in images]
    pool_rows = "".join(
        f"<tr><td>{e(r.cluster)}</td><td>{e(r.pool)}</td><td>{e(r.status)}{LATE if r.late else ''}</td>"
        f"<td>{e(r.binds_on or '-')}</td><td align=right>{fmt_pct(r.measured_peak_pct)}</td><td align=right>{fmt_pct(r.forecast_peak_pct)}</td>"
        f"<td>{fmt_date(r.order_by_date)}</td><td align=right>{fmt_pct(r.risk_pct)}</td><td>{e(r.to_add)}</td>"
        f"<td align=right>{fmt_money(r.monthly_cost_usd)}</td></tr>"
        for r in pools.itertuples())
    plan_rows = "".join(
        f"<tr><td>{fmt_date(a['order_by_date'])}{LATE if a['late'] else ''}</td><td>{fmt_date(a['needed_by_date'])}</td>"
        f"<td>{e(a['cluster'])}</td><td>{e(a['pool'])}</td><td>{e(a['summary'])}</td>"
        f"<td align=right>{fmt_money(a['monthly_cost_usd'])}</td><td align=right>{fmt_money(a['next_12m_cost_usd'])}</td></tr>"
        for a in rows)
    table = 'cellpadding=4 cellspacing=0 border=1 style="border-collapse:collapse;font-size:13px;max-width:640px"'
    body = (
        "<html><body style=\"font-family:Arial,Helvetica,sans-serif;color:#222;max-width:680px\">"
        f"<h2 style=\"margin:0 0 8px\">{e(subject)}</h2>"
        + "".join(f"<p style=\"margin:4px 0\">{e(line)}</p>" for line in summary_lines)
        + "".join(f"<h3>{e(img.title)}</h3><img src=\"cid:{cid[1:-1]}\" alt=\"{e(img.title)}\" width=\"{min(img.width, MAX_IMAGE_PX)}\" "
                  f"style=\"max-width:100%;height:auto\">" for img, cid in zip(images[:1], cids[:1]))
        + "<h3>Pools to act on</h3>"
        + (f"<table {table}><tr><th>cluster</th><th>pool</th><th>status</th><th>binds on</th><th>measured peak</th>"
           f"<th>forecast peak</th><th>order by</th><th>risk of late</th><th>to add</th><th>monthly cost</th></tr>{pool_rows}</table>"
           if pool_rows else "<p>None: every pool has headroom for the horizon.</p>")
        + "<h3>Expansion plan</h3>"
        + (f"<table {table}><tr><th>order by</th><th>needed by</th><th>cluster</th><th>pool</th><th>to add</th>"
           f"<th>monthly cost</th><th>next 12 months</th></tr>{plan_rows}</table>" if rows else "<p>No expansion needed within the horizon.</p>")
        + "".join(f"<h3>{e(img.title)}</h3><img src=\"cid:{cid[1:-1]}\" alt=\"{e(img.title)}\" width=\"{min(img.width, MAX_IMAGE_PX)}\" "
                  f"style=\"max-width:100%;height:auto\">" for img, cid in zip(images[1:], cids[1:]))
        + "<p style=\"font-size:12px;color:#555\">Utilisation is of N+k usable capacity (storage: of raw capacity). "
          "The full interactive report is attached.</p></body></html>"
    )
    msg.add_alternative(body, subtype="html")
    for img, cid in zip(images, cids):
        msg.get_payload()[1].add_related(img.png, "image", "png", cid=cid, filename=f"{cid[1:9]}.png")
    if report_path and report_path.exists():
        msg.add_attachment(report_path.read_bytes(), maintype="text", subtype="html", filename=report_path.name)
    return msg
