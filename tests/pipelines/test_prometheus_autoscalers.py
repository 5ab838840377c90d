"""Autoscaled pools read from a real Prometheus: Karpenter's NodePool limits and
cluster-autoscaler's node group sizes, as their controllers export them
(pipelines.testing.autoscalers), found by the doctor, pulled as limit history and planned
as autoscaled pools by the monthly run."""

import duckdb
import pandas as pd
import pytest
import yaml

from pipelines.cli_doctor import doctor_report
from pipelines.config import load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.autoscalers import node_group_pool
from pipelines.io.sources.prometheus import ingest_prometheus
from pipelines.io.store import Store
from pipelines.testing.autoscalers import GIB, LIMIT_FACTORS, cluster_autoscaler_max, karpenter_limits, node_group_id
from pipelines.testing.promfixtures import AS_OF, autoscaler_spec, prom_site, served, stop_served
from pipelines.testing.promserver import PROMETHEUS, PROMTOOL

pytestmark = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL), reason="Debian's prometheus is not installed")
WINDOW = HistoryWindow.ending(AS_OF, 14)


@pytest.fixture(scope="module")
def fleet_server(tmp_path_factory):
    s = served("autoscalers", tmp_path_factory.mktemp("prom-autoscalers"), autoscaler_spec())
    yield s
    stop_served("autoscalers")


def _cluster(fleet, name):
    return next(cd for cd in fleet.clusters if cd.spec.name == name)


def test_node_groups_map_to_the_pool_their_name_contains():
    assert node_group_pool(node_group_id("east", "ng-batch"), ["ng-batch", "ng"]) == "ng-batch"
    assert node_group_pool("gke-prod-spot-pool-1a2b3c4d-grp", ["default-pool", "spot-pool"]) == "spot-pool"
    assert node_group_pool("eks-other-1234", ["ng-batch"]) is None
    # the cloud's naming first: a cluster name that contains another pool's name does not win
    assert node_group_pool("gke-batch-prod-web-1a2b3c4d-grp", ["batch", "web"]) == "web"
    assert node_group_pool(node_group_id("east", "ng-general"), ["ng", "ng-general"]) == "ng-general"


def test_doctor_finds_each_autoscaler_and_says_what_is_not_planned(fleet_server, tmp_path):
    rep = doctor_report(prom_site(tmp_path, fleet_server.url, 14), AS_OF)
    auto = {c["cluster"]: c for c in rep["checks"] if c["check"] == "autoscaling"}
    assert set(auto) == {"west", "east", "south"}
    lim = karpenter_limits(_cluster(fleet_server.fleet, "west"))["default"]
    cpu_now, mem_now = lim["cpu"][1], lim["memory"][1] / GIB
    west = auto["west"]
    assert west["status"] == "OK" and "Karpenter (karpenter_nodepools_limit)" in west["detail"]
    assert f"default: cpu {cpu_now:,.0f} cores, memory {mem_now:,.0f} GiB" in west["detail"]
    assert "pools without limits: system" in west["detail"]
    mx = cluster_autoscaler_max(_cluster(fleet_server.fleet, "east"))
    assert auto["east"]["status"] == "OK"
    assert f"ng-batch: max {mx['ng-batch']} nodes; ng-general: max {mx['ng-general']} nodes" in auto["east"]["detail"]
    south = auto["south"]
    total = sum(cluster_autoscaler_max(_cluster(fleet_server.fleet, "south")).values())
    assert south["status"] == "WARN" and "planned as fixed" in south["detail"]
    assert f"cluster-wide limits ({total} nodes, " in south["detail"]
    assert "--emit-per-nodegroup-metrics" in south["fix"]


def test_limits_are_pulled_as_history_and_planned_autoscaled(fleet_server, tmp_path):
    from pipelines.jobs import RunRequest, run

    cfg_path = prom_site(tmp_path, fleet_server.url, 14)
    cfg = load_config(cfg_path)
    store = Store(cfg.path(cfg.store.path))
    ingest_prometheus(store, cfg, WINDOW)
    limits = store.pool_limits(*WINDOW)
    got = {(r.cluster, r.pool, r.source, r.resource) for r in limits.itertuples()}
    assert got == {("west", "default", "karpenter", "cpu"), ("west", "default", "karpenter", "memory"),
                   ("east", "ng-general", "cluster-autoscaler", "nodes"), ("east", "ng-batch", "cluster-autoscaler", "nodes")}
    # the raise half-way through the fixture's window is in the history, in Karpenter's units
    lim = karpenter_limits(_cluster(fleet_server.fleet, "west"))["default"]
    cpu = limits[(limits.pool == "default") & (limits.resource == "cpu")]
    assert set(cpu["value"].round()) == set(lim["cpu"]) and cpu.sort_values("ts")["value"].iloc[-1] == lim["cpu"][1]
    mem = limits[(limits.pool == "default") & (limits.resource == "memory")]
    assert mem["value"].max() == pytest.approx(lim["memory"][1])
    assert lim["cpu"][1] / lim["cpu"][0] == pytest.approx(LIMIT_FACTORS[1] / LIMIT_FACTORS[0], rel=0.1)
    nodes = limits[limits.resource == "nodes"].groupby("pool")["value"].last().to_dict()
    assert nodes == {k: float(v) for k, v in cluster_autoscaler_max(_cluster(fleet_server.fleet, "east")).items()}

    result = run(RunRequest(config_path=str(cfg_path))).as_dict()
    with duckdb.connect(str(cfg.path(cfg.store.path)), read_only=True) as con:
        runway = con.execute("SELECT cluster, pool, source, limits_text, node_ceiling FROM limit_runway WHERE run_id = ?",
                             [result["run_id"]]).df()
    planned = set(zip(runway["cluster"], runway["pool"]))
    assert planned == {("west", "default"), ("east", "ng-general"), ("east", "ng-batch")}
    west = runway[runway.pool == "default"].iloc[0]
    assert west["source"] == "karpenter" and f"cpu {lim['cpu'][1]:,.0f}" in west["limits_text"]
    doc = yaml.safe_load(open(result["files"]["plan"]))
    in_yaml = {(i["cluster"], i["pool"]) for i in doc["spec"]["limits"] if i.get("limits") != "none known"}
    assert in_yaml == planned
    # pools without limits (west/system, south's node group) stay fixed pools in the plan
    with duckdb.connect(str(cfg.path(cfg.store.path)), read_only=True) as con:
        pools = {tuple(r) for r in con.execute("SELECT DISTINCT cluster, pool FROM decisions WHERE run_id = ?",
                                               [result["run_id"]]).fetchall()}
    assert {("west", "system"), ("south", "ng-web")} <= pools and not pd.isna(west["node_ceiling"])
