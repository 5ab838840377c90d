"""capplan's own pool rules (pipelines.io.sources.pool_rules): a real Prometheus whose pool
rules were rendered from the doctor's findings on each replica and evaluated by ``promtool
tsdb create-blocks-from rules`` over the mixins' recorded series (pipelines.testing.promserver),
pulled through them and through the raw series; the doctor's findings, the windows each
variant is read for, what each costs, a configuration they no longer match, and ``capplan
rules``."""

import re
import shutil
import subprocess
from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.cli_doctor import doctor_report
from pipelines.config import load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.catalog import POOL_RULE_LABEL, load_metric_catalog, rule_names
from pipelines.io.sources.doctor import inspect, probe_costs
from pipelines.io.sources.prometheus import connect, ingest_prometheus
from pipelines.io.store import Store
from pipelines.testing.promfixtures import AS_OF, POOL_RULES_SINCE_DAY, pool_rules_spec, prom_site, served, stop_served
from pipelines.testing.promserver import PROMETHEUS, PROMTOOL, free_port
from tests.pipelines.test_prometheus_recorded import daily, only_the_reboot_day_differs

pytestmark = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL), reason="Debian's prometheus is not installed")
DAYS = 5
WINDOW = HistoryWindow.ending(AS_OF, DAYS - 1)
#: instance types name the pools instead of the node groups: other pool labels, other rules
OTHER_POOLS = "    pool_label: node.kubernetes.io/instance-type\n"


@pytest.fixture(scope="session")
def pr(tmp_path_factory):
    s = served("pool-rules", tmp_path_factory.mktemp("prom-pool-rules"), pool_rules_spec(days=DAYS))
    yield s
    stop_served("pool-rules")


def _pull(folder, url: str, mode: str, extra: str = ""):
    cfg = load_config(prom_site(folder, url, 14, f"    recorded: {mode}\n{extra}"))
    store = Store(cfg.path(cfg.store.path))
    res = ingest_prometheus(store, cfg, WINDOW, client=connect(cfg))
    with duckdb.connect(str(store.path), read_only=True) as con:
        costs = con.execute("SELECT query_group, variant, cluster, window_start, window_end, samples, server_s "
                            "FROM query_costs").df()
    return SimpleNamespace(cfg=cfg, res=res, costs=costs, daily=daily(store.pool_samples(*WINDOW)))


@pytest.fixture(scope="session")
def pulls(pr, tmp_path_factory):
    """The same four days pulled twice: raw series only, and the best variant where it exists."""
    return SimpleNamespace(raw=_pull(tmp_path_factory.mktemp("pr-raw"), pr.url, "never"),
                           best=_pull(tmp_path_factory.mktemp("pr-best"), pr.url, "auto"))


def _day(fleet, index: int) -> float:
    """Unix time of the fixture's day ``index`` (midnight)."""
    return fleet.window_end - fleet.spec.days * 86400 + index * 86400


def _setup(pr, folder, extra: str = ""):
    cfg = load_config(prom_site(folder, pr.url, 14, extra))
    catalog = load_metric_catalog()
    src = cfg.source.prometheus
    client = connect(cfg)
    return cfg, client, catalog, inspect(client, src, WINDOW, 3600, rule_names(catalog), catalog)


def test_the_doctor_finds_each_clusters_pool_rules_and_since_when(pr, tmp_path):
    *_, setup = _setup(pr, tmp_path)
    start = WINDOW.start.timestamp()
    for cs in setup.clusters:
        since = _day(pr.fleet, POOL_RULES_SINCE_DAY[cs.name][1])
        assert {"pool_cpu_usage", "pool_memory_requests", "pool_cpu_capacity"} <= set(cs.pool_rules), cs.name
        assert any(g.startswith("storage_") for g in cs.pool_rules), cs.name
        for group, t in cs.pool_rules.items():
            assert max(start, since) <= t <= max(start, since) + 3600, (cs.name, group)  # to the hour
    detail = {c.cluster: c.detail for c in setup.checks if c.check == "pool rules"}
    assert detail["east"].startswith("capplan's pool rules: since ") and "pool_cpu_usage" in detail["east"]
    # `capplan doctor` says the same
    rep = doctor_report(prom_site(tmp_path / "cli", pr.url, 14), AS_OF, cost=False)
    shown = {c["cluster"]: c["detail"] for c in rep["checks"] if c["check"] == "pool rules"}
    assert set(shown) == {"east", "west"}
    assert {c["name"]: set(c["pool_rules"]) for c in rep["clusters"]} == {cs.name: set(cs.pool_rules) for cs in setup.clusters}
    assert all(d.startswith("capplan's pool rules: since ") and "pool_cpu_usage" in d for d in shown.values()), shown


