"""Ingest from a real Prometheus holding what real exporters and ServiceMonitors store
(pipelines.testing.kubefleet), compared with the generator's ground truth per pool and day."""

import datetime as dt
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest

from pipelines.config import ConfigError, load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.catalog import ClusterSetup, load_metric_catalog, node_pool_expr, render
from pipelines.io.sources.doctor import inspect
from pipelines.io.sources.presets import allowlist_snippet, inventory_from_labels, ksm_label, plan_node_labels
from pipelines.io.sources.promapi import PromClient, WindowPlanner, escape_label_value
from pipelines.io.sources.prometheus import (PrometheusError, answers_to_frame, connect, ingest_prometheus, missing_windows,
                                             plan_chunks)
from pipelines.io.sources.catalog import build_queries
from pipelines.io.store import Store
from pipelines.testing.promfixtures import AS_OF, MAIN_MAX_SAMPLES, main_spec, prom_site, served, stop_served
from pipelines.testing.promserver import PROMETHEUS, PROMTOOL, free_port

needs_prometheus = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL), reason="Debian's prometheus is not installed (make test installs it as root)")
DAY = pd.Timedelta(days=1)


def window(cfg) -> HistoryWindow:
    """The history window a run on ``cfg`` reads."""
    return HistoryWindow.ending(cfg.as_of, cfg.forecasting.history_days)


def prom_config(folder: Path, url: str, extra: str = "") -> Path:
    """A site reading ``url`` (14 days of history); ``extra``: YAML lines under source.prometheus."""
    return prom_site(folder, url, 14, extra)


@pytest.fixture(scope="session")
def main(tmp_path_factory):
    if not (PROMETHEUS and PROMTOOL):
        pytest.skip("Debian's prometheus is not installed")
    s = served("main", tmp_path_factory.mktemp("prom-main"), main_spec(), max_samples=MAIN_MAX_SAMPLES)
    yield s
    stop_served("main")


@pytest.fixture(scope="session")
def ingested(main, tmp_path_factory):
    """The monthly path twice on one database: three days before the plan date, then on it."""
    folder = tmp_path_factory.mktemp("ingested")
    cfg_path = prom_config(folder, main.url)
    cfg = load_config(cfg_path)
    store = Store(cfg.path(cfg.store.path))
    clients = [connect(cfg), connect(cfg)]
    t = time.perf_counter()
    first = ingest_prometheus(store, cfg, HistoryWindow.ending(AS_OF - dt.timedelta(days=3), 14), client=clients[0])
    t1 = time.perf_counter() - t
    second = ingest_prometheus(store, cfg, HistoryWindow.ending(AS_OF, 14), client=clients[1])
    return SimpleNamespace(folder=folder, cfg_path=cfg_path, cfg=cfg, store=store, first=first, second=second,
                           clients=clients, first_s=t1, window=HistoryWindow.ending(AS_OF, 14))


def daily(frame: pd.DataFrame) -> pd.DataFrame:
    f = frame.assign(day=frame["ts"].dt.floor("D"))
    return f.groupby(["cluster", "pool", "resource", "kind", "day"])["value"].agg(["max", "mean"]).reset_index()


