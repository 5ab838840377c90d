"""`capplan doctor` (and the checks every Prometheus ingest starts with) against real
servers shaped like common mistakes: kube-state-metrics without its allowlist, the chart's
10-day retention, and kube-state-metrics running twice."""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.cli_doctor import doctor_report
from pipelines.config import load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.prometheus import PrometheusError, connect, ingest_prometheus
from pipelines.io.store import Store
from pipelines.testing.promfixtures import AS_OF, doctor_specs, prom_site, served, stop_served
from pipelines.testing.promserver import PROMETHEUS, PROMTOOL

pytestmark = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL), reason="Debian's prometheus is not installed")


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    specs = doctor_specs()
    with ThreadPoolExecutor(len(specs)) as pool:
        futures = {name: pool.submit(served, f"doctor-{name}", tmp_path_factory.mktemp(name), spec, **opts)
                   for name, (spec, opts) in specs.items()}
        out = {name: f.result() for name, f in futures.items()}
    yield out
    for name in out:
        stop_served(f"doctor-{name}")


def checks(report: dict) -> dict:
    return {c["check"]: c for c in report["checks"]}


def test_without_the_allowlist_the_run_stops_before_any_heavy_query(servers, tmp_path):
    cfg_path = prom_site(tmp_path, servers["no-allowlist"].url, 14)
    rep = doctor_report(cfg_path, AS_OF)
    pools = checks(rep)["node pools"]
    assert not rep["ok"] and pools["status"] == "FAIL" and pools["cluster"] == "gke-lab"
    assert "no kube_node_labels series at all" in pools["detail"] and "label_cloud_google_com_gke_nodepool" in pools["detail"]
    # the provider comes from kube_node_info's provider_id (gce://): the GKE keys, not every provider's
    assert "metricLabelsAllowlist:\n    - nodes=[cloud.google.com/gke-nodepool,cloud.google.com/gke-spot," in pools["fix"]
    assert "eks.amazonaws.com" not in pools["fix"] and "node.kubernetes.io/instance-type" in pools["fix"]
    res = CliRunner().invoke(app, ["doctor", "--config", str(cfg_path), "--json"])
    assert res.exit_code == 1 and '"ok": false' in res.output
    res = CliRunner().invoke(app, ["doctor", "--config", str(cfg_path), "--no-cost"])
    assert res.exit_code == 1 and "nodes=[cloud.google.com/gke-nodepool," in res.output.replace("\n", "").replace(" ", "")
    cfg = load_config(cfg_path)
    client = connect(cfg)
    with pytest.raises(PrometheusError, match=r"(?s)node pools \[gke-lab\].*metricLabelsAllowlist"):
        ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, HistoryWindow.ending(AS_OF, 14), client=client)
    assert [r.name for r in client.records] == ["doctor:history"]  # nothing but the doctor's daily count


def test_ten_days_of_history_stop_a_fourteen_day_plan_or_warn_in_red(servers, tmp_path):
    cfg_path = prom_site(tmp_path, servers["ten-days"].url, 14)
    rep = doctor_report(cfg_path, AS_OF)
    c = checks(rep)
    assert not rep["ok"]
    assert c["limits"]["status"] == "FAIL" and "keeps 10 days, the plan needs 14" in c["limits"]["detail"]
    assert "retention" in c["limits"]["fix"]
    assert c["history"]["status"] == "FAIL" and "(10 days)" in c["history"]["detail"]
    assert c["node pools"]["status"] == "OK" and "-> aks" in c["node pools"]["detail"]
    cfg = load_config(cfg_path)
    with pytest.raises(PrometheusError, match=r"history \[aks-prod\]: data since .* \(10 days\)"):
        ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, HistoryWindow.ending(AS_OF, 14))
    # the explicit option: the run goes on and the report's data-quality section says it in red
    cfg = load_config(prom_site(tmp_path / "warn", servers["ten-days"].url, 14, "    on_missing_data: warn\n"))
    res = ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, HistoryWindow.ending(AS_OF, 14))
    assert any(w.startswith("history [aks-prod]: data since") for w in res.warnings)
    assert any(w.startswith("limits:") for w in res.warnings)
    assert set(res.inventory["capacity_type"]) == {"spot", "on-demand"}


