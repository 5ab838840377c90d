"""Autoscaler metrics for the Prometheus fixture, as Karpenter and cluster-autoscaler export them.

Names, labels and units follow the upstream source (docs/research/autoscaling-metrics.md):

* Karpenter (kubernetes-sigs/karpenter ``pkg/controllers/metrics/nodepool/controller.go``,
  ``pkg/metrics/constants.go``; v1.0+): ``karpenter_nodepools_limit`` and
  ``karpenter_nodepools_usage`` with labels ``nodepool`` and ``resource_type`` (the resource
  name lowercased, ``-`` as ``_``); cpu in cores (``MilliValue() / 1000``), memory in bytes;
  a limit series only for the keys set in ``spec.limits``; usage counts the *capacity* of the
  pool's nodes. v0.32-v0.37 spell them ``karpenter_nodepool_*``, v0.31 and earlier
  ``karpenter_provisioner_*`` with label ``provisioner``. Scraped from the controller's
  Service (kube-prometheus ServiceMonitor target labels: ``job, namespace, pod, container,
  endpoint, instance, service``).
* cluster-autoscaler (kubernetes/autoscaler ``cluster-autoscaler/metrics/metrics.go``, tag
  cluster-autoscaler-1.36.1): ``cluster_autoscaler_node_group_max_count{node_group}`` (nodes;
  only with ``--emit-per-nodegroup-metrics``), ``cluster_autoscaler_max_nodes_count`` (no
  labels), ``cluster_autoscaler_cpu_limits_cores`` and ``cluster_autoscaler_memory_limits_bytes``
  with ``direction`` = ``minimum`` | ``maximum``. On EKS the node group id is the
  Auto Scaling group's name (``eks-<nodegroup>-<uuid>``).
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["KARPENTER_NAMES", "write_karpenter", "write_cluster_autoscaler", "node_group_id", "karpenter_limits",
           "write_autoscaler"]

GIB = 2**30
#: Karpenter's spellings by version: (limit, usage, object label).
KARPENTER_NAMES = {
    "v1": ("karpenter_nodepools_limit", "karpenter_nodepools_usage", "nodepool"),
    "v0.32": ("karpenter_nodepool_limit", "karpenter_nodepool_usage", "nodepool"),
    "v0.31": ("karpenter_provisioner_limit", "karpenter_provisioner_usage", "provisioner"),
}


def node_group_id(cluster: str, pool: str) -> str:
    """An EKS managed node group's Auto Scaling group name: ``eks-<nodegroup>-<uuid>``."""
    h = f"{zlib.crc32(f'{cluster}/{pool}'.encode()):08x}"
    return f"eks-{pool}-{h[:4]}{h[4:]}-{h[:4]}-{h[4:8]}-{h[2:6]}-{h}{h[:4]}"


def _target(job: str, namespace: str, pod: str, ip: str, port: int, service: str, container: str) -> dict[str, str]:
    return {"container": container, "endpoint": "http-metrics", "instance": f"{ip}:{port}", "job": job,
            "namespace": namespace, "pod": pod, "service": service}


def write_karpenter(w, grid: np.ndarray, nodes: list, ext: dict, limits: dict[str, dict[str, tuple[float, float]]],
                    raise_at: int, spelling: str = "v1", offset: int = 17) -> None:
    """Karpenter's NodePool limits and usage. ``limits``: pool -> resource_type -> (value
    before, value from grid index ``raise_at``) in Karpenter's units (cores, bytes); usage
    is the capacity (catalog vCPU, memory) of the pool's live nodes. ``nodes``: the fleet's
    :class:`pipelines.testing.kubefleet.Node` objects of this cluster."""
    limit_name, usage_name, label = KARPENTER_NAMES[spelling]
    tg = _target("karpenter", "kube-system", "karpenter-6c9f8d7b5d-x2m4q", "10.1.9.17", 8080, "karpenter", "controller")
    w.family(limit_name, "gauge")
    for pool, res in sorted(limits.items()):
        for rtype, (before, after) in sorted(res.items()):
            values = np.where(np.arange(len(grid)) >= raise_at, after, before)
            w.series(limit_name, {label: pool, "resource_type": rtype, **tg, **ext}, values, offset)
    w.family(usage_name, "gauge")
    for pool in sorted(limits):
        mine = [nd for nd in nodes if nd.pool == pool]
        cpu = sum(nd.alive * float(nd.spec[0]) for nd in mine)
        mem = sum(nd.alive * float(nd.spec[1]) * GIB for nd in mine)
        count = sum(nd.alive.astype(float) for nd in mine)
        for rtype, values in (("cpu", cpu), ("memory", mem), ("nodes", count)):
            w.series(usage_name, {label: pool, "resource_type": rtype, **tg, **ext}, np.asarray(values, dtype=float), offset)


