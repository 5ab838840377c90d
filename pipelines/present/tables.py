"""Tables and one-line texts shared by the CLI, the report, the email and the Prefect UI."""

from __future__ import annotations

import datetime as dt
import html

import pandas as pd

__all__ = ["headline", "summary_table", "plan_markdown"]


def headline(decisions: pd.DataFrame, actions: pd.DataFrame, as_of: dt.date) -> str:
    """E.g. 'Capacity plan 2026-12: 3 pools need orders, the first by 2027-01-15'."""
    month = f"{as_of:%Y-%m}"
    review = actions[actions["action"] == "review"] if len(actions) else actions
    orders = actions[actions["action"] != "review"] if len(actions) else actions
    blind = review[["cluster", "pool"]].drop_duplicates().shape[0] if len(review) else 0
    tail = f"; {blind} pool{'s' if blind != 1 else ''} without a forecast need review" if blind else ""
    if orders is None or orders.empty:
        return f"Capacity plan {month}: no expansion needed within the horizon{tail}"
    late = orders[orders["late"]]
    pools = orders[["cluster", "pool"]].drop_duplicates().shape[0]
    if len(late):
        n = late[["cluster", "pool"]].drop_duplicates().shape[0]
        return f"Capacity plan {month}: {n} pool{'s' if n != 1 else ''} must order now; {pools} need expansion{tail}"
    first = orders["order_by_date"].min()
    return f"Capacity plan {month}: {pools} pool{'s' if pools != 1 else ''} need orders, the first by {first}{tail}"


def summary_table(decisions: pd.DataFrame, actions: pd.DataFrame) -> pd.DataFrame:
    """One row per pool and resource: utilisation now, trigger, order-by, nodes to add, cost.

    Out: ``cluster, pool, resource, utilisation_now_pct, trigger_date, order_by_date,
    nodes_to_add, storage_to_add_gib, monthly_cost_usd, status``.
    """
    cols = ["cluster", "pool", "nodes_to_add", "storage_to_add_gib", "monthly_cost_usd"]
    if len(actions):
        a = actions.assign(nodes=actions["quantity"].where(actions["action"] == "add-nodes", 0),
                           gib=actions["storage_gib"].fillna(0.0))
        add = a.groupby(["cluster", "pool"]).agg(nodes_to_add=("nodes", "sum"), storage_to_add_gib=("gib", "sum"),
                                                 monthly_cost_usd=("monthly_cost_usd", "sum")).reset_index()
    else:
        add = pd.DataFrame(columns=cols)
    t = decisions.merge(add, on=["cluster", "pool"], how="left")
    t["nodes_to_add"] = t["nodes_to_add"].fillna(0).astype(int)
    t["storage_to_add_gib"] = t["storage_to_add_gib"].fillna(0.0).astype(float)
    t["monthly_cost_usd"] = t["monthly_cost_usd"].fillna(0.0)
    return t[["cluster", "pool", "resource", "utilisation_now_pct", "trigger_date", "order_by_date", "nodes_to_add",
              "storage_to_add_gib", "monthly_cost_usd", "status"]]


def plan_markdown(headline_text: str, actions: pd.DataFrame, run_id: str) -> str:
    """The headline and the plan table as Markdown (the Prefect artifact)."""
    rows = ["| order by | cluster | pool | action | qty | type | $/month |", "|---|---|---|---|---|---|---|"]
    for a in actions.itertuples():
        rows.append(f"| {a.order_by_date} | {_md(a.cluster)} | {_md(a.pool)} | {a.action} | {a.quantity} | "
                    f"{_md(a.instance_type or a.storage_type or '-')} | {a.monthly_cost_usd:,.0f} |")
    added = float(actions["monthly_cost_usd"].sum()) if len(actions) else 0.0
    return f"# {_md(headline_text)}\n\nRun `{run_id}`; added monthly cost ${added:,.0f}.\n\n" + "\n".join(rows)


def _md(text: object) -> str:
    return html.escape(str(text)).replace("|", "\\|")
