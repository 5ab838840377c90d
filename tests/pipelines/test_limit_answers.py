"""Autoscaler limits as Prometheus answers them -> stored series (``answers_to_frame``):
Karpenter's per-NodePool limits by resource, cluster-autoscaler's per-node-group max sizes
summed per pool, and a node group no pool claims left out."""

from __future__ import annotations

from pipelines.io.sources.catalog import Query, load_metric_catalog
from pipelines.io.sources.promapi import RangeAnswer
from pipelines.io.sources.prometheus import answers_to_frame

START, STEP = 1_764_547_200.0, 3600  # 2025-12-01T00:00Z, hourly


def entry(name):
    return next(e for e in load_metric_catalog().metrics if e.name == name)


def series(metric: dict, values: list[float]) -> dict:
    return {"metric": metric, "values": [[START + i * STEP, str(v)] for i, v in enumerate(values)]}


def answer(*result: dict, steps: int = 3) -> RangeAnswer:
    return RangeAnswer(result=list(result), start=START, end=START + (steps - 1) * STEP, step=STEP)


def test_a_pool_scaled_by_two_node_groups_is_limited_by_their_sum_and_an_unclaimed_group_is_skipped():
    q = Query(name="limit_cluster_autoscaler#x", entry=entry("limit_cluster_autoscaler"), cluster="east", expr="")
    ans = answer(series({"cluster": "east", "node_group": "eks-web-a-1f2e"}, [10, 10, 12]),
                 series({"cluster": "east", "node_group": "eks-web-b-9c8d"}, [5, 6, 6]),
                 series({"cluster": "east", "node_group": "eks-orphan-0000"}, [99, 99, 99]))
    frame, dims = answers_to_frame(q, [ans], node_groups={"eks-web-a-1f2e": "web", "eks-web-b-9c8d": "web"})
    assert dims[["cluster", "pool", "resource", "kind", "level", "unit", "provider"]].values.tolist() == [
        ["east", "web", "nodes", "limit", "limit", "nodes", "cluster-autoscaler"]]
    assert frame.sort_values("ts")["value"].tolist() == [15.0, 16.0, 18.0]  # 10+5, 10+6, 12+6; the orphan's 99 nowhere
    assert set(frame["series_id"]) == set(dims["series_id"])


def test_karpenter_limits_are_one_series_per_nodepool_and_resource():
    q = Query(name="limit_karpenter#x", entry=entry("limit_karpenter"), cluster="west", expr="")
    ans = answer(series({"cluster": "west", "nodepool": "general", "resource_type": "cpu"}, [400, 400, 400]),
                 series({"cluster": "west", "nodepool": "general", "resource_type": "memory"}, [1.6e12] * 3),
                 series({"cluster": "west", "nodepool": "general", "resource_type": "gpu"}, [8] * 3))  # no plan resource
    frame, dims = answers_to_frame(q, [ans])
    assert sorted(dims["resource"]) == ["cpu", "memory"]
    by = frame.merge(dims, on="series_id").groupby("resource")["value"].max().to_dict()
    assert by == {"cpu": 400.0, "memory": 1.6e12}


class _Answers:
    """The doctor's query context, answering instant queries by name from a dict (the
    shapes Karpenter's metrics have: kubernetes-sigs/karpenter pkg/controllers/metrics/nodepool)."""

    c, lookback = "cluster", "1h"

    def __init__(self, by_name: dict[str, list[dict]]):
        self.by_name, self.asked = by_name, []

    def instant(self, name, expr):
        self.asked.append(name)
        return self.by_name.get(name, [])


class _Checks:
    def __init__(self):
        self.checks = []

    def add(self, check, status, detail, fix="", cluster="", report=False):
        self.checks.append((check, status, detail, cluster))


def _limit(metric: str, pool: str, rtype: str, value: float) -> dict:
    return {"metric": {"metric": metric, "cluster": "east", "nodepool": pool, "resource_type": rtype}, "value": [START, str(value)]}


def test_two_karpenter_spellings_of_one_limit_are_listed_once_and_a_cluster_without_nodes_is_not_asked():
    import pandas as pd

    from pipelines.io.sources.autoscalers import inspect_autoscalers
    from pipelines.io.sources.catalog import ClusterSetup

    ctx = _Answers({"autoscaling:karpenter": [  # mid-upgrade: v0.37's and v1's names side by side
        _limit("karpenter_nodepool_limit", "default", "cpu", 1000), _limit("karpenter_nodepools_limit", "default", "cpu", 1000),
        _limit("karpenter_nodepools_limit", "default", "memory", 4000 * 2**30)]})
    east, west = ClusterSetup("east", "east", "cluster"), ClusterSetup("west", "west", "cluster")
    inventory = pd.DataFrame({"cluster": ["east"], "pool": ["default"]})  # west: no kube-state-metrics, no nodes
    setup = _Checks()
    inspect_autoscalers(ctx, setup, [east, west], inventory)
    assert [(c, s, cl) for c, s, _, cl in setup.checks] == [("autoscaling", "OK", "east")]
    detail = setup.checks[0][2]
    assert detail.count("cpu 1,000 cores") == 1 and "memory 4,000 GiB" in detail, detail
    assert "karpenter" in east.jobs and "karpenter" not in west.jobs
    assert len(ctx.asked) == 3  # east's Karpenter and cluster-autoscaler probes; nothing for west
