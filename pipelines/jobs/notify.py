"""Emailing a stored run's report (after the monthly job, or again with ``capplan report --send``).

Everything comes from the run's tables, so a re-send says exactly what the run said.
"""

from __future__ import annotations

from email.utils import getaddresses
from pathlib import Path

import pandas as pd

from forecasting.plandoc import plan_totals, pool_summary

from ..config import Config
from ..domain import HistoryWindow
from ..io.smtp import EmailError, envelope_address, send_message
from ..io.store import Store
from ..present.charts import capacity_figure
from ..present.report import overview_chart
from ..present.email import MAX_IMAGE_PX, Image, build_message, chart_png
from ..present.tables import elastic_lines, fmt_money, headline, late_sentence, pool_table
from .stages import daily_history

__all__ = ["send_run_report", "email_images"]


def email_images(store: Store, run_id: str, as_of, window: HistoryWindow, pools: pd.DataFrame, decisions: pd.DataFrame) -> list[Image]:
    """The overview (pools x months) and the most urgent pool's chart with its recent history,
    both at most :data:`MAX_IMAGE_PX` wide."""
    images = []
    overview = overview_chart(store.table("headroom", run_id), pools, as_of, MAX_IMAGE_PX)
    png = chart_png(overview) if overview is not None else None
    if png:
        images.append(Image("Forecast peak utilisation by month", png))
    urgent = pools[pools["to_add"].ne("-") & pools["to_add"].ne("review")]
    if len(urgent):
        first = urgent.iloc[0]
        resource = first.binds_on.split()[0]
        key = (first.cluster, first.pool, resource)
        pick = lambda f: f[(f.cluster == key[0]) & (f.pool == key[1]) & (f.resource == key[2])]  # noqa: E731
        fc, cap, d = pick(store.table("forecasts", run_id)), pick(store.table("capacity", run_id)), pick(decisions)
        history = daily_history(pick(store.pool_samples(*window, read_only=True)))
        title = f"{key[0]} / {key[1]} / {resource}"
        fig = capacity_figure(title, resource, history, fc, float(cap["usable"].iloc[0]) if len(cap) else None,
                              float(d["threshold_pct"].iloc[0]) if len(d) else 70.0,
                              trigger=d["trigger_date"].iloc[0] if len(d) else None,
                              order_by=first.order_by_date, history_days=90)
        png = chart_png(fig, MAX_IMAGE_PX, 360)
        if png:
            images.append(Image(title, png))
    return images


