"""One set of numbers: the CLI table, plan.csv, the CapacityPlan YAML, the HTML report and the
email of one run say the same thing about every pool, row by row."""

import email
import email.policy
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pandas as pd
import pytest
import yaml

from pipelines.present.tables import fmt_date, fmt_money, fmt_pct

from .test_demo_end_to_end import demo_cli  # noqa: F401  (the cold-start CLI demo, shared)
from .test_email import Handler

pytestmark = pytest.mark.integration


class Rows(HTMLParser):
    """Cell texts of the rows (with a ``data-pool`` attribute) of one table, by its id."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.depth, self.rows, self.cell, self.in_table = table_id, 0, [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == self.table_id:
            self.in_table = True
        elif self.in_table and tag == "tr" and "data-pool" in attrs:
            self.rows.append([])
        elif self.in_table and tag == "td" and self.rows:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_table = False
        elif tag == "td" and self.cell is not None:
            self.rows[-1].append(" ".join(self.cell.split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def table_rows(html: str, table_id: str) -> list[list[str]]:
    p = Rows(table_id)
    p.feed(html)
    return p.rows


def cli_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """The CLI's pool table: cluster, pool, status, binds on, measured, forecast, trigger,
    order by, risk, to add, monthly cost, next 12 months."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 12 and cells[0] not in ("cluster", ""):
            out[(cells[0], cells[1])] = cells
    return out