def test_kube_state_metrics_twice_is_a_warning_and_counted_once(servers, tmp_path):
    s = servers["duplicates"]
    cfg_path = prom_site(tmp_path, s.url, 14)
    rep = doctor_report(cfg_path, AS_OF, cost=False)
    c = checks(rep)
    assert rep["ok"]
    assert c["duplicates"]["status"] == "WARN"
    assert "4 of 4 nodes are exported 2 times" in c["duplicates"]["detail"]
    assert "10.244.2.7:8443" in c["duplicates"]["detail"] and "10.244.3.7:8443" in c["duplicates"]["detail"]
    res = CliRunner().invoke(app, ["doctor", "--config", str(cfg_path), "--no-cost"])
    assert res.exit_code == 0 and "WARN" in res.output
    # and the numbers are not doubled: the ingest matches the truth within 1%
    cfg = load_config(cfg_path)
    store = Store(cfg.path(cfg.store.path))
    w = HistoryWindow.ending(AS_OF, 14)
    ingest_prometheus(store, cfg, w)
    got = store.pool_samples(*w)
    got = got.assign(day=got["ts"].dt.floor("D")).groupby(["cluster", "pool", "resource", "kind", "day"])["value"].max()
    truth = s.fleet.truth_daily()
    truth = truth[(truth["day"] >= w.start) & (truth["day"] < w.end)].set_index(["cluster", "pool", "resource", "kind", "day"])["max"]
    assert len(truth) == 2 * 8 * 14
    err = (got.reindex(truth.index) / truth - 1).abs()
    assert err.max() < 0.01, err.sort_values().tail()
    assert dt.date(2026, 11, 26) in {d.date() for d in truth.index.get_level_values("day")}


def test_a_self_managed_cluster_plans_its_control_plane_as_a_pool(servers, tmp_path):
    """kubeadm-style nodes: workers carry the site's own pool label, the control-plane nodes
    only their role (kube_node_role). They are a pool of their own, not 60% "unlabelled".
    A virtual node (no pool label, no instance type) is named and left out, not priced."""
    from pipelines.testing.kubefleet import KUBEADM_POOL_LABEL

    s = servers["kubeadm"]
    cfg_path = prom_site(tmp_path, s.url, 14, f"    pool_label: {KUBEADM_POOL_LABEL}\n")
    rep = doctor_report(cfg_path, AS_OF, cost=False)
    pools = checks(rep)["node pools"]
    assert rep["ok"] and pools["status"] == "OK", pools
    assert "control-plane (3)" in pools["detail"] and "general (2)" in pools["detail"] and "unlabelled" not in pools["detail"]
    assert checks(rep)["instance catalog"]["status"] == "OK"
    virtual = checks(rep)["virtual nodes"]
    assert virtual["status"] == "WARN" and "1 node(s) have neither a pool label nor an instance type (e.g. onprem-virtual-5)" in virtual["detail"]
    cfg = load_config(cfg_path)
    store = Store(cfg.path(cfg.store.path))
    w = HistoryWindow.ending(AS_OF, 14)
    res = ingest_prometheus(store, cfg, w)
    assert sorted(res.inventory.groupby("pool").size().items()) == [("control-plane", 3), ("general", 2)]
    got = store.pool_samples(*w)
    got = got.assign(day=got["ts"].dt.floor("D")).groupby(["cluster", "pool", "resource", "kind", "day"])["value"].max()
    truth = s.fleet.truth_daily()
    truth = truth[(truth["day"] >= w.start) & (truth["day"] < w.end)].set_index(["cluster", "pool", "resource", "kind", "day"])["max"]
    assert set(truth.index.get_level_values("pool")) == {"control-plane", "general", "virtual"}
    assert set(got.index.get_level_values("pool")) == {"control-plane", "general"}  # no "unlabelled" pool
    assert any(w.startswith("virtual nodes [onprem]") for w in res.warnings)
    truth = truth[truth.index.get_level_values("pool") != "virtual"]
    err = (got.reindex(truth.index) / truth - 1).abs()
    assert err.max() < 0.01, err.sort_values().tail()


def test_fleet_types_missing_from_the_catalog_are_named_with_the_lines_to_add(servers, tmp_path):
    cfg_path = prom_site(tmp_path, servers["duplicates"].url, 14)
    inst = tmp_path / "catalogs" / "instances.yaml"
    inst.write_text("\n".join(line for line in inst.read_text().splitlines() if "name: n2-standard-2" not in line) + "\n")
    c = checks(doctor_report(cfg_path, AS_OF, cost=False))["instance catalog"]
    assert c["status"] == "WARN"
    assert "n2-standard-2 (4 nodes in gke-prod/default-pool, gke-prod/spot-pool)" in c["detail"]
    assert "- {name: n2-standard-2, vcpu: 2, memory_gib: 8, max_pods: 110, on_demand_hourly_usd: <price>" in c["fix"]
