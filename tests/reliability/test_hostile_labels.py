"""Hostile label values (issue 23, point 3) through the whole monthly run, from a real
Prometheus backfilled with them: pool, cluster and instance-type names holding a line break,
quotes, HTML that runs script, a spreadsheet formula, a path, a right-to-left override and
10 KB. The run plans every pool; each value is carried exactly (PromQL, DuckDB, YAML) and
escaped wherever it is shown (terminal, HTML in Chromium, email, CSV)."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.config import load_config
from pipelines.io.sources.catalog import ClusterSetup, node_pool_expr, node_pool_map_expr
from pipelines.io.sources.promapi import PromClient, escape_label_value, label_regex
from pipelines.testing.promfixtures import AS_OF, HOSTILE_CLUSTER, HOSTILE_LABELS, hostile_spec, prom_site
from pipelines.testing.promserver import PROMETHEUS, PROMTOOL, free_port, serve_fleet

injection = pytest.mark.reliability(kind="injection")
pytestmark = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL), reason="Debian's prometheus is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
POOL_LABEL = "label_eks_amazonaws_com_nodegroup"
FORMULA = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fleet, srv = serve_fleet(hostile_spec(), tmp_path_factory.mktemp("prom-hostile"))
    yield fleet, srv
    srv.stop()


def _site(folder: Path, url: str) -> Path:
    """A site reading the hostile server, its instance catalog listing the hostile types
    (written with the YAML dumper: it must quote them so they load back exactly)."""
    cfg = prom_site(folder, url, 14)
    inst = folder / "catalogs" / "instances.yaml"
    doc = yaml.safe_load(inst.read_text())
    doc["instance_types"] += [{"name": h, "vcpu": 2, "memory_gib": 8, "max_pods": 29, "on_demand_hourly_usd": 0.096,
                               "spot_discount_pct": 62, "reserved_discount_pct": 37} for h in HOSTILE_LABELS]
    inst.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return cfg


@pytest.fixture(scope="module")
def monthly(server, tmp_path_factory):
    """One monthly run on the hostile fleet (the plain function, as the scheduled flow calls it)."""
    from pipelines.jobs import RunRequest, run

    folder = tmp_path_factory.mktemp("hostile-site")
    cfg_path = _site(folder, server[1].url)
    result = run(RunRequest(config_path=str(cfg_path)))
    return folder, cfg_path, result.as_dict()


def _strings(doc) -> list[str]:
    """Every string (keys and values) in a loaded YAML document."""
    if isinstance(doc, dict):
        return [s for k, v in doc.items() for s in _strings(k) + _strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return [doc] if isinstance(doc, str) else []


# ---- carried exactly ---------------------------------------------------------------------
@injection
def test_promql_matchers_and_the_pool_map_carry_every_value_exactly(server):
    """Against the real server: each value, escaped once (string and regex matchers), selects
    its own node and only it; the pool map reads each node's pool back exactly (RE2's ``.``
    skipped a line break: that pool's node fell into ``unlabelled``)."""
    fleet, srv = server
    cfg = load_config(prom_site(Path(tempfile.mkdtemp()), srv.url, 14))
    client = PromClient(cfg.source.prometheus)
    at = fleet.window_end - 600
    truth = {nd.name: nd.pool for nd in fleet.clusters[0].nodes}
    k = f'cluster="{escape_label_value(HOSTILE_CLUSTER)}",'
    for node, pool in truth.items():
        for op, text in (("=", escape_label_value(pool)), ("=~", label_regex([pool]))):
            rows = client.instant("t", f'kube_node_labels{{{k}{POOL_LABEL}{op}"{text}"}}', at)
            assert [r["metric"]["node"] for r in rows] == [node], (op, pool[:40])
            assert rows[0]["metric"][POOL_LABEL] == pool
    # a label_replace'd string literal comes back as the value itself
    for v in (*HOSTILE_LABELS, HOSTILE_CLUSTER, "tab\there\r\x1b[31m\u2066x"):
        rows = client.instant("t", f'label_replace(vector(1), "v", "{escape_label_value(v)}", "", "")', at)
        assert rows[0]["metric"]["v"] == v
    setup = ClusterSetup(HOSTILE_CLUSTER, HOSTILE_CLUSTER, "cluster", {"kube_state_metrics": {}}, [POOL_LABEL],
                         control_plane=False)
    for expr in (node_pool_expr(setup), node_pool_map_expr(setup)):
        got = {r["metric"]["node"]: r["metric"]["pool"] for r in client.instant("pool-map", expr, at)}
        assert got == truth, expr[:80]