def email_of(folder, config) -> email.message.EmailMessage:
    from aiosmtpd.controller import Controller

    from pipelines.testing.promserver import free_port

    handler, port = Handler(), free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        text = config.read_text().replace("enabled: false", "enabled: true").replace("port: 25", f"port: {port}")
        text = text.replace("security: starttls        # none | starttls | ssl", "security: none")
        mail_cfg = config.with_name("capplan-mail.yaml")
        mail_cfg.write_text(text)
        run_id = re.search(r"run id: (\S+)", (folder / "cli.out").read_text()).group(1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAPPLAN_SMTP")}  # this server takes no login
        r = subprocess.run([sys.executable, "-m", "pipelines.cli", "report", "--config", str(mail_cfg), "--send", run_id],
                           capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr
    finally:
        ctl.stop()
    return email.message_from_bytes(handler.messages[0], policy=email.policy.default)


def test_cli_csv_yaml_report_and_email_agree_row_by_row(demo_cli):  # noqa: F811
    folder, r = demo_cli
    (folder / "cli.out").write_text(r.stdout)
    month = folder / "reports" / "2026-11"
    csv = pd.read_csv(month / "plan.csv")
    doc = yaml.safe_load((month / "capacity-plan.yaml").read_text())
    report = table_rows((month / "capacity-report.html").read_text(), "pool-table")
    msg = email_of(folder, folder / "capplan.yaml")
    mail = table_rows(msg.get_body(("html",)).get_content().replace("<table ", '<table id="mail" ', 1).replace(
        "<tr><td>", '<tr data-pool="x"><td>'), "mail")
    cli = cli_rows(r.stdout)
    pools = {(p["cluster"], p["pool"]): p for p in doc["spec"]["pools"] if p["status"] in ("red", "amber")}
    assert pools and set(cli) == set(pools)  # the CLI lists every pool that needs action, and only those
    by_pool = {k: g for k, g in csv.groupby(["cluster", "pool"])}
    report_rows = {(c[0], c[1]): c for c in report}
    mail_rows = {(c[0], c[1]): c for c in mail}
    assert set(report_rows) == set(pools) and set(mail_rows) == set(pools)
    for key, p in pools.items():
        a = by_pool[key]
        cost = fmt_money(a["monthly_cost_usd"].sum())
        year = fmt_money(a["next_12m_cost_usd"].sum())
        order_by = fmt_date(min(a["order_by_date"]))
        to_add = "; ".join(x.removeprefix("'") for x in a["summary"])  # plan.csv defuses "+37 TiB" (formula injection)
        measured, forecast = fmt_pct(a["measured_peak_pct"].iloc[0]), fmt_pct(a["forecast_peak_pct"].iloc[0])
        c = cli[key]
        assert (c[4], c[5], c[7], c[9], c[10], c[11]) == (measured, forecast, order_by, to_add, cost, year), key
        assert (p["measuredPeakUtilization"], p["forecastPeakUtilization"], p["orderBy"], p["toAdd"], p["estimatedCost"],
                p["next12Months"]) == (measured, forecast, order_by, to_add, f"{cost}/month", year), key
        h = report_rows[key]
        assert (h[4], h[5], h[7].replace(" (late)", ""), h[9], h[10], h[11]) == (measured, forecast, order_by, to_add, cost, year), key
        m = mail_rows[key]
        assert (m[4], m[5], m[6], m[8], m[9]) == (measured, forecast, order_by, to_add, cost), key
        assert c[3] == p["bindsOn"] == h[3] == m[3], key  # what binds, in its own column
        assert c[8] == p["riskOfLate"] == h[8] == m[7], key  # the risk of being late
    total = fmt_money(csv["monthly_cost_usd"].sum())
    assert fmt_money(sum(float(c[10].strip("$").replace(",", "")) for c in cli.values())) == total  # the column sums to the total
    assert doc["spec"]["totals"]["addedMonthlyRunRate"] == total
    assert f"added run-rate {total}/month" in r.stdout
    assert f"Added run-rate {total}/month" in msg.get_body(("plain",)).get_content()


class Items(HTMLParser):
    """Texts of the ``<li>`` items of one list, by its id."""

    def __init__(self, list_id: str):
        super().__init__()
        self.list_id, self.inside, self.items, self.item = list_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "ul" and dict(attrs).get("id") == self.list_id:
            self.inside = True
        elif self.inside and tag == "li":
            self.item = ""

    def handle_endtag(self, tag):
        if tag == "ul":
            self.inside = False
        elif tag == "li" and self.item is not None:
            self.items.append(" ".join(self.item.split()))
            self.item = None

    def handle_data(self, data):
        if self.item is not None:
            self.item += data


def test_limits_quotas_and_commitments_agree_in_every_output(demo_cli):  # noqa: F811
    folder, r = demo_cli
    (folder / "cli.out").write_text(r.stdout)
    month = folder / "reports" / "2026-11"
    csv = pd.read_csv(month / "plan.csv")
    spec = yaml.safe_load((month / "capacity-plan.yaml").read_text())["spec"]
    parser = Items("elastic-lines")
    parser.feed((month / "capacity-report.html").read_text())
    report_lines = parser.items
    plain = " ".join(email_of(folder, folder / "capplan.yaml").get_body(("plain",)).get_content().split())
    cli = " ".join(r.stdout.split())
    quotas = csv[csv["action"] == "request-quota"]
    assert len(quotas) >= 1  # the demo's shared on-demand quota binds within the horizon
    for a in quotas.itertuples():
        q = next(x for x in spec["quotas"] if x["code"] == a.target)
        assert (q["fileBy"], q["newValue"], q["crossing"]) == (a.order_by_date, f"{a.new_value:,.0f} vCPU", a.needed_by_date)
        line = next(x for x in report_lines if x.startswith(f"quota {a.target} "))
        assert f"file the increase to {a.new_value:,.0f} vCPU by {a.order_by_date}" in line
        assert line in cli and line in plain  # the same sentence in the CLI, the email and the report
        assert q["bindsBefore"] in line
    buys = csv[csv["action"] == "commit"]
    assert len(buys) >= 1  # the expiring savings plan is replaced
    for a in buys.itertuples():
        rec = next(x for x in spec["commitments"]["recommended"] if x["start"] == a.order_by_date)
        assert rec["hourly"] == f"${a.new_value:,.2f}/h"
        line = next(x for x in report_lines if x.startswith("buy a ") and a.order_by_date in x)
        assert f"of ${a.new_value:,.2f}/h on {a.order_by_date}" in line and line in cli and line in plain
    saving = next(x for x in report_lines if x.startswith("commitments: expected saving"))
    assert spec["commitments"]["expectedSavingPerMonth"] in saving and saving in cli and saving in plain
    pools = {(p["cluster"], p["pool"]): p for p in spec["pools"]}
    raises = csv[csv["action"] == "raise-limit"]
    assert len(raises) >= 1  # an autoscaled pool meets its NodePool limit
    for a in raises.itertuples():
        lim = next(x for x in spec["limits"] if (x["cluster"], x["pool"]) == (a.cluster, a.pool))
        assert lim["fileBy"] == pools[(a.cluster, a.pool)]["orderBy"] == a.order_by_date
        assert lim["newLimits"] == pools[(a.cluster, a.pool)]["toAdd"] == a.summary
        assert lim["patch"] == a.patch and a.monthly_cost_usd == 0
    for b in spec["limits"]:  # each autoscaled pool's forecast bill, the same in every output
        last = b["forecastMonthlyCost"][-1]
        line = next(x for x in report_lines if x.startswith(f"{b['cluster']}/{b['pool']} (autoscaled) forecast bill"))
        assert f"{last['p50']}/month in {last['month']}" in line and line in cli and line in plain