def test_without_the_pool_rules_the_doctor_says_what_they_would_save(pr, tmp_path):
    cfg, client, catalog, setup = _setup(pr, tmp_path, "    pool_rules: never\n")
    assert all(cs.pool_rules == {} for cs in setup.clusters)
    probe_costs(client, cfg.source.prometheus, setup, catalog, WINDOW, 3600)
    assert "pool_rules" not in {e.variant for e in setup.estimates}
    lines = [c.detail for c in setup.checks if c.check == "pool rules" and "would cut" in c.detail]
    assert len(lines) == 2
    for line in lines:  # samples a day before and after, and the ratio
        m = re.search(r"from [0-9.]+[kM]? to about [0-9.]+[kM]? samples a day \(([0-9]+)x fewer", line)
        assert m and int(m.group(1)) >= 5, line


def test_pool_rule_and_raw_pulls_give_the_same_pool_days(pr, pulls):
    raw, got = pulls.raw.daily, pulls.best.daily
    # as for the mixins' recorded series (test_prometheus_recorded): only the reboot's pool-day,
    # where the node-mixin's `1 - idle` reads a node as busy while its rate window empties. The
    # pool rule, evaluated every minute, catches that moment at one of the pull's five-minute
    # points more often than the pull reading the mixin's series there: the day's peak is higher
    # by less than the rebooted node's cores, its mean by less than 5%.
    reboot = only_the_reboot_day_differs(raw, got, pr.fleet, 4 * 8 * 4)
    inv = pr.fleet.inventory()
    cores = inv[(inv["cluster"] == reboot[0]) & (inv["pool"] == reboot[1])]["cpu_cores"].max()
    assert got.loc[reboot]["max"] - raw.loc[reboot]["max"] < cores
    assert got.loc[reboot]["mean"] / raw.loc[reboot]["mean"] - 1 < 0.05
    # the pool-days read from the pool rules are most of the window
    from_rules = pulls.best.costs[pulls.best.costs["variant"] == "pool_rules"]
    assert (from_rules["window_end"] - from_rules["window_start"]).dt.total_seconds().sum() > 0


def _drill_down_days(pulled) -> pd.DataFrame:
    """Daily peaks of the node and namespace series: (cluster, level, node, namespace,
    resource, kind, day) -> max."""
    with duckdb.connect(str(pulled.cfg.path(pulled.cfg.store.path)), read_only=True) as con:
        return con.execute("""
            SELECT s.cluster, s.level, coalesce(s.node, '') AS node, coalesce(s.namespace, '') AS namespace,
                   s.resource, s.kind, date_trunc('day', x.ts) AS day, max(x.value) AS max
            FROM samples x JOIN series s USING (series_id)
            WHERE s.level IN ('node', 'namespace') AND x.ts >= ? AND x.ts < ?
            GROUP BY ALL""", [WINDOW.start, WINDOW.end]).df().set_index(
            ["cluster", "level", "node", "namespace", "resource", "kind", "day"])["max"]


def test_the_drill_down_reads_its_node_and_namespace_rules_with_the_same_values(pr, pulls):
    costs = pulls.best.costs
    drill = costs[costs["query_group"].str.startswith(("node_", "namespace_"))]
    assert {"node_cpu_usage", "namespace_cpu_requests"} <= set(drill.loc[drill["variant"] == "pool_rules", "query_group"])
    raw, got = _drill_down_days(pulls.raw), _drill_down_days(pulls.best)
    assert len(raw) > 100 and set(got.index) == set(raw.index)  # every node and namespace, every day
    rel = (got / raw.where(raw != 0) - 1).abs().dropna()
    # within 1% but for the node-mixin's reboot artefact (one node on one day, as for the pools)
    assert (rel > 0.01).sum() <= 2 and rel.median() < 0.001, rel.sort_values().tail()


def test_the_pull_reads_pool_rules_from_their_start_then_recorded_then_raw(pr, pulls):
    costs = pulls.best.costs
    cpu = costs[costs["query_group"] == "pool_cpu_usage"].sort_values("window_start")
    order = {c: list(dict.fromkeys(g["variant"])) for c, g in cpu.groupby("cluster")}
    assert order == {"east": ["recorded", "pool_rules"], "west": ["raw", "recorded", "pool_rules"]}
    for cluster, g in cpu.groupby("cluster"):
        cut = g[g["variant"] == "pool_rules"]["window_start"].min()
        assert g[g["variant"] != "pool_rules"]["window_end"].max() == cut
        since = pd.Timestamp(_day(pr.fleet, POOL_RULES_SINCE_DAY[cluster][1]), unit="s", tz="UTC")
        assert since <= cut <= since + pd.Timedelta(hours=2), cluster
    # capacity and storage have no mixin variant: raw, then the pool rules
    cap = costs[(costs["query_group"] == "pool_cpu_capacity") & (costs["cluster"] == "west")].sort_values("window_start")
    assert list(dict.fromkeys(cap["variant"])) == ["raw", "pool_rules"]
    assert set(pulls.best.res.cost["by_variant"]) == {"raw", "recorded", "pool_rules"}
    assert "pool_rules" not in set(pulls.raw.costs["variant"])