def send_run_report(cfg: Config, run_id: str) -> dict:
    """Email a stored run's report (no recomputation) to the recipients who do not have it
    yet (see :func:`owed_recipients`) and record, per address, who got it in DuckDB.

    Returns ``status`` ("sent", or "already-sent" when nobody is owed it), ``subject``,
    ``recipients`` (the addresses sent to now), ``inline_chart`` and ``images``. Raises
    :class:`EmailError` (one line: who got it, who did not and why, the re-send command)."""
    store = Store(cfg.path(cfg.store.path))
    info = store.run(run_id)
    summary = store.run_summary(run_id)
    as_of = pd.Timestamp(info["as_of"]).date()
    decisions = store.table("decisions", run_id)
    actions = store.table("plans", run_id)
    for c in ("order_by_date", "needed_by_date", "trigger_date", "earliest_arrival_date"):
        for frame in (actions, decisions):
            if c in frame:
                frame[c] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in frame[c]]
    pools = pool_summary(decisions, actions)
    totals = plan_totals(pools, actions, store.table("fleet_costs", run_id))
    subject = headline(pools, as_of)
    lines = [late_sentence(r) + "." for r in pools[pools["late"]].itertuples()]
    lines.append(f"Run {run_id}, as of {as_of}. Added run-rate {fmt_money(totals['added_monthly_cost_usd'])}/month; "
                 f"{fmt_money(totals['next_12m_cost_usd'])} in the next 12 months; today's fleet (nodes and storage) "
                 f"{fmt_money(totals['fleet_monthly_cost_usd'])}/month.")
    lines += [line + "." for line in elastic_lines(summary.get("elastic"))]
    track = summary.get("track_record") or {}
    if track.get("runs"):
        lines.append(f"How past plans did: {track['text']}.")
    shown = pool_table(pools)
    window = HistoryWindow(pd.Timestamp(info["window_start"]), pd.Timestamp(info["window_end"]))
    images = email_images(store, run_id, as_of, window, shown, decisions)
    report_path = Path(summary["files"]["report"]) if summary.get("files", {}).get("report") else None
    msg = build_message(cfg.email, subject, lines, shown, actions, report_path, images)
    recipients = [envelope_address(r) for r in (*cfg.email.to, *cfg.email.cc)]
    pending = owed_recipients(store, run_id, recipients)
    result = {"subject": subject, "inline_chart": bool(images), "images": len(images)}
    if not pending:  # the last attempt left no one out, or those left out are no longer configured
        store.record_notification(run_id, [], subject, "skipped", "nobody left to send to")
        return {**result, "status": "already-sent", "recipients": recipients}
    try:
        sent = send_message(cfg.email, msg, pending)
    except EmailError as exc:
        _record_failure(store, run_id, subject, pending, exc)
        left = len(pending) - len(exc.accepted)
        where = f"; run {run_id}'s report is on disk" + (f" ({report_path})" if report_path else "")
        raise EmailError(f"{exc}{where}; `capplan report --send {run_id}` sends it to the {left} recipient(s) who did not "
                         "get it", exc.accepted, exc.refused) from None
    for address in sent:
        store.record_notification(run_id, [address], subject, "sent", None)
    return {**result, "status": "sent", "recipients": sent}


def owed_recipients(store: Store, run_id: str, recipients: list[str]) -> list[str]:
    """Who a send of ``run_id``'s report goes to, from the ``recipients`` (envelope addresses):
    those with no ``sent`` row for the run and those the last attempt did not reach (its
    trailing ``refused`` / ``failed`` rows), so a re-run after a partial failure sends it to
    nobody twice. When that leaves no one and the last attempt was complete, it is a
    deliberate re-send: all of them; when the last attempt was incomplete but everyone still
    configured has it, nobody ([]). ``skipped`` rows (a send that found nobody owed) are not
    attempts: asking twice never turns "nobody" into "everyone"."""
    # Reads what Store.record_notification writes; it belongs beside it in Store (store.py
    # was outside this change's files).
    with store.connect(read_only=True) as con:
        rows = con.execute("SELECT recipients, status FROM notifications WHERE run_id = ? AND status <> 'skipped' "
                           "ORDER BY sent_at", [run_id]).fetchall()

    def addresses(value: str | None) -> set[str]:
        return {addr for _, addr in getaddresses([value or ""]) if addr}

    delivered = set().union(*(addresses(v) for v, status in rows if status == "sent"))
    missed: set[str] = set()
    for value, status in reversed(rows):
        if status == "sent":
            break
        missed |= addresses(value)
    owed = [r for r in recipients if r not in delivered or r in missed]
    if owed or not rows:
        return owed
    return recipients if rows[-1][1] == "sent" else []


def _record_failure(store: Store, run_id: str, subject: str, pending: list[str], exc: EmailError) -> None:
    """One ``sent`` row per address that got it, one ``refused`` row per address the server
    turned away (with its reason), one ``failed`` row for the rest (with the error)."""
    for address in exc.accepted:
        store.record_notification(run_id, [address], subject, "sent", None)
    for address, why in exc.refused.items():
        store.record_notification(run_id, [address], subject, "refused", why)
    rest = [a for a in pending if a not in exc.accepted and a not in exc.refused]
    if rest or not exc.refused:
        store.record_notification(run_id, rest, subject, "failed", str(exc))
