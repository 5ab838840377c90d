"""Tables, one-line texts and number formats shared by the CLI, the report, the email and
the Prefect UI: every output formats a number the same way, from the same row."""

from __future__ import annotations

import datetime as dt
import html
import math

import pandas as pd

__all__ = ["headline", "pool_table", "plan_markdown", "fmt_pct", "fmt_money", "fmt_date", "late_sentence",
           "NEEDS_ACTION"]

#: Pool statuses shown without ``--all``.
NEEDS_ACTION = ("red", "amber")


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts, missing values as None (never NaN in a table, template or JSON)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT or (not isinstance(v, str) and pd.isna(v))


def fmt_pct(v) -> str:
    """``62%``; missing: ``-``."""
    return "-" if is_missing(v) else ("∞" if v == float("inf") else f"{v:.0f}%")


def fmt_money(v) -> str:
    """``$4,464``; missing: ``-``."""
    return "-" if is_missing(v) else f"${v:,.0f}"


def fmt_date(v) -> str:
    """``2027-01-26``; missing: ``-``."""
    return "-" if is_missing(v) else str(v)[:10]


def headline(pools: pd.DataFrame, as_of: dt.date) -> str:
    """E.g. 'Capacity plan 2026-12: 1 pool must order now; 3 need expansion, the first by 2027-01-15'.

    In: :func:`forecasting.plandoc.pool_summary`."""
    month = f"{as_of:%Y-%m}"
    blind = int(pools["review_reason"].notna().sum()) if len(pools) else 0
    orders = pools[pools["to_add"].ne("-") & pools["to_add"].ne("review")] if len(pools) else pools
    tail = f"; {blind} pool{'s' if blind != 1 else ''} without a forecast need review" if blind else ""
    if orders.empty:
        return f"Capacity plan {month}: no expansion needed within the horizon{tail}"
    late = int(orders["late"].sum())
    n = len(orders)
    if late:
        return f"Capacity plan {month}: {late} pool{'s' if late != 1 else ''} must order now; {n} need expansion{tail}"
    first = orders["order_by_date"].min()
    return f"Capacity plan {month}: {n} pool{'s' if n != 1 else ''} need orders, the first by {first}{tail}"


def late_sentence(r) -> str:
    """What happens to a late pool before new capacity can arrive (one row of
    :func:`forecasting.plandoc.pool_summary`)."""
    text = (f"{r.cluster}/{r.pool} is late: ordered today, capacity arrives {fmt_date(r.earliest_arrival_date)}; until then "
            f"its forecast peak reaches {fmt_pct(r.arrival_peak_pct)} of {'raw capacity' if r.tier == 'storage' else 'N+k usable'}")
    if r.arrival_over_raw:
        return text + (": above raw capacity, the storage would fill up" if r.tier == "storage"
                       else ": above raw capacity, pods would not schedule")
    if r.arrival_over_usable:
        return text + ": above N+k usable, it would not survive its k failures"
    return text


def pool_table(pools: pd.DataFrame, show_all: bool = False) -> pd.DataFrame:
    """The pools a manager acts on (red and amber; every pool with ``show_all``), most
    urgent first. In and out: :func:`forecasting.plandoc.pool_summary` rows."""
    rows = pools if show_all else pools[pools["status"].isin(NEEDS_ACTION)]
    order = {"red": 0, "amber": 1, "green": 2}
    return rows.assign(_o=rows["status"].map(order), _d=pd.to_datetime(rows["order_by_date"])).sort_values(
        ["_o", "_d", "cluster", "pool"], na_position="last").drop(columns=["_o", "_d"])