def test_pool_rules_read_far_fewer_samples_and_cost_the_server_less(pr, pulls, tmp_path):
    """The doctor's one-day probes (samples inside the peak subquery, which Prometheus 2.42's
    stats leave out of the pull's own query_costs) and the pull's server time."""
    cfg, client, catalog, setup = _setup(pr, tmp_path)
    probe_costs(client, cfg.source.prometheus, setup, catalog, WINDOW, 3600)
    per_day = {(e.cluster, e.group, e.variant): e.total_per_day for e in setup.estimates}
    nodes = setup.inventory.groupby("cluster").size()
    rules, before = 0, 0
    for (cluster, group, variant), n in per_day.items():
        if variant != "pool_rules":
            continue
        # one series per pool (and HA replica) at each point, against one per node or container
        best_before = per_day.get((cluster, group, "recorded"), per_day[(cluster, group, "raw")])
        assert n * nodes[cluster] / 4 <= best_before, (cluster, group, n, best_before)
        rules, before = rules + n, before + best_before
    assert rules * 5 < before, (rules, before)  # 3 nodes a pool here: the ratio grows with the nodes of a pool
    full = next(p for p in setup.pulls if p.name == "full")
    assert full.samples < full.raw_samples / 4  # west reads raw and recorded series for its first two days

    def server_s_per_day(costs, variant):
        c = costs[(costs["variant"] == variant) & costs["query_group"].str.startswith("pool_")]
        return c["server_s"].sum() / ((c["window_end"] - c["window_start"]).dt.total_seconds().sum() / 86400)

    assert server_s_per_day(pulls.best.costs, "pool_rules") < server_s_per_day(pulls.raw.costs, "raw") / 2


def test_a_changed_pool_label_stops_reading_the_old_pool_rules(pr, pulls, tmp_path):
    *_, setup = _setup(pr, tmp_path / "doctor", OTHER_POOLS)
    # the pool series' rules recorded the node-group map: not read; the storage series' rules
    # do not depend on the pool labels: still read
    for cs in setup.clusters:
        assert not [g for g in cs.pool_rules if g.startswith("pool_")], cs.name
        assert [g for g in cs.pool_rules if g.startswith("storage_")], cs.name
    detail = {c.cluster: (c.status, c.detail) for c in setup.checks if c.check == "pool rules"}
    assert detail["east"][0] == "WARN" and "written for another configuration" in detail["east"][1]
    other = _pull(tmp_path / "pull", pr.url, "auto", OTHER_POOLS)
    pools = other.costs[other.costs["query_group"].str.startswith("pool_")]
    assert set(pools["variant"]) == {"raw", "recorded"}
    pools = set(other.daily.index.get_level_values("pool"))
    assert "c6i.large" in pools and "ng-general" not in pools


def test_capplan_rules_writes_files_promtool_and_the_doctor_accept(pr, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["rules", "--help"])
    assert res.exit_code == 0 and "--format" in res.output and "prometheusrule" in res.output
    cfg = prom_site(tmp_path, pr.url, 14)
    out = tmp_path / "rules.yaml"
    res = runner.invoke(app, ["rules", "--config", str(cfg), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "promtool tsdb create-blocks-from rules" in res.output and str(out) in res.output
    check = subprocess.run([PROMTOOL, "check", "rules", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    groups = yaml.safe_load(out.read_text())["groups"]
    assert groups[0]["interval"] == "60s"
    written = {(r["record"], r["labels"][POOL_RULE_LABEL]) for r in groups[0]["rules"]}
    # the same rules as those the fixture evaluated (rendered on each replica's own server)
    evaluated = {(r["record"], r["labels"][POOL_RULE_LABEL]) for f in pr.folder.glob("pool-rules-*.yaml")
                 for r in yaml.safe_load(f.read_text())["groups"][0]["rules"]}
    assert written == evaluated and len(written) >= 10
    manifest = tmp_path / "rule.yaml"
    res = runner.invoke(app, ["rules", "--config", str(cfg), "--output", str(manifest), "--format", "prometheusrule",
                              "--namespace", "obs", "--release", "kps"])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(manifest.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert doc["spec"]["groups"] == groups
    assert (doc["metadata"]["namespace"], doc["metadata"]["labels"]["release"]) == ("obs", "kps")
    res = runner.invoke(app, ["rules", "--config", str(cfg), "--format", "alerts"])
    assert res.exit_code == 2 and "--format" in res.output


def test_capplan_rules_without_a_server_is_one_plain_line(tmp_path):
    cfg = prom_site(tmp_path, f"http://127.0.0.1:{free_port()}", 14)
    res = CliRunner().invoke(app, ["rules", "--config", str(cfg), "--output", str(tmp_path / "r.yaml")])
    assert res.exit_code == 1 and "error:" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r.yaml").exists() and shutil.which(PROMTOOL)