# ---- no server ----------------------------------------------------------------------------
def test_chunks_fit_the_point_limit_without_overlap():
    chunks = plan_chunks(0, 60 * 86400, 300, 11000)
    assert len(chunks) == 2
    assert chunks[0] == (0, 10999 * 300) and chunks[1][0] == 11000 * 300
    assert chunks[-1][1] == 60 * 86400 - 300
    assert sum((b - a) // 300 + 1 for a, b in chunks) == 60 * 86400 // 300  # every step exactly once


def test_only_missing_windows_are_pulled():
    t = pd.Timestamp("2026-11-01", tz="UTC")
    stored = [(t, t + 10 * DAY), (t + 12 * DAY, t + 20 * DAY)]
    assert missing_windows(t, t + 30 * DAY, stored, 3600) == [(t + 10 * DAY, t + 12 * DAY), (t + 20 * DAY, t + 30 * DAY)]
    assert missing_windows(t + DAY, t + 9 * DAY, stored, 3600) == []
    assert missing_windows(t, t + 10 * DAY + pd.Timedelta(minutes=30), stored, 3600) == []  # less than a step


def test_kube_state_metrics_label_names():
    # kube-state-metrics internal/store/utils.go: sanitise, split camelCase, lower, prefix
    assert ksm_label("cloud.google.com/gke-nodepool") == "label_cloud_google_com_gke_nodepool"
    assert ksm_label("eks.amazonaws.com/capacityType") == "label_eks_amazonaws_com_capacity_type"
    assert ksm_label("karpenter.sh/capacity-type") == "label_karpenter_sh_capacity_type"
    assert ksm_label("label_node_kubernetes_io_pool") == "label_node_kubernetes_io_pool"  # already a KSM name


@pytest.mark.parametrize("labels, pool, spot", [
    ({"eks.amazonaws.com/nodegroup": "ng-a", "eks.amazonaws.com/capacityType": "SPOT"}, "ng-a", "spot"),
    ({"eks.amazonaws.com/nodegroup": "ng-b", "eks.amazonaws.com/capacityType": "ON_DEMAND"}, "ng-b", "on-demand"),
    ({"karpenter.sh/nodepool": "default", "karpenter.sh/capacity-type": "spot", "eks.amazonaws.com/nodegroup": "x"}, "default", "spot"),
    ({"karpenter.sh/nodepool": "gpu", "karpenter.sh/capacity-type": "reserved"}, "gpu", "on-demand"),
    ({"cloud.google.com/gke-nodepool": "pool-1", "cloud.google.com/gke-spot": "true"}, "pool-1", "spot"),
    ({"cloud.google.com/gke-nodepool": "pool-2", "cloud.google.com/gke-preemptible": "true"}, "pool-2", "spot"),
    ({"kubernetes.azure.com/agentpool": "user", "kubernetes.azure.com/scalesetpriority": "spot"}, "user", "spot"),
    ({"agentpool": "legacy", "kubernetes.azure.com/scalesetpriority": "regular"}, "legacy", "on-demand"),
    ({"node.kubernetes.io/instance-type": "m6i.large"}, "unlabelled", "on-demand"),
])
def test_presets_read_every_provider(labels, pool, spot):
    nodes = {"n1": {ksm_label(k): v for k, v in {**labels, "node.kubernetes.io/instance-type": "m6i.large"}.items()}}
    inv = inventory_from_labels("c", nodes, {"n1": {"cpu": 1.93}}, "auto", {})
    assert inv.loc[0, "pool"] == pool and inv.loc[0, "capacity_type"] == spot
    assert inv.loc[0, "instance_type"] == "m6i.large" and inv.loc[0, "cpu_cores"] == 1.93


def test_a_custom_pool_label_may_be_the_real_kubernetes_key():
    nodes = {"n1": {"label_example_com_pool": "blue"}, "n2": {"label_example_com_pool": "green"}}
    inv = inventory_from_labels("c", nodes, {}, "custom", {"pool": "example.com/pool"})
    assert list(inv["pool"]) == ["blue", "green"]
    plan = plan_node_labels("c", nodes, "custom", "example.com/pool", None)
    assert plan.pool_labels == ["label_example_com_pool"] and plan.unlabelled == 0


def test_the_allowlist_snippet_names_the_providers_keys():
    plan = plan_node_labels("c", {"n1": {}}, "auto", None, None, ["gce"])
    snippet = allowlist_snippet(plan, {})
    assert "metricLabelsAllowlist" in snippet and "cloud.google.com/gke-nodepool" in snippet
    assert "node.kubernetes.io/instance-type" in snippet and "eks.amazonaws.com" not in snippet


def test_control_plane_and_virtual_nodes():
    """A control-plane node (kube_node_role) without a pool label is pool control-plane; a
    node with neither a pool label nor an instance type is virtual (Fargate) and left out,
    but only when the labels are exported at all (no allowlist: every node is unlabelled)."""
    ng = {"label_eks_amazonaws_com_nodegroup": "ng", "label_node_kubernetes_io_instance_type": "m6i.large"}
    nodes = {"ip-1": ng, "ip-2": ng, "master-0": {"label_node_kubernetes_io_instance_type": "m6i.large"},
             "fargate-ip-3": {}}
    plan = plan_node_labels("c", nodes, "auto", None, None, control_plane={"master-0"})
    assert (plan.virtual, plan.unlabelled, plan.nodes, plan.no_instance_type) == (["fargate-ip-3"], 0, 3, 0)
    inv = inventory_from_labels("c", nodes, {}, "auto", {}, {"master-0"}, set(plan.virtual))
    assert dict(zip(inv["node"], inv["pool"])) == {"ip-1": "ng", "ip-2": "ng", "master-0": "control-plane"}
    bare = plan_node_labels("c", {"a": {}, "b": {}}, "auto", None, None)
    assert (bare.virtual, bare.unlabelled) == ([], 2)
    assert 'kube_node_role{role=~"control-plane|master"}' in node_pool_expr(ClusterSetup("x", None, "cluster", {}, ["label_a"]))


def test_label_values_cannot_inject_promql():
    hostile = 'prod"} or up{x="'
    setup = ClusterSetup("x", hostile, "cluster", {"kube_state_metrics": {"job": 'ksm\\"x'}}, ["label_a"])
    out = render("kube_node_labels{<<ksm>>}", setup, "5m")
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', out)
    assert out == f'kube_node_labels{{job="{literals[0]}",cluster="{literals[1]}",}}'  # nothing outside the strings
    unescape = lambda s: re.sub(r"\\(.)", lambda m: m.group(1), s)  # noqa: E731  (PromQL string unescaping)
    assert unescape(literals[1]) == hostile and unescape(literals[0]) == 'ksm\\"x'
    with pytest.raises(ConfigError, match="not a valid Prometheus label name"):
        node_pool_expr(ClusterSetup("x", None, "cluster", {}, ["label_a) or vector(1"]))


@pytest.mark.parametrize("join", ["kube_pod_info", "internal_ip", "label:instance"])
def test_every_default_query_renders(join):
    cat = load_metric_catalog()
    setup = ClusterSetup("east", "east", "cluster", {f: {"job": f} for f in ("kube_state_metrics", "node_exporter", "cadvisor",
                                                                             "kubelet", "ceph")}, ["label_a", "label_b"], join)
    from pipelines.config import PrometheusSource

    queries = build_queries(cat, setup, PrometheusSource(), 3600, 300, 1200)
    assert {(q.entry.level, q.entry.resource, q.entry.kind) for q in queries} >= {
        ("pool", "cpu", "usage"), ("pool", "memory", "requests"), ("pool", "pods", "capacity"), ("storage", "storage", "usage")}
    for q in queries:
        assert "<<" not in q.expr and q.expr.count("(") == q.expr.count(")")
        assert q.entry.name != "pool_cpu_usage" or "node_cpu_seconds_total" in q.expr  # node-exporter first


def test_the_users_catalog_entries_win(tmp_path):
    (tmp_path / "mine.yaml").write_text("metrics:\n  - {name: my_cpu, level: pool, resource: cpu, kind: usage, "
                                        "requires: [kube_state_metrics], expr: 'sum by (<<c>>, pool) (vector(1))'}\n")
    cat = load_metric_catalog(tmp_path / "mine.yaml")
    assert cat.metrics[0].name == "my_cpu"
    (tmp_path / "bad.yaml").write_text("metrics:\n  - {name: x, level: pool, resource: cpu, kind: usage, requires: [nginx], expr: up}\n")
    with pytest.raises(ConfigError, match="unknown job"):
        load_metric_catalog(tmp_path / "bad.yaml")


# ---- the realistic server -------------------------------------------------------------------
@needs_prometheus
def test_ingest_matches_the_truth_per_pool_and_day(main, ingested):
    w = ingested.window
    got = daily(ingested.store.pool_samples(*w))
    truth = main.fleet.truth_daily()
    truth = truth[(truth["day"] >= w.start) & (truth["day"] < w.end)]
    m = truth.merge(got, on=["cluster", "pool", "resource", "kind", "day"], how="outer", suffixes=("_t", "_g"), indicator=True)
    assert (m["_merge"] == "both").all(), m[m["_merge"] != "both"][["cluster", "pool", "resource", "kind", "day", "_merge"]]
    keys = set(zip(truth.cluster, truth.pool, truth.resource, truth.kind))
    # every pool, resource and kind the fleet has: 4 node pools x 8 series, 2 storage classes, 3 Ceph pools
    assert len(keys) == 4 * 8 + (2 + 3) * 2
    bad = []
    for col in ("max", "mean"):
        err = (m[f"{col}_g"] / m[f"{col}_t"] - 1).abs()
        bad += [f"{r.cluster}/{r.pool}/{r.resource}/{r.kind} {r.day:%m-%d} {col}: got {getattr(r, col + '_g'):.6g}, "
                f"truth {getattr(r, col + '_t'):.6g}" for r in m[err > 0.01].itertuples()]
    assert not bad, "\n".join(bad[:20])
    # the completed Job's and the unscheduled pod's requests are not in any pool
    req = m[(m.resource == "cpu") & (m.kind == "requests")]
    assert (req["max_g"] < 16).all()


@needs_prometheus
def test_inventory_and_storage_pools_come_from_the_real_labels(main, ingested):
    inv = ingested.second.inventory.set_index(["cluster", "node"]).sort_index()
    exp = main.fleet.inventory().set_index(["cluster", "node"]).sort_index()
    assert list(inv.index) == list(exp.index)  # the interrupted spot node is gone, its replacement is in
    for col in ("pool", "instance_type", "zone", "capacity_type"):
        assert (inv[col] == exp[col]).all(), col
    assert np.allclose(inv["cpu_cores"], exp["cpu_cores"]) and np.allclose(inv["memory_bytes"], exp["memory_bytes"], rtol=1e-9)
    assert set(inv.loc["east", "capacity_type"]) == {"spot", "on-demand"} and (inv.loc["west", "tier"] == inv.loc["west", "pool"]).all()
    sp = ingested.second.storage_pools.set_index(["cluster", "pool"])["capacity"]
    truth = main.fleet.truth_hourly()
    last = truth[(truth.kind == "capacity") & (truth.resource == "storage") & (truth.ts < ingested.window.end)]
    last = last.sort_values("ts").groupby(["cluster", "pool"])["value"].last()
    assert set(sp.index) == set(last.index) == {("east", "sc:gp3"), ("east", "sc:nfs-client"), ("west", "ceph:.mgr"),
                                                  ("west", "ceph:replicapool"), ("west", "ceph:ec-data")}
    assert np.allclose(sp.sort_index(), last.sort_index(), rtol=0.01)
    with duckdb.connect(str(ingested.store.path), read_only=True) as con:
        dupes = con.execute("SELECT count(*) FROM (SELECT series_id, ts FROM samples GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
    assert dupes == 0


def _pulled_days(client: PromClient) -> dict[tuple[str, str], float]:
    out: dict = {}
    for r in client.records:
        if r.outcome == "ok" and not r.name.startswith("doctor:"):
            key = (r.name.split("#")[0], r.cluster)
            out[key] = out.get(key, 0) + (r.end - r.start + r.step) / 86400
    return out


@needs_prometheus
def test_the_monthly_pull_reads_only_the_new_days(ingested):
    first, second = (_pulled_days(c) for c in ingested.clients)
    assert first and set(first) == set(second)
    assert all(abs(d - 14) < 0.05 for d in first.values()), first
    assert all(abs(d - 3) < 0.05 for d in second.values()), second  # the days between the two runs
    again = ingest_prometheus(ingested.store, ingested.cfg, ingested.window, client=(c := connect(ingested.cfg)))
    assert again.rows == 0 and not _pulled_days(c)
    assert again.warnings == [] and ingested.second.warnings == []


@needs_prometheus
def test_requests_are_split_by_time_to_stay_under_max_samples(ingested):
    recs = pd.DataFrame([r.__dict__ for c in ingested.clients for r in c.records])
    assert (recs["outcome"] == "ok").all()
    assert recs["peak_samples"].max() <= MAIN_MAX_SAMPLES
    cpu = recs[(recs["name"] == "pool_cpu_usage") & (recs["cluster"] == "east")]
    first = cpu[cpu["end"] < pd.Timestamp(AS_OF - dt.timedelta(days=2), tz="UTC").timestamp()]
    per_step = (first["peak_samples"] / ((first["end"] - first["start"]) / 3600 + 1)).max()
    assert per_step * 14 * 24 > MAIN_MAX_SAMPLES  # 14 days in one request would be refused...
    assert len(first) >= 3  # ...so they came in pieces


@needs_prometheus
def test_a_query_too_heavy_for_the_server_is_split_not_sent_again(main, ingested, tmp_path):
    # capplan is told the server takes 40M samples per query; it takes 400k: HTTP 422
    cfg = load_config(prom_config(tmp_path, main.url, "    max_samples: 40000000\n    clusters: [east]\n    drill_down: false\n"
                                                      "    storage: []\n"))
    store = Store(cfg.path(cfg.store.path))
    client = connect(cfg)
    ingest_prometheus(store, cfg, window(cfg), client=client)
    heavy = [r for r in client.records if r.outcome == "too-heavy"]
    assert heavy, "expected HTTP 422 from the server"
    sent = [(r.name, r.start, r.end) for r in client.records]
    assert all(sent.count((r.name, r.start, r.end)) == 1 for r in heavy)  # split, never re-sent
    assert max(r.peak_samples or 0 for r in client.records) <= MAIN_MAX_SAMPLES
    mine = store.pool_samples(*window(cfg))
    ref = ingested.store.pool_samples(*window(cfg))
    ref = ref[ref["cluster"] == "east"]
    ref = ref[~ref["pool"].str.contains(":")].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.reset_index(drop=True), ref, check_dtype=False)


class Proxy:
    """A real HTTP proxy in front of Prometheus; ``decide(path, form)`` returns None (pass
    through), a number of seconds to wait first, or (status, body) to answer itself."""

    def __init__(self, target: str, decide):
        outer = self
        self.calls = 0
        self.on_headers = None

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _handle(self, body: bytes | None):
                outer.calls += 1
                if outer.on_headers:
                    outer.on_headers(dict(self.headers))
                form = dict(urllib.parse.parse_qsl(body.decode())) if body else dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                act = decide(self.path, form, outer.calls)
                if isinstance(act, tuple):
                    self.send_response(act[0])
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(act[1])
                    return
                if act:
                    time.sleep(act)
                req = urllib.request.Request(target + self.path, data=body, method=self.command)
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._handle(None)

            def do_POST(self):
                self._handle(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        import urllib.parse  # noqa: F401  (used in the handler)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def _one_query(cfg, client, name="pool_memory_usage", cluster="east"):
    src = cfg.source.prometheus
    setup = inspect(client, src, window(cfg), 3600)
    cs = next(c for c in setup.clusters if c.name == cluster)
    q = next(q for q in build_queries(load_metric_catalog(), cs, src, 3600, setup.peak_s, setup.rate_window_s)
             if q.label == name)
    first = window(cfg).start.timestamp() + q.shift_s
    return q, first, first + (14 * 24 - 1) * 3600


@needs_prometheus
def test_a_timeout_splits_the_window(main, tmp_path):
    long_ones = []

    def decide(path, form, n):  # the server "needs" 3 s for anything longer than 3 days
        if path.endswith("query_range") and float(form["end"]) - float(form["start"]) > 3 * 86400:
            long_ones.append((form["start"], form["end"]))
            return 3
        return None

    proxy = Proxy(main.url, decide)
    try:
        cfg = load_config(prom_config(tmp_path, proxy.url, "    timeout_s: 1.5\n"))
        client = connect(cfg)
        q, first, last = _one_query(cfg, client)
        planner = WindowPlanner(3600, 10**9, 1.5, 11000, None)
        planner.seed(q.name, 1.0, None)  # cheap by its stats: the whole window in one request
        answers = planner.pull(client, q.name, q.label, q.expr, first, last, "east")
    finally:
        proxy.stop()
    assert long_ones and len(set(long_ones)) == len(long_ones)  # never the same window twice
    assert any(r.outcome == "too-heavy" for r in client.records)
    direct = connect(load_config(prom_config(tmp_path / "d", main.url)))
    ref = WindowPlanner(3600, 10**9, 30, 11000, None).pull(direct, q.name, q.label, q.expr, first, last, "east")
    a, _ = answers_to_frame(q, answers)
    b, _ = answers_to_frame(q, ref)
    pd.testing.assert_frame_equal(a.sort_values(["series_id", "ts"]).reset_index(drop=True),
                                  b.sort_values(["series_id", "ts"]).reset_index(drop=True))
    assert len(a) == 2 * 14 * 24


@needs_prometheus
def test_doctor_on_a_healthy_server(main, ingested):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.cli_doctor import doctor_report

    rep = doctor_report(ingested.cfg_path, AS_OF)
    assert rep["ok"], [c for c in rep["checks"] if c["status"] != "OK"]
    assert all(c["status"] == "OK" for c in rep["checks"])
    checks = {(c["check"], c["cluster"]): c["detail"] for c in rep["checks"]}
    assert "-> eks" in checks[("node pools", "east")] and "-> karpenter" in checks[("node pools", "west")]
    assert "via kube_pod_info" in checks[("node-exporter join", "east")]  # KPS: instance is <host IP>:9100
    assert "via label:instance" in checks[("node-exporter join", "west")]  # kube-prometheus: instance is the node
    assert "prometheus_replica" in checks[("HA replicas", "east")]
    assert "Ceph pools .mgr, ec-data, replicapool" in checks[("storage", "west")]
    assert "query.max-samples 400,000" in checks[("limits", "")]
    est = {(e["query"], e["cluster"]): e for e in rep["estimates"]}
    assert est[("pool_cpu_usage", "east")]["total_per_day"] > 0 and est[("pool_cpu_usage", "east")]["requests_for_window"] >= 3
    res = CliRunner().invoke(app, ["doctor", "--config", str(ingested.cfg_path), "--no-cost"])
    assert res.exit_code == 0, res.output
    assert "ready for `capplan run`" in res.output


@needs_prometheus
def test_bad_promql_in_a_user_catalog_names_the_query(main, tmp_path):
    (tmp_path / "mine.yaml").write_text("metrics:\n  - {name: my_broken, level: pool, resource: cpu, kind: usage, "
                                        "expr: 'sum by (cluster, pool) (rate(foo[5m]'}\n")
    cfg = load_config(prom_config(tmp_path, main.url, "    catalog: mine.yaml\n"))
    with pytest.raises(PrometheusError, match=r"query 'my_broken' \(clusters: (east|west)\) failed with HTTP 400 .*PromQL: "):
        ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, window(cfg))


def test_server_down_is_retried_then_named(tmp_path):
    cfg = load_config(prom_config(tmp_path, f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(PrometheusError, match=r"^cannot connect to http://127.0.0.1:\d+ \(connection refused\); is Prometheus "
                                              r"running there\? \(2 attempt\(s\)\)$"):
        ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, window(cfg))


@needs_prometheus
@pytest.mark.parametrize("fail", ["500", "truncated"])
def test_transient_failures_are_retried(main, tmp_path, fail):
    def decide(path, form, n):
        if n == 1:
            return (500, b'{"status":"error","error":"internal"}') if fail == "500" else \
                (200, b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":')
        return None

    proxy = Proxy(main.url, decide)
    try:
        client = connect(load_config(prom_config(tmp_path, proxy.url)))
        end = pd.Timestamp(AS_OF, tz="UTC").timestamp()
        ans = client.query_range("q", "count(kube_node_info)", end - 82800, end, 3600)
        assert proxy.calls == 2 and len(ans.result[0]["values"]) == 24
    finally:
        proxy.stop()


@needs_prometheus
def test_a_server_that_never_answers_in_time_is_reported(main, tmp_path):
    proxy = Proxy(main.url, lambda path, form, n: 2 if path.endswith("query_range") else None)
    try:
        cfg = load_config(prom_config(tmp_path, proxy.url, "    timeout_s: 1\n"))
        client = connect(cfg)
        with pytest.raises(PrometheusError, match=r"query 'q' \(clusters: east\) is too heavy even for one step.*timed out"):
            WindowPlanner(3600, 10**9, 1, 11000, None).pull(client, "q", "q", "count(kube_node_info)", 0, 6 * 3600, "east")
        assert 1 < proxy.calls <= 4  # halved down to one step, not retried at the same size
    finally:
        proxy.stop()


@needs_prometheus
def test_capplan_run_plans_every_node_pool_and_storage_pool_then_survives_a_dead_server(ingested, tmp_path):
    import shutil

    from pipelines.jobs import RunRequest, run

    site = tmp_path / "site"
    shutil.copytree(ingested.folder, site)
    cfg_path = site / "capplan.yaml"
    url = ingested.cfg.source.prometheus.url
    cfg_path.write_text(cfg_path.read_text().replace(url, f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(PrometheusError):
        run(RunRequest(config_path=str(cfg_path)))
    db = site / "data" / "capplan.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        runs = con.execute("SELECT status, error FROM runs").fetchall()
        assert runs == [("failed", runs[0][1])] and "(connection refused)" in runs[0][1] and "(2 attempt(s))" in runs[0][1]
        for table in ("forecasts", "plans", "decisions", "inventory"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] == 0
    assert not (site / "reports" / "2026-11").exists()
    cfg_path.write_text(re.sub(r"url: http://127\.0\.0\.1:\d+", f"url: {url}", cfg_path.read_text()))
    result = run(RunRequest(config_path=str(cfg_path))).as_dict()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT status FROM runs WHERE run_id = ?", [result["run_id"]]).fetchall()[0][0] == "succeeded"
        pools = {r for r in con.execute("SELECT DISTINCT cluster, pool FROM decisions WHERE run_id = ?", [result["run_id"]]).fetchall()}
        storage = {r for r in con.execute("SELECT DISTINCT cluster, pool FROM decisions WHERE run_id = ? AND resource = 'storage'",
                                          [result["run_id"]]).fetchall()}
        spot = con.execute("SELECT count(*) FROM inventory WHERE run_id = ? AND capacity_type = 'spot'", [result["run_id"]]).fetchall()
    assert {("east", "ng-general"), ("east", "ng-batch"), ("west", "default"), ("west", "system")} <= pools
    assert storage == {("east", "sc:gp3"), ("east", "sc:nfs-client"), ("west", "ceph:.mgr"), ("west", "ceph:replicapool"),
                       ("west", "ceph:ec-data")}
    assert spot[0][0] == 5  # 3 EKS SPOT nodes, 2 Karpenter spot nodes
    assert Path(result["files"]["report"]).exists()
    assert escape_label_value("a") == "a"


@needs_prometheus
def test_thanos_parameters_and_downsampled_history(main, tmp_path):
    """A proxy that answers like Thanos Query (buildinfo 0.x, /api/v1/stores) in front of the
    real server, whose raw blocks only cover the last 5 days of a 14-day window."""
    raw_since = pd.Timestamp(AS_OF, tz="UTC").timestamp() - 5 * 86400
    forms: list[dict] = []

    def decide(path, form, n):
        if path.startswith("/api/v1/status/buildinfo"):
            return (200, b'{"status":"success","data":{"version":"0.36.1","revision":"x","branch":"x","buildUser":"x",'
                         b'"buildDate":"x","goVersion":"go1.22"}}')
        if path.startswith("/api/v1/stores"):
            return (200, b'{"status":"success","data":{"sidecar":[]}}')
        if path.startswith("/api/v1/status/flags"):
            return (200, b'{"status":"success","data":{"query.replica-label":"prometheus_replica","query.timeout":"2m"}}')
        if path.endswith("query_range"):
            forms.append(form)
            if form.get("max_source_resolution") == "0s" and form["query"].startswith("count by (cluster) (last_over_time(kube_node_info"):
                days = [[float(t), "6"] for t in np.arange(float(form["start"]), float(form["end"]) + 1, 86400) if t >= raw_since]
                body = {"status": "success", "data": {"resultType": "matrix", "result": [
                    {"metric": {"cluster": c}, "values": days} for c in ("east", "west")]}}
                import json

                return (200, json.dumps(body).encode())
        return None

    proxy = Proxy(main.url, decide)
    try:
        cfg = load_config(prom_config(tmp_path, proxy.url, "    clusters: [west]\n    drill_down: false\n    storage: []\n"
                                                           "    replica_label: prometheus_replica\n"))
        res = ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, window(cfg))
    finally:
        proxy.stop()
    pulls = [f for f in forms if not f["query"].startswith("count by (cluster)")]
    assert pulls and all(f["dedup"] == "true" and f["partial_response"] == "false" and f["replicaLabels[]"] == "prometheus_replica"
                         for f in pulls)
    old = [f for f in pulls if float(f["start"]) < raw_since]
    new = [f for f in pulls if float(f["start"]) >= raw_since]
    assert old and new and {f["max_source_resolution"] for f in old} == {"1h"} and {f["max_source_resolution"] for f in new} == {"0s"}
    assert any(w.startswith("downsampling [west]: raw data only since") for w in res.warnings)


@needs_prometheus
def test_mimir_tenant_header_and_limits_from_the_config(main, tmp_path):
    def decide(path, form, n):
        if path.startswith("/api/v1/status/buildinfo"):
            return (200, b'{"status":"success","data":{"application":"Grafana Mimir","version":"2.14.0","revision":"x",'
                         b'"branch":"x","goVersion":"go1.22","features":{"query_sharding":"true"}}}')
        if path.startswith("/api/v1/status/flags"):
            return (404, b"404 page not found")
        return None

    seen: list[dict] = []
    proxy = Proxy(main.url, decide)
    proxy.on_headers = seen.append
    try:
        cfg = load_config(prom_config(tmp_path, proxy.url, "    clusters: [west]\n    drill_down: false\n    storage: []\n"
                                                           "    headers: {X-Scope-OrgID: tenant-1}\n    max_samples: 300000\n"))
        rep_client = connect(cfg)
        res = ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, window(cfg), client=rep_client)
    finally:
        proxy.stop()
    assert seen and all(h.get("X-Scope-OrgID") == "tenant-1" for h in seen)
    assert res.rows > 0
    assert max(r.peak_samples or 0 for r in rep_client.records) <= 150_000 * 1.2  # 50% of the configured 300k


@needs_prometheus
def test_without_recorded_series_the_doctor_says_what_the_rules_would_save(ingested):
    from pipelines.cli_doctor import doctor_report

    rep = doctor_report(ingested.cfg_path, AS_OF)
    rec = [c for c in rep["checks"] if c["check"] == "recorded series"]
    assert {c["cluster"] for c in rec} == {"east", "west"} and all(c["status"] == "OK" for c in rec)
    assert any("no kubernetes-mixin or node-mixin recorded series" in c["detail"] and "defaultRules.rules" in c["fix"]
               for c in rec)
    saving = [c for c in rec if c["detail"].startswith("enabling the rules would cut")]
    assert {c["cluster"] for c in saving} == {"east", "west"}
    pulls = {p["name"]: p for p in rep["pulls"]}
    assert pulls["full"]["days"] == 14 and pulls["full"]["samples"] == pytest.approx(pulls["full"]["raw_samples"])
    assert 0 < pulls["full"]["server_s"] and pulls["full"]["requests"] >= 1
    assert all(e["variant"] == "raw" for e in rep["estimates"])