@injection
def test_monthly_run_plans_every_hostile_pool_with_its_exact_names(monthly, server):
    folder, cfg_path, result = monthly
    fleet = server[0]
    cfg = load_config(cfg_path)
    with duckdb.connect(str(cfg.path(cfg.store.path)), read_only=True) as con:
        assert con.execute("SELECT status FROM runs WHERE run_id = ?", [result["run_id"]]).fetchall() == [("succeeded",)]
        pools = set(con.execute("SELECT DISTINCT cluster, pool FROM decisions WHERE run_id = ? AND resource = 'cpu'",
                                [result["run_id"]]).fetchall())
        types = set(con.execute("SELECT cluster, pool, node, instance_type FROM inventory WHERE run_id = ?",
                                [result["run_id"]]).fetchall())
        # the joins compare the values as data: each pool has its own usage history
        usage = dict(con.execute("SELECT pool, count(*) FROM samples JOIN series USING (series_id) WHERE kind = 'usage' "
                                 "AND resource = 'cpu' AND level = 'pool' AND cluster = ? GROUP BY pool",
                                 [HOSTILE_CLUSTER]).fetchall())
    assert pools == {(HOSTILE_CLUSTER, p) for p in HOSTILE_LABELS}
    assert types == {(HOSTILE_CLUSTER, nd.pool, nd.name, nd.instance_type) for nd in fleet.clusters[0].nodes}
    assert set(usage) == set(HOSTILE_LABELS) and min(usage.values()) >= 13 * 24
    assert "no cpu usage" not in str(result["summary"])
    # no label became (part of) a file name: the month's folder holds the three files, nothing else was written
    month = folder / "reports" / f"{AS_OF:%Y-%m}"
    assert sorted(p.name for p in month.iterdir()) == ["capacity-plan.yaml", "capacity-report.html", "plan.csv"]
    assert not any("etc" in p.parts or "evil" in str(p) or "xxxxxxxx" in str(p) for p in folder.parent.rglob("*"))


@injection
def test_the_plan_yaml_round_trips_every_value_exactly(monthly):
    _, _, result = monthly
    doc = yaml.safe_load(Path(result["files"]["plan"]).read_text())
    assert {(p["cluster"], p["pool"]) for p in doc["spec"]["pools"]} == {(HOSTILE_CLUSTER, p) for p in HOSTILE_LABELS}
    added = {a["instanceType"] for step in doc["spec"]["expansionPlan"] for a in step["actions"] if a.get("instanceType")}
    assert added == set(HOSTILE_LABELS)  # each pool adds nodes of its (hostile) type
    assert set(doc["spec"]["currentCapacity"]["tiers"]) == set(HOSTILE_LABELS)  # as mapping keys too


# ---- escaped where shown -----------------------------------------------------------------
@injection
def test_csv_cells_cannot_run_as_formulas(monthly):
    _, _, result = monthly
    rows = list(csv.DictReader(io.StringIO(Path(result["files"]["csv"]).read_text(), newline="")))
    hostile = [r for r in rows if r["cluster"] == HOSTILE_CLUSTER]
    assert len({r["pool"] for r in hostile}) == len(HOSTILE_LABELS)
    for r in rows:
        for col, cell in r.items():
            if cell and cell.startswith(FORMULA):
                float(cell)  # only a number may start with - or + (a spreadsheet reads it as the number)
    pools = {r["pool"] for r in hostile}
    assert "'=cmd|' /C calc'!A0" in pools and "line\nbreak" in pools and "x" * 10240 in pools  # kept whole, only defused
    assert any(r["instance_type"] == "'=cmd|' /C calc'!A0" for r in hostile)


def _chromium(url: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url],
                           capture_output=True, text=True, timeout=180)
    return r.stdout


def _ran_no_script(dom: str) -> None:
    """The payloads set the page title when they run; their markup must be text."""
    assert "<html" in dom
    title = re.search(r"<title>(.*?)</title>", dom, re.S)  # setting document.title adds one if the page had none
    assert not title or "XSS" not in title.group(1), title.group(1)
    assert not re.search(r"<img[^>]*onerror", dom, re.I)  # no element was made from a label
    assert "document.title='XSS-script'</script>" not in dom.replace("&lt;/script&gt;", "")
    assert "&lt;img src=x onerror=" in dom  # the label is shown, as text


@injection
@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")
def test_the_report_in_chromium_runs_no_label_as_script(monthly):
    _, _, result = monthly
    report = Path(result["files"]["report"])
    html = report.read_text()
    assert "<script>document.title" not in html and "<img src=x" not in html
    dom = _chromium(report.as_uri())
    _ran_no_script(dom)
    assert 'data-charts-drawn="' in dom  # the charts (titles and hover text hold the names) were drawn