def write_cluster_autoscaler(w, grid: np.ndarray, cluster: str, ext: dict, max_nodes: dict[str, int],
                             cores_total: float, memory_total_bytes: float, per_node_group: bool = True,
                             offset: int = 23) -> None:
    """cluster-autoscaler's limits: per node group (``max_nodes``: pool -> max size) when
    ``--emit-per-nodegroup-metrics`` is on, and the cluster-wide ones always."""
    tg = _target("cluster-autoscaler", "kube-system", "cluster-autoscaler-aws-cluster-autoscaler-5b8d4c7f9-k7wzp",
                 "10.0.9.23", 8085, "cluster-autoscaler-aws-cluster-autoscaler", "aws-cluster-autoscaler")
    n = len(grid)
    if per_node_group:
        for name in ("cluster_autoscaler_node_group_max_count", "cluster_autoscaler_node_group_min_count"):
            w.family(name, "gauge")
            for pool, mx in sorted(max_nodes.items()):
                v = float(mx) if name.endswith("max_count") else 1.0
                w.series(name, {"node_group": node_group_id(cluster, pool), **tg, **ext}, np.full(n, v), offset)
    w.family("cluster_autoscaler_max_nodes_count", "gauge")
    w.series("cluster_autoscaler_max_nodes_count", {**tg, **ext}, np.full(n, float(sum(max_nodes.values()))), offset)
    for name, top in (("cluster_autoscaler_cpu_limits_cores", cores_total),
                      ("cluster_autoscaler_memory_limits_bytes", memory_total_bytes)):
        w.family(name, "gauge")
        w.series(name, {"direction": "maximum", **tg, **ext}, np.full(n, float(top)), offset)
        w.series(name, {"direction": "minimum", **tg, **ext}, np.zeros(n), offset)


#: Karpenter limits of the fixture: the first pool's peak capacity times these, before and
#: after the raise half-way through the window.
LIMIT_FACTORS = (1.25, 1.6)


def karpenter_limits(cd) -> dict[str, dict[str, tuple[float, float]]]:
    """The fixture's NodePool limits (cores, bytes) for the first pool of ``cd``'s cluster."""
    pool = cd.spec.pools[0].name
    mine = [nd for nd in cd.nodes if nd.pool == pool]
    cpu = float(np.max(sum(nd.alive * float(nd.spec[0]) for nd in mine)))
    mem = float(np.max(sum(nd.alive * float(nd.spec[1]) for nd in mine)))
    return {pool: {"cpu": tuple(float(np.ceil(cpu * f)) for f in LIMIT_FACTORS),
                   "memory": tuple(float(np.ceil(mem * f)) * GIB for f in LIMIT_FACTORS)}}


def cluster_autoscaler_max(cd) -> dict[str, int]:
    """The fixture's node group max sizes: each pool's node count plus two."""
    return {p.name: p.nodes + 2 for p in cd.spec.pools}


def write_autoscaler(w, fleet, cd, ext: dict) -> None:
    """What ``cd.spec.autoscaler`` exports (:class:`pipelines.testing.kubefleet.ClusterSpec`)."""
    kind = cd.spec.autoscaler
    if not kind:
        return
    if kind.startswith("karpenter"):
        spelling = kind.split("-", 1)[1] if "-" in kind else "v1"
        write_karpenter(w, fleet.grid, cd.nodes, ext, karpenter_limits(cd), len(fleet.grid) // 2, spelling)
        return
    mx = cluster_autoscaler_max(cd)
    cores = sum(float(nd.spec[0]) for nd in cd.nodes) * 2
    write_cluster_autoscaler(w, fleet.grid, cd.spec.name, ext, mx, cores, cores * 4 * GIB,
                             per_node_group=kind == "cluster-autoscaler")