def plan_markdown(headline_text: str, actions: pd.DataFrame, run_id: str) -> str:
    """The headline and the plan table as Markdown (the Prefect artifact)."""
    rows = ["| order by | cluster | pool | to add | $/month | next 12 months |", "|---|---|---|---|---|---|"]
    for a in actions.itertuples():
        rows.append(f"| {fmt_date(a.order_by_date)} | {_md(a.cluster)} | {_md(a.pool)} | {_md(a.summary)} | "
                    f"{fmt_money(a.monthly_cost_usd)} | {fmt_money(a.next_12m_cost_usd)} |")
    added = float(actions["monthly_cost_usd"].sum()) if len(actions) else 0.0
    return f"# {_md(headline_text)}\n\nRun `{run_id}`; added run-rate {fmt_money(added)}/month.\n\n" + "\n".join(rows)


def _md(text: object) -> str:
    return html.escape(str(text)).replace("|", "\\|")


def _vcpu(v) -> str:
    return "-" if is_missing(v) else f"{v:,.0f} vCPU"


def quota_line(q: dict) -> str:
    """One quota (a row of the run summary's ``elastic.quotas``)."""
    where = f"{q['cloud']} {q['account']} {q['region']}; {q['clusters'].replace(',', ', ')}"
    text = f"quota {q['code']} ({where}): {_vcpu(q['used_today'])} of {_vcpu(q['value'])} used today"
    if q.get("crossing_date"):
        text += (f"; crosses {q['crossing_date']} at {fmt_pct(q['risk_pct'])} risk (P50 {q['crossing_p50_date'] or 'later'}); "
                 f"file the increase to {_vcpu(q['new_value'])} by {q['file_by_date']}"
                 f"{' (late)' if q.get('late') else ''} ({q['lead_time_days']} days: {q['lead_time_note']})")
        if q.get("binds_before"):
            text += f"; {q['binds_before']}"
    else:
        text += f"; peak {_vcpu(q['peak_risk'])} at the risk bound within the horizon: no increase needed"
    return text


def commitment_lines(c: dict) -> list[str]:
    """The commitment ladder (the run summary's ``elastic.commitments``)."""
    ladder = c.get("ladder") or []
    lines = []
    for r in ladder:
        if r["kind"] == "existing":
            amount = f"${r['hourly_usd']:,.2f}/h" if r.get("hourly_usd") else f"${r['covers_usd_per_hour']:,.2f}/h on-demand"
            lines.append(f"commitment {r['name']} ({r['type']}, {amount}) in force until {r['expiry_date']}")
    buys = [r for r in ladder if r["kind"] == "recommended"]
    for r in buys:
        lines.append(f"buy a {r['term_years']}-year {r['type']} of ${r['hourly_usd']:,.2f}/h on {r['start_date']} "
                     f"(covers ${r['covers_usd_per_hour']:,.2f}/h of on-demand spend)")
    if c.get("saving_per_month_usd") is not None:
        if buys:
            lines.append(f"commitments: expected saving {fmt_money(c['saving_per_month_usd'])}/month; "
                         f"{fmt_pct(c['unused_chance_pct'])} of their hours leave part unused")
        else:
            lines.append("commitments: no new commitment lowers the expected cost")
    return lines


def bill_line(b: dict) -> str:
    """An autoscaled pool's forecast bill (the run summary's ``elastic.bills``)."""
    return (f"{b['cluster']}/{b['pool']} (autoscaled) forecast bill {fmt_money(b['first_p50_usd'])}/month in "
            f"{b['first_month']} -> {fmt_money(b['last_p50_usd'])}/month in {b['last_month']} (P50; "
            f"{fmt_money(b['last_risk_usd'])} at the risk bound)")


def elastic_lines(elastic: dict | None) -> list[str]:
    """Quotas, unreachable limits, autoscaled pools' bills and commitments, one sentence
    each: the same text in the CLI, the email and the report."""
    if not elastic:
        return []
    lines = [quota_line(q) for q in elastic.get("quotas", [])]
    lines += [f"{r['cluster']}/{r['pool']}: {r['unreachable']}" for r in elastic.get("limits", []) if r.get("unreachable")]
    lines += [bill_line(b) for b in elastic.get("bills", [])]
    return lines + commitment_lines(elastic.get("commitments") or {})