@injection
@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed")
def test_the_email_sent_through_smtp_runs_no_label_as_script(monthly, tmp_path):
    from aiosmtpd.controller import Controller

    from pipelines.jobs.notify import send_run_report

    got: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append(envelope.original_content or envelope.content)
            return "250 OK"

    _, cfg_path, result = monthly
    port = free_port()
    text = cfg_path.read_text().replace("enabled: false", "enabled: true").replace("port: 25", f"port: {port}")
    text = text.replace("security: starttls        # none | starttls | ssl", "security: none")
    mail_cfg = cfg_path.with_name("capplan-mail.yaml")
    mail_cfg.write_text(text)
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        out = send_run_report(load_config(mail_cfg), result["run_id"])
    finally:
        ctl.stop()
    assert out["status"] == "sent" and len(got) == 1
    msg = email.message_from_bytes(got[0], policy=email.policy.default)
    assert "\n" not in str(msg["Subject"]).strip() and "\u202e" not in str(msg["Subject"])
    page = tmp_path / "email.html"
    page.write_text(msg.get_body(("html",)).get_content())
    _ran_no_script(_chromium(page.as_uri()))


@injection
def test_the_terminal_shows_control_characters_and_no_markup(monthly, monkeypatch, caplog):
    from rich.console import Console

    from pipelines import cli

    _, cfg_path, result = monthly
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=400, force_terminal=False, color_system=None))
    cli._print_result(result, show_all=True)
    out = buf.getvalue()
    assert "line\\nbreak" in out and "\\u202eevil" in out  # visible escapes
    assert "\u202e" not in out and "\x1b" not in out and not re.search(r"(?m)^break", out)  # no forged line
    assert "x" * 10240 not in out and "(10,240 chars)" in out  # cut for display only
    assert "'XSS-script'" in out  # the cluster name is plain text, not Rich markup
    # a failing run's error line and log line name the clusters asked for and found: escapes, on one line
    bad = prom_site(cfg_path.parent / "dead", load_config(cfg_path).source.prometheus.url, 14,
                    '    clusters: ["nope\\nforged: line \\u202e[red]x"]\n')
    err = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=err, width=4000, color_system=None))
    caplog.set_level(logging.INFO, logger="capplan")
    caplog.set_level(logging.INFO, logger="capplan.run")  # an earlier in-process CLI call may have quieted it
    from pipelines.jobs import RunRequest, run

    with pytest.raises(Exception) as info:
        with cli._errors():
            run(RunRequest(config_path=str(bad)))
    assert getattr(info.value, "exit_code", None) == 1
    text = err.getvalue()
    assert "nope\\nforged: line \\u202e[red]x not found" in text and HOSTILE_CLUSTER in text
    assert not re.search(r"(?m)^forged", text) and "\u202e" not in text
    logged = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert logged and all("nope\\nforged" in m and "\n" not in m for m in logged)


@pytest.mark.reliability(kind="injection")
def test_the_doctor_prints_hostile_cluster_names_as_visible_text():
    """The doctor's table and header show a cluster name with a line break, a right-to-left
    override and Rich markup as text: one line, escapes visible, no markup applied."""
    from rich.console import Console

    from pipelines.cli_doctor import print_report

    name = "prod\nFAKE OK line \u202e[bold red]x[/]"
    report = {"server": {"kind": "prometheus", "version": "3.0"}, "url": "http://127.0.0.1:9090", "as_of": "2026-11-27",
              "history_days": 180, "history": {name: {"complete": True, "since": "2026-05-01"}}, "found": {name: "node-exporter found"},
              "checks": [{"status": "WARN", "check": "labels", "cluster": name, "detail": f"pool label missing in {name}",
                          "fix": "set pool_label"}]}
    out = io.StringIO()
    print_report(report, Console(file=out, width=400, color_system=None))
    text = out.getvalue()
    assert "\u202e" not in text and "\\u202e" in text
    assert "prod\\nFAKE OK line" in text and "missing in prod\\nFAKE OK line" in text
    assert not any(line.lstrip().startswith("FAKE") for line in text.splitlines())  # no forged line
    assert "[bold red]x[/]" in text  # shown literally, not applied as markup


@injection
def test_a_dropped_sample_warning_cannot_forge_a_log_line():
    from pipelines.io.sources.prometheus import dropped_notes
    sid = 'east|pool\nERROR forged line|cpu'
    (note,) = dropped_notes("pool_cpu_usage", "east\x1b[2J", {"NaN or infinite values": [3, sid, 0.0, float("nan")]})
    assert "\n" not in note and "\x1b" not in note and "3 sample(s) dropped" in note
    assert "forged line" in note  # shown, as text on the same line
