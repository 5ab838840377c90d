"""A Kubernetes fleet as a real monitoring stack stores it, with its ground truth.

Series have the shapes real exporters and ServiceMonitors produce (docs/research/real-stacks.md):

* node-exporter names and label names from a real exporter (:mod:`.node_exporter`): all
  CPU modes per CPU, meminfo, filesystem and uname labels; scrape labels of
  kube-prometheus-stack (``instance="<host IP>:9100"``) or kube-prometheus
  (``instance="<node>"``); **no** ``node`` label (section 4);
* kube-state-metrics v2 series and label order (``namespace, pod, uid`` first; node
  labels only when allow-listed, sanitised to ``label_*``; target labels added through
  ``honorLabels: true``; kube-prometheus' labeldrop), completed and failed pods, an
  unscheduled pending pod, pods recreated with a new ``uid`` (sections 1, 4.3);
* cAdvisor through the kubelet: container, pod-cgroup (``container=""``), pause
  (``container="POD"``) and root-cgroup series, ``cpu="total"``, a container restart
  (new cgroup ``id``, counter from 0) (section 3.1);
* kubelet volume stats of a ReadWriteMany claim from every kubelet that mounts it (3.2);
* Rook/Ceph pool stats with ``ceph_pool_metadata`` names (section 6);
* ``cluster`` and the replica labels as external labels (what Thanos or Mimir show);
  two HA replicas scraping at their own offsets; 5-minute samples, each target at its own
  scrape offset; a node reboot (counter reset), a spot node replaced mid-window, a day
  with two kube-state-metrics pods.

The truth is computed from the same arrays on the 5-minute grid: per pool and hour, the
highest 5-minute value within ``(hour, hour + 1h]``, for capacity, usage, requests, pods and
storage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .autoscalers import write_autoscaler
from .node_exporter import NodeExporterTemplate, node_exporter_template

__all__ = ["PoolSpec", "ClusterSpec", "FleetSpec", "Fleet", "build_fleet", "INSTANCE_TYPES", "TEST_CATALOG_TYPES",
           "default_spec", "write_group"]

GIB = 2**30
TIB = 2**40
#: name -> (vcpu, memory GiB, allocatable cpu, allocatable memory GiB, max pods): EKS-like allocatable.
INSTANCE_TYPES = {
    "m6i.large": (2, 8, 1.93, 7.06, 29),
    "c6i.large": (2, 4, 1.93, 3.30, 29),
    "r6i.large": (2, 16, 1.93, 14.6, 29),
    "n2-standard-2": (2, 8, 1.93, 5.94, 110),
    "Standard_D2s_v5": (2, 8, 1.90, 5.50, 30),
}
#: Catalog entries (capplan's instances.yaml format) for the types above, for test sites.
TEST_CATALOG_TYPES = """\
  - {name: m6i.large, vcpu: 2, memory_gib: 8, max_pods: 29, on_demand_hourly_usd: 0.096, spot_discount_pct: 62, reserved_discount_pct: 37}
  - {name: c6i.large, vcpu: 2, memory_gib: 4, max_pods: 29, on_demand_hourly_usd: 0.085, spot_discount_pct: 65, reserved_discount_pct: 37}
  - {name: r6i.large, vcpu: 2, memory_gib: 16, max_pods: 29, on_demand_hourly_usd: 0.126, spot_discount_pct: 60, reserved_discount_pct: 37}
  - {name: n2-standard-2, vcpu: 2, memory_gib: 8, max_pods: 110, on_demand_hourly_usd: 0.097, spot_discount_pct: 60, reserved_discount_pct: 37}
  - {name: Standard_D2s_v5, vcpu: 2, memory_gib: 8, max_pods: 30, on_demand_hourly_usd: 0.096, spot_discount_pct: 60, reserved_discount_pct: 37}
"""


def shape(instance_type: str) -> tuple:
    """The :data:`INSTANCE_TYPES` row of ``instance_type``; a name not listed there (a test's
    hostile label value) has the shape of ``m6i.large``."""
    return INSTANCE_TYPES.get(instance_type, INSTANCE_TYPES["m6i.large"])


BUSY_MODES = {"user": 0.70, "system": 0.20, "softirq": 0.07, "nice": 0.02, "irq": 0.01}


@dataclass(frozen=True)
class PoolSpec:
    name: str
    nodes: int
    instance_types: tuple[str, ...] = ("m6i.large",)
    spot: str = "no"  # no | yes | mixed


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    provider: str  # eks | karpenter | gke | aks | kubeadm (self-managed: pools by KUBEADM_POOL_LABEL, a control-plane pool by role)
    style: str = "kps"  # kps (kube-prometheus-stack) | kp (kube-prometheus)
    pools: tuple[PoolSpec, ...] = ()
    replicas: int = 1
    allowlist: bool = True
    ksm_copies: int = 1  # 2: kube-state-metrics runs twice for the whole window
    ksm_rollout_day: int | None = None  # a day (index) with two kube-state-metrics pods
    replace_node: bool = False
    reboot_node: bool = False
    pause_containers: bool = False
    completed_pods: bool = True
    pvcs: bool = False
    ceph: bool = False
    #: kube-prometheus-stack's recording rules evaluated from this day (index) on; None: none
    #: (:mod:`pipelines.io.sources.mixin_rules`; the day a team enabled the chart's default rules, or upgraded)
    rules_since_day: int | None = None
    #: capplan's pool rules (:mod:`pipelines.io.sources.pool_rules`) evaluated from this day
    #: (index) on, over the raw and the mixins' recorded series; needs ``rules_since_day``
    pool_rules_since_day: int | None = None
    #: the autoscaler whose limits the cluster exports (:mod:`pipelines.testing.autoscalers`):
    #: karpenter | karpenter-v0.31 (NodePool limits on the first pool, raised half-way) |
    #: cluster-autoscaler (every node group's max size) | cluster-autoscaler-wide (only the
    #: cluster-wide limits: no --emit-per-nodegroup-metrics); None: no autoscaler metrics
    autoscaler: str | None = None


@dataclass(frozen=True)
class FleetSpec:
    as_of: dt.date
    days: int
    clusters: tuple[ClusterSpec, ...]
    seed: int = 11
    #: data after as_of midnight (a monthly run starts after midnight)
    after_s: int = 3600
    #: seconds between scrapes (and between the truth's grid points)
    scrape_s: int = 300
    #: how often the Prometheus evaluates its recording rules (prometheus-operator: 30s)
    rules_eval_s: int = 30

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> "FleetSpec":
        d = json.loads(text)
        clusters = tuple(ClusterSpec(**{**c, "pools": tuple(PoolSpec(**{**p, "instance_types": tuple(p["instance_types"])})
                                                              for p in c["pools"])}) for c in d["clusters"])
        return cls(dt.date.fromisoformat(d["as_of"]), d["days"], clusters, d["seed"], d["after_s"], d.get("scrape_s", 300),
                   d.get("rules_eval_s", 30))


def default_spec(as_of: dt.date, days: int = 23) -> FleetSpec:
    """The main test fleet: an EKS cluster (managed node groups, kube-prometheus-stack, two
    HA replicas, PVCs) and a Karpenter cluster (kube-prometheus, Rook/Ceph)."""
    return FleetSpec(as_of, days, (
        ClusterSpec("east", "eks", "kps", (PoolSpec("ng-general", 3, ("m6i.large",)),
                                          PoolSpec("ng-batch", 3, ("c6i.large",), "yes")),
                    replicas=2, ksm_rollout_day=days // 2, replace_node=True, reboot_node=True, pause_containers=True,
                    pvcs=True),
        ClusterSpec("west", "karpenter", "kp", (PoolSpec("default", 4, ("c6i.large", "m6i.large"), "mixed"),
                                               PoolSpec("system", 2, ("r6i.large",))), ceph=True),
    ))


# ---------------------------------------------------------------------------------------
@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    owner: tuple[str, str]  # created_by_kind, created_by_name
    containers: dict[str, tuple[float, float]]  # container -> (cpu cores, memory bytes) requests
    #: per grid point: node name ("" unscheduled), phase ("" = the pod does not exist)
    node: np.ndarray
    phase: np.ndarray
    host_network: bool = False
    cpu_share: float = 0.0  # share of its node's usage (cAdvisor)
    restart_at: int | None = None  # container restart (new cgroup id, counter from 0)


@dataclass
class Node:
    cluster: str
    pool: str
    name: str
    ip: str
    instance_type: str
    zone: str
    spot: bool
    alive: np.ndarray  # bool per grid point
    cpu: np.ndarray  # busy cores per grid point (0 when down)
    mem: np.ndarray  # used bytes
    up: np.ndarray  # node-exporter answers (False while rebooting)
    boot: int = -1  # grid index of a reboot (counters restart)

    @property
    def spec(self) -> tuple:
        return shape(self.instance_type)


@dataclass
class ClusterData:
    spec: ClusterSpec
    nodes: list[Node]
    pods: list[Pod]
    pvcs: list[dict] = field(default_factory=list)
    ceph: dict = field(default_factory=dict)


@dataclass
class Fleet:
    spec: FleetSpec
    grid: np.ndarray  # unix seconds, every 5 minutes
    clusters: list[ClusterData]
    template: NodeExporterTemplate

    @property
    def step(self) -> int:
        return self.spec.scrape_s

    @property
    def window_end(self) -> int:
        return int(pd.Timestamp(self.spec.as_of, tz="UTC").timestamp())

    def rules_start(self, ci: int, pool_rules: bool = False) -> int | None:
        """Unix time from which cluster ``ci``'s recording rules (``pool_rules``: capplan's
        pool rules) have been evaluated (None: never)."""
        cs = self.spec.clusters[ci]
        day = cs.pool_rules_since_day if pool_rules else cs.rules_since_day
        return None if day is None else self.window_end - self.spec.days * 86400 + day * 86400

    def replica_labels(self, ci: int, replica: int) -> dict[str, str]:
        """The external labels of replica ``replica`` of cluster ``ci``'s Prometheus."""
        cs = self.spec.clusters[ci]
        ext = {"cluster": cs.name}
        if cs.replicas > 1:
            ext |= {"prometheus": "monitoring/kube-prometheus-stack-prometheus",
                    "prometheus_replica": f"prometheus-kube-prometheus-stack-prometheus-{replica}"}
        return ext

    # -- truth -----------------------------------------------------------------------
    def _pool_grid(self) -> dict[tuple, np.ndarray]:
        out: dict[tuple, np.ndarray] = {}
        n = len(self.grid)

        def add(key, arr):
            out[key] = out.get(key, np.zeros(n)) + arr

        for cd in self.clusters:
            c = cd.spec.name
            for nd in cd.nodes:
                ga, ma, pa = nd.spec[2], nd.spec[3] * GIB, nd.spec[4]
                add((c, nd.pool, "cpu", "usage"), nd.cpu)
                add((c, nd.pool, "memory", "usage"), nd.mem)
                add((c, nd.pool, "cpu", "capacity"), ga * nd.alive)
                add((c, nd.pool, "memory", "capacity"), ma * nd.alive)
                add((c, nd.pool, "pods", "capacity"), pa * nd.alive)
            pool_of = {nd.name: nd.pool for nd in cd.nodes}
            for p in cd.pods:
                active = np.isin(p.phase, ("Pending", "Running")) & (p.node != "")
                for pool in {pool_of[x] for x in set(p.node[active])}:
                    on = active & np.isin(p.node, [x for x, q in pool_of.items() if q == pool])
                    add((c, pool, "cpu", "requests"), on * sum(r[0] for r in p.containers.values()))
                    add((c, pool, "memory", "requests"), on * sum(r[1] for r in p.containers.values()))
                    add((c, pool, "pods", "requests"), on.astype(float))
            for sc in {x["storageclass"] for x in cd.pvcs}:
                for kind, col in (("usage", "used"), ("capacity", "capacity")):
                    add((c, f"sc:{sc}", "storage", kind), sum(x[col] * x["mounted"] for x in cd.pvcs if x["storageclass"] == sc))
            for pool, d in cd.ceph.get("pools", {}).items():
                add((c, f"ceph:{pool}", "storage", "usage"), d["stored"])
                add((c, f"ceph:{pool}", "storage", "capacity"), d["stored"] + d["max_avail"])
        return out

    def truth_hourly(self) -> pd.DataFrame:
        """``cluster, pool, resource, kind, ts, value``: per hour ``ts``, the highest
        5-minute value in ``[ts, ts + 1h)`` (what capplan stores for a pool). A grid value
        holds for its 5 minutes; the scrapes in them read it."""
        start = self.window_end - self.spec.days * 86400
        hours = np.arange(start, self.window_end, 3600)
        idx = ((hours[:, None] + self.step * np.arange(0, 3600 // self.step)[None, :]) - self.grid[0]) // self.step
        rows = []
        for key, arr in self._pool_grid().items():
            ok = idx[:, -1] < len(arr)
            vals = arr[idx[ok]].max(axis=1)
            rows.append(pd.DataFrame({"cluster": key[0], "pool": key[1], "resource": key[2], "kind": key[3],
                                      "ts": pd.to_datetime(hours[ok], unit="s", utc=True), "value": vals}))
        return pd.concat(rows, ignore_index=True)

    def truth_daily(self) -> pd.DataFrame:
        """Per pool, resource, kind and day: ``max`` and ``mean`` of :meth:`truth_hourly`."""
        h = self.truth_hourly()
        h["day"] = h["ts"].dt.floor("D")
        out = h.groupby(["cluster", "pool", "resource", "kind", "day"])["value"].agg(["max", "mean"]).reset_index()
        return out[(out["max"] > 0) | (out["kind"] != "usage")]

    def inventory(self) -> pd.DataFrame:
        """Nodes alive at the end of the window, as capplan's inventory should list them."""
        rows = []
        end_i = int((self.window_end - 1 - self.grid[0]) // self.step)
        for cd in self.clusters:
            for nd in cd.nodes:
                if nd.alive[end_i]:
                    s = nd.spec
                    rows.append({"cluster": cd.spec.name, "pool": nd.pool, "node": nd.name, "instance_type": nd.instance_type,
                                 "zone": nd.zone, "capacity_type": "spot" if nd.spot else "on-demand", "cpu_cores": s[2],
                                 "memory_bytes": s[3] * GIB, "pods": float(s[4])})
        return pd.DataFrame(rows)

    def namespace_usage_truth(self, cluster: str, namespace: str) -> np.ndarray:
        """cAdvisor container CPU of a namespace per grid point (app containers only)."""
        cd = next(c for c in self.clusters if c.spec.name == cluster)
        nodes = {nd.name: nd for nd in cd.nodes}
        out = np.zeros(len(self.grid))
        for p in cd.pods:
            if p.namespace != namespace or not p.cpu_share:
                continue
            for name, nd in nodes.items():
                on = (p.node == name) & (p.phase == "Running")
                out += on * nd.cpu * p.cpu_share
        return out


def _h(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def _smooth(rng: np.random.Generator, n: int, sd: float, per_hour: int = 12) -> np.ndarray:
    """Noise drawn hourly and interpolated to the grid (load is autocorrelated)."""
    knots = rng.normal(0, sd, n // per_hour + 2)
    return np.interp(np.arange(n) / per_hour, np.arange(len(knots)), knots)


def _node_name(provider: str, cluster: str, pool: str, i: int, ip: str) -> str:
    if provider in ("eks", "karpenter"):
        region = {"east": "ec2.internal"}.get(cluster, f"{cluster}.compute.internal")
        return f"ip-{ip.replace('.', '-')}.{region}"
    if provider == "kubeadm":
        return f"{cluster}-{pool}-{i}"
    if provider == "gke":
        return f"gke-{cluster}-{pool}-{_h(cluster, pool) % 0xffffffff:08x}-{_h(i) % 36**4:04x}"
    return f"aks-{pool}-{_h(cluster, pool) % 10**8:08d}-vmss{i:06x}"


def _pod_name(base: str, *seed) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    h = _h(base, *seed)
    suffix = "".join(alphabet[(h >> (5 * k)) % len(alphabet)] for k in range(5))
    return f"{base}-{suffix}"


def build_fleet(spec: FleetSpec, template: NodeExporterTemplate | None = None) -> Fleet:
    """Generate every node, pod, volume and pool of ``spec`` on a 5-minute grid (seeded)."""
    template = template or node_exporter_template()
    end = int(pd.Timestamp(spec.as_of, tz="UTC").timestamp()) + spec.after_s
    start = int(pd.Timestamp(spec.as_of, tz="UTC").timestamp()) - spec.days * 86400 - 3600
    step = spec.scrape_s
    per_hour = 3600 // step
    grid = np.arange(start, end, step)
    n = len(grid)
    gap = max(1, 600 // step)  # ten minutes
    hours = (grid // 3600) % 24
    diurnal = 1 + 0.25 * np.sin(2 * np.pi * (hours + (grid % 3600) / 3600 - 8) / 24)
    clusters = []
    for ci, cs in enumerate(spec.clusters):
        rng = np.random.default_rng(spec.seed + 101 * ci)
        trend = 1 + 0.25 * np.linspace(0, 1, n)
        nodes: list[Node] = []
        pods: list[Pod] = []
        ip_n = 10
        for pi, ps in enumerate(cs.pools):
            for i in range(ps.nodes + (1 if (cs.replace_node and ps.spot == "yes" and pi == 1) else 0)):
                ip = f"10.{ci}.{pi + 1}.{ip_n}"
                ip_n += 7
                itype = ps.instance_types[i % len(ps.instance_types)]
                spot = ps.spot == "yes" or (ps.spot == "mixed" and i % 2 == 0)
                alive = np.ones(n, bool)
                replaced = cs.replace_node and ps.spot == "yes" and pi == 1
                if replaced and i == 0:
                    alive[n // 3:] = False  # spot interruption
                if replaced and i == ps.nodes:
                    alive[: n // 3 + gap] = False  # its replacement joins 10 minutes later
                vcpu = shape(itype)[0]
                base = rng.uniform(0.45, 0.9) * vcpu / 2
                cpu = np.clip(base * diurnal * trend * (1 + _smooth(rng, n, 0.03, per_hour)), 0.05, 0.85 * vcpu) * alive
                mem_total = shape(itype)[1] * GIB
                mem = np.clip(mem_total * rng.uniform(0.3, 0.45) * (0.9 + 0.1 * diurnal) * trend
                              * (1 + _smooth(rng, n, 0.01, per_hour)), 0, 0.9 * mem_total) * alive
                up = alive.copy()
                nd = Node(cs.name, ps.name, _node_name(cs.provider, cs.name, ps.name, len(nodes), ip), ip, itype,
                          f"{'us-east-1' if ci == 0 else 'us-west-2'}{'abc'[i % 3]}", spot, alive, cpu, mem, up)
                if cs.reboot_node and pi == 0 and i == 0:
                    nd.boot = n // 2  # a reboot: down for 10 minutes, counters from 0 after
                    nd.up[nd.boot - gap: nd.boot] = False
                    nd.cpu[nd.boot - gap: nd.boot] = 0
                    nd.mem[nd.boot - gap: nd.boot] = 0
                nodes.append(nd)
        _add_pods(cs, nodes, pods, n, rng, gap)
        cd = ClusterData(cs, nodes, pods)
        if cs.pvcs:
            cd.pvcs = _pvcs(cs, nodes, n, rng, per_hour)
        if cs.ceph:
            cd.ceph = _ceph(n, rng, per_hour)
        clusters.append(cd)
    return Fleet(spec, grid, clusters, template)


def _add_pods(cs: ClusterSpec, nodes: list[Node], pods: list[Pod], n: int, rng: np.random.Generator, gap: int) -> None:
    """Per node a node-exporter pod (DaemonSet) and an app pod (one Deployment per pool,
    rolled out once with a 10-minute surge; a pod whose spot node is interrupted is
    recreated and stays Pending until the replacement node joins); completed, failed
    and unscheduled pods."""
    k = np.arange(n)
    rollout = n // 2 + 36
    for nd in nodes:
        name = "node-exporter" if cs.style == "kp" else "kube-prometheus-stack-prometheus-node-exporter"
        pods.append(Pod("monitoring", _pod_name(name, nd.name), f"{_h('ne', nd.name):08x}-ne", ("DaemonSet", name),
                        {"node-exporter": (0.1, 180 * 2**20)}, np.where(nd.alive, nd.name, ""),
                        np.where(nd.alive, "Running", ""), host_network=True))
    by_pool: dict[str, list[Node]] = {}
    for nd in nodes:
        by_pool.setdefault(nd.pool, []).append(nd)

    def add(rs: str, tag, req: float, mem: float, host: np.ndarray, live: np.ndarray, share: float, restart=None) -> None:
        if not live.any():
            return
        pods.append(Pod(ns, _pod_name(rs, *tag), f"{_h(rs, *tag):08x}-{'n' if rs == rs_new else 'o'}", ("ReplicaSet", rs),
                        {"app": (req, mem)}, np.where(live, host, ""),
                        np.where(live, np.where(host != "", "Running", "Pending"), ""), cpu_share=share, restart_at=restart))

    for pool, pool_nodes in by_pool.items():
        ns = "kube-system" if pool == "system" else "shop"
        deploy = "coredns" if pool == "system" else f"{pool}-web"
        rs_old, rs_new = f"{deploy}-{_h(deploy, 1) % 16**9:09x}", f"{deploy}-{_h(deploy, 2) % 16**9:09x}"
        req = float(rng.uniform(0.4, 0.7))
        replacement = next((x for x in pool_nodes if not x.alive[0]), None)
        for j, nd in enumerate(x for x in pool_nodes if x.alive[0]):
            share = float(rng.uniform(0.6, 0.8))
            old_live, new_live = k < rollout + gap, k >= rollout  # 10 minutes with both (maxSurge)
            if nd.alive[-1]:
                host = np.where(nd.alive, nd.name, "")
                add(rs_old, (j,), req, req * 1.6 * GIB, host, old_live, share, n // 4 if j == 0 else None)
            else:  # spot interruption: deleted with the node, recreated Pending, then on the new node
                gone = int(np.argmin(nd.alive))
                add(rs_old, (j,), req, req * 1.6 * GIB, np.where(nd.alive, nd.name, ""), old_live & (k < gone), share)
                host = np.where(replacement.alive, replacement.name, "")
                add(rs_old, (j, "moved"), req, req * 1.6 * GIB, host, old_live & (k >= gone), share)
            add(rs_new, (j,), req * 1.2, req * 1.9 * GIB, host, new_live, share)
    if cs.completed_pods:
        host = next(nd for nd in nodes if nd.alive.all())
        on = np.full(n, host.name, dtype="<U80")
        pods.append(Pod("batch", _pod_name("report-28911230", cs.name), "c0ffee00-done", ("Job", "report-28911230"),
                        {"report": (1.5, 2 * GIB)}, on, np.full(n, "Succeeded", dtype="<U12")))
        pods.append(Pod("batch", _pod_name("import-28911231", cs.name), "c0ffee01-fail", ("Job", "import-28911231"),
                        {"import": (0.8, 1 * GIB)}, on, np.full(n, "Failed", dtype="<U12")))
        pods.append(Pod("shop", _pod_name("bigjob-7f9c", cs.name), "c0ffee02-pend", ("Job", "bigjob"),
                        {"bigjob": (16.0, 64 * GIB)}, np.full(n, "", dtype="<U80"), np.full(n, "Pending", dtype="<U12")))


def _pvcs(cs: ClusterSpec, nodes: list[Node], n: int, rng: np.random.Generator, per_hour: int) -> list[dict]:
    general = [nd for nd in nodes if nd.pool == cs.pools[0].name]
    grow = np.linspace(0, 1, n)
    out = []
    for j, (claim, sc, cap_gib, used0, used1, mounts) in enumerate((
            ("data-db-0", "gp3", 100, 40, 62, [general[0]]), ("data-db-1", "gp3", 100, 38, 59, [general[1 % len(general)]]),
            ("shared-assets", "nfs-client", 500, 200, 260, [general[0], general[-1]]))):
        used = (used0 + (used1 - used0) * grow + _smooth(rng, n, 0.2, per_hour)) * GIB
        out.append({"namespace": "shop", "claim": claim, "storageclass": sc, "capacity": np.full(n, cap_gib * GIB),
                    "used": used, "mounts": mounts, "mounted": np.ones(n), "volume": f"pvc-{_h(claim):08x}",
                    "access": "ReadWriteMany" if len(mounts) > 1 else "ReadWriteOnce"})
    return out


def _ceph(n: int, rng: np.random.Generator, per_hour: int) -> dict:
    grow = np.linspace(0, 1, n)
    raw_total = 30 * TIB
    stored = {".mgr": np.full(n, 5.0 * 2**20), "replicapool": (3.0 + 1.2 * grow + 0.01 * _smooth(rng, n, 1, per_hour)) * TIB,
              "ec-data": (6.0 + 2.0 * grow) * TIB}
    factor = {".mgr": 3.0, "replicapool": 3.0, "ec-data": 1.5}
    raw_used = sum(stored[p] * factor[p] for p in stored)
    free = (raw_total - raw_used) * 0.95  # full ratio
    pools = {p: {"id": i + 1, "stored": stored[p], "max_avail": free / factor[p],
                 "type": "erasure" if p == "ec-data" else "replicated",
                 "description": "ec:4+2" if p == "ec-data" else "replica:3"} for i, p in enumerate(stored)}
    return {"pools": pools, "raw_total": raw_total, "raw_used": raw_used}


# ---- OpenMetrics ------------------------------------------------------------------------
def _om_value(v: str) -> str:
    """A label value as OpenMetrics text writes it: backslash, double quote and line feed
    escaped (OpenMetrics 1.0 "ABNF": ``escaped-char = "\\" / "\\n" / DQUOTE``)."""
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _lab(d: dict) -> str:
    return "{" + ",".join(f'{k}="{_om_value(v)}"' for k, v in d.items() if v not in ("", None)) + "}"


class _Writer:
    """OpenMetrics text, one family at a time (what promtool backfills)."""

    def __init__(self, fh, grid: np.ndarray):
        self.fh, self.grid = fh, grid
        self._ts: dict[int, list[str]] = {}
        self.samples = 0

    def ts(self, offset: int) -> list[str]:
        if offset not in self._ts:
            self._ts[offset] = [str(int(t)) for t in (self.grid + offset)]
        return self._ts[offset]

    def family(self, name: str, kind: str) -> None:
        self.fh.write(f"# TYPE {name[:-6] if kind == 'counter' and name.endswith('_total') else name} {kind}\n")

    def series(self, name: str, labels: dict, values, offset: int, mask: np.ndarray | None = None) -> None:
        ts = self.ts(offset)
        prefix = name + _lab(labels) + " "
        if np.isscalar(values):
            idx = np.flatnonzero(mask) if mask is not None else range(len(ts))
            text = repr(float(values)) + " "
            self.fh.write("".join([prefix + text + ts[i] + "\n" for i in idx]))
            self.samples += len(idx)
            return
        vals = np.asarray(values, dtype=float)
        idx = np.flatnonzero(mask) if mask is not None else np.arange(len(ts))
        strs = np.char.mod("%.10g", vals[idx]).tolist()
        self.fh.write("".join([prefix + v + " " + ts[i] + "\n" for v, i in zip(strs, idx.tolist())]))
        self.samples += len(idx)


def _offset(step: int, *key) -> int:
    """A target's scrape offset within the interval (Prometheus spreads targets)."""
    return 1 + _h(*key) % (step - 1)


def _counter(rate: np.ndarray, step: int, offset: int, start_value: float, reset_at: int = -1) -> np.ndarray:
    """Counter value at each sample (grid + offset): the integral of ``rate`` (constant per
    grid cell), from ``start_value``, restarting at 0 at grid index ``reset_at``."""
    cum = np.concatenate([[0.0], np.cumsum(rate[:-1] * step)]) + rate * offset
    if reset_at > 0:
        cum[reset_at:] -= cum[reset_at] - rate[reset_at] * offset
        return cum + np.where(np.arange(len(rate)) < reset_at, start_value, 0.0)
    return cum + start_value


def groups(spec: FleetSpec) -> list[tuple[int, int, int]]:
    """(cluster index, replica, part) triples: one OpenMetrics file and promtool run each.
    Part 0 holds node-exporter and cAdvisor, part 1 the rest (halves of similar size, so
    parallel workers finish together)."""
    return [(ci, r, part) for ci, cs in enumerate(spec.clusters) for r in range(cs.replicas) for part in (0, 1)]


def write_group(fleet: Fleet, ci: int, replica: int, path: Path, part: int | None = None) -> int:
    """Write what replica ``replica`` of cluster ``ci``'s Prometheus stored (``part`` 0 or
    1 of it, default both); returns the number of samples."""
    cd = fleet.clusters[ci]
    ext = fleet.replica_labels(ci, replica)
    rshift = 37 * replica  # each replica scrapes on its own schedule
    with open(path, "w") as fh:
        w = _Writer(fh, fleet.grid)
        if part in (None, 0):
            _write_node_exporter(w, fleet, cd, ext, rshift)
            _write_cadvisor(w, fleet, cd, ext, rshift)
        if part in (None, 1):
            _write_ksm(w, fleet, cd, ext, rshift)
            _write_kubelet(w, fleet, cd, ext, rshift)
            _write_ceph(w, fleet, cd, ext, rshift)
            write_autoscaler(w, fleet, cd, ext)
        fh.write("# EOF\n")
    return w.samples


def _targets(cs: ClusterSpec, nd: Node, ne_pod: str, job: str, path: str = "") -> dict:
    if job == "node-exporter":
        if cs.style == "kp":
            return {"container": "kube-rbac-proxy", "endpoint": "https", "instance": nd.name, "job": "node-exporter",
                    "namespace": "monitoring", "pod": ne_pod, "service": "node-exporter"}
        return {"container": "node-exporter", "endpoint": "http-metrics", "instance": f"{nd.ip}:9100", "job": "node-exporter",
                "namespace": "monitoring", "pod": ne_pod, "service": "kube-prometheus-stack-prometheus-node-exporter"}
    return {"endpoint": "https-metrics", "instance": f"{nd.ip}:10250", "job": "kubelet", "metrics_path": path,
            "namespace": "kube-system", "node": nd.name,
            "service": "kubelet" if cs.style == "kp" else "kube-prometheus-stack-kubelet"}


def _write_node_exporter(w: _Writer, fleet: Fleet, cd: ClusterData, ext: dict, rshift: int) -> None:
    t = fleet.template
    cs = cd.spec
    ne_pods = {p.node[np.flatnonzero(p.node != "")[0]]: p.name for p in cd.pods if p.owner[0] == "DaemonSet"}
    modes = t.cpu_modes
    w.family("node_cpu_seconds_total", "counter")
    for nd in cd.nodes:
        off = (_offset(fleet.step, cs.name, nd.name, "ne") + rshift) % fleet.step or 1
        tg = _targets(cs, nd, ne_pods[nd.name], "node-exporter")
        vcpu = nd.spec[0]
        shares = np.full(vcpu, 1.0 / vcpu) * (1 + 0.1 * np.linspace(-1, 1, vcpu))
        for cpu in range(vcpu):
            busy = nd.cpu * shares[cpu]
            rates = {m: busy * BUSY_MODES[m] for m in BUSY_MODES}
            rates["iowait"] = np.full(len(busy), 0.015)
            rates["steal"] = np.full(len(busy), 0.004)
            rates["idle"] = np.clip(1.0 - busy - 0.019, 0, None)
            for mode in modes:
                r = rates.get(mode, np.zeros(len(busy)))
                c = _counter(r, fleet.step, off, 1000.0 * (1 + cpu) * (1 + BUSY_MODES.get(mode, 0.5)), nd.boot)
                labels = {"container": tg["container"], "cpu": str(cpu), "endpoint": tg["endpoint"], "instance": tg["instance"],
                          "job": tg["job"], "mode": mode, "namespace": tg["namespace"], "pod": tg["pod"],
                          "service": tg["service"], **ext}
                w.series("node_cpu_seconds_total", labels, np.round(c, 2), off, nd.up)
    mem_total = {nd.name: nd.spec[1] * GIB for nd in cd.nodes}
    for name, get in (("node_memory_MemAvailable_bytes", lambda nd: mem_total[nd.name] - nd.mem),
                      ("node_memory_MemTotal_bytes", lambda nd: mem_total[nd.name])):
        w.family(name, "gauge")
        for nd in cd.nodes:
            off = (_offset(fleet.step, cs.name, nd.name, "ne") + rshift) % fleet.step or 1
            tg = _targets(cs, nd, ne_pods[nd.name], "node-exporter")
            v = get(nd)
            w.series(name, {**tg, **ext}, v if np.isscalar(v) else np.round(v), off, nd.up)
    for name in ("node_filesystem_avail_bytes", "node_filesystem_size_bytes"):
        w.family(name, "gauge")
        for nd in cd.nodes:
            off = (_offset(fleet.step, cs.name, nd.name, "ne") + rshift) % fleet.step or 1
            tg = _targets(cs, nd, ne_pods[nd.name], "node-exporter")
            for fs in t.filesystems:
                fsl = dict(fs)
                fsl["device"] = "/dev/nvme0n1p1"
                fsl["fstype"] = "xfs"
                size = 80 * GIB
                v = size if name.endswith("size_bytes") else size * 0.6
                w.series(name, {**fsl, **tg, **ext}, v, off, nd.up)
    w.family("node_uname_info", "gauge")
    for nd in cd.nodes:
        off = (_offset(fleet.step, cs.name, nd.name, "ne") + rshift) % fleet.step or 1
        tg = _targets(cs, nd, ne_pods[nd.name], "node-exporter")
        uname = {k: "" for k in t.labels["node_uname_info"]}
        uname |= {"domainname": "(none)", "machine": "x86_64", "nodename": nd.name.split(".")[0],
                  "release": "6.1.134-152.225.amzn2023.x86_64", "sysname": "Linux",
                  "version": "#1 SMP PREEMPT_DYNAMIC Tue Apr 15 12:00:00 UTC 2025"}
        w.series("node_uname_info", {**{k: uname[k] for k in sorted(uname)}, **tg, **ext}, 1, off, nd.up)


def _write_cadvisor(w: _Writer, fleet: Fleet, cd: ClusterData, ext: dict, rshift: int) -> None:
    cs = cd.spec
    apps = [p for p in cd.pods if p.cpu_share]
    for metric in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes"):
        counter = metric.endswith("_total")
        w.family(metric, "counter" if counter else "gauge")
        cpu_l = {"cpu": "total"} if counter else {}
        for nd in cd.nodes:
            off = (_offset(fleet.step, cs.name, nd.name, "kubelet") + rshift) % fleet.step or 1
            # cAdvisor exposes namespace/pod/container on every series (empty for the root
            # cgroup), so with honorLabels the kubelet target adds no namespace
            tg = {k: v for k, v in _targets(cs, nd, "", "kubelet", "/metrics/cadvisor").items() if k != "namespace"}
            v = _counter(nd.cpu * 1.05, fleet.step, off, 5e5, nd.boot) if counter else nd.mem * 0.95
            w.series(metric, {**tg, **cpu_l, "id": "/", **ext}, np.round(v, 3), off, nd.up)
            for p in apps:
                on = (p.node == nd.name) & (p.phase == "Running") & nd.up
                if not on.any():
                    continue
                cg = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{p.uid.replace('-', '_')}.slice"
                usage = np.where(on, nd.cpu * p.cpu_share, 0.0)
                mem = nd.mem * p.cpu_share * 0.8
                segments = [(on, f"{_h(p.uid, nd.name):012x}")]
                if p.restart_at is not None:  # the container restarted: a new cgroup, its counter from 0
                    before = on & (np.arange(len(on)) < p.restart_at)
                    segments = [(before, f"{_h(p.uid, nd.name):012x}"), (on & ~before, f"{_h(p.uid, nd.name, 'r'):012x}")]
                for seg, cid in segments:
                    if not seg.any():
                        continue
                    v = _counter(np.where(seg, usage, 0.0), fleet.step, off, 0.0) if counter else mem
                    w.series(metric, {**tg, "container": "app", **cpu_l, "id": f"{cg}/cri-containerd-{cid}.scope",
                                      "image": f"registry.example.com/{p.namespace}/{p.owner[1]}:1.4.2", "name": cid,
                                      "namespace": p.namespace, "pod": p.name, **ext}, np.round(v, 3), off, seg)
                # the pod-level cgroup: container="" and image="" (Prometheus drops empty labels)
                pv = _counter(usage * 1.02, fleet.step, off, 0.0) if counter else mem * 1.05
                w.series(metric, {**tg, **cpu_l, "id": cg, "namespace": p.namespace, "pod": p.name, **ext},
                         np.round(pv, 3), off, on)
                if cs.pause_containers:  # the sandbox under dockershim: container="POD"
                    pz = _counter(np.where(on, 0.001, 0.0), fleet.step, off, 0.0) if counter else np.full(len(on), 7e5)
                    w.series(metric, {**tg, "container": "POD", **cpu_l, "id": f"{cg}/docker-{_h(p.uid, 'pause'):012x}",
                                      "image": "registry.k8s.io/pause:3.9", "name": f"k8s_POD_{p.name}",
                                      "namespace": p.namespace, "pod": p.name, **ext}, np.round(pz, 4), off, on)


def _ksm_targets(cs: ClusterSpec, copy: int, step: int) -> tuple[dict, int]:
    if cs.style == "kp":
        tg = {"container": "kube-rbac-proxy-main", "instance": f"10.244.{2 + copy}.7:8443", "job": "kube-state-metrics"}
    else:
        tg = {"container": "kube-state-metrics", "endpoint": "http", "instance": f"10.{copy}.3.15:8080", "job": "kube-state-metrics",
              "namespace": "monitoring", "pod": _pod_name(f"kube-prometheus-stack-kube-state-metrics-6d9c7b5f4{copy}", cs.name),
              "service": "kube-prometheus-stack-kube-state-metrics"}
    return tg, _offset(step, cs.name, "ksm", copy)


def _ksm_copies(fleet: Fleet, cs: ClusterSpec) -> list[tuple[dict, int, np.ndarray]]:
    n = len(fleet.grid)
    out = []
    for copy in range(cs.ksm_copies):
        tg, off = _ksm_targets(cs, copy, fleet.step)
        out.append((tg, off, np.ones(n, bool)))
    if cs.ksm_rollout_day is not None:  # a rolling update: the new pod runs a day before the old one goes
        day0 = int((fleet.window_end - fleet.spec.days * 86400 + cs.ksm_rollout_day * 86400 - fleet.grid[0]) // fleet.step)
        tg_old, off_old, _ = out[0]
        tg_new, off_new = _ksm_targets(cs, 5, fleet.step)
        old_mask = np.arange(n) < day0 + 86400 // fleet.step
        out[0] = (tg_old, off_old, old_mask)
        out.append((tg_new, off_new, np.arange(n) >= day0))
    return out


#: A self-managed cluster's own pool label; its control-plane nodes carry none, only the
#: kubeadm role label (``node-role.kubernetes.io/control-plane: ""``, which KSM exports as
#: ``kube_node_role{role="control-plane"}`` without any allowlist).
KUBEADM_POOL_LABEL = "node.example.com/pool"
CONTROL_PLANE_POOL = "control-plane"
#: A pool name for virtual-kubelet / Fargate-like nodes: no pool label, no instance type.
VIRTUAL_POOL = "virtual"

_PROVIDER_LABELS = {
    "kubeadm": lambda nd: {} if nd.pool in (CONTROL_PLANE_POOL, VIRTUAL_POOL) else {KUBEADM_POOL_LABEL: nd.pool},
    "eks": lambda nd: {"eks.amazonaws.com/capacityType": "SPOT" if nd.spot else "ON_DEMAND",
                       "eks.amazonaws.com/nodegroup": nd.pool},
    "karpenter": lambda nd: {"karpenter.sh/capacity-type": "spot" if nd.spot else "on-demand", "karpenter.sh/nodepool": nd.pool},
    "gke": lambda nd: {"cloud.google.com/gke-nodepool": nd.pool, **({"cloud.google.com/gke-spot": "true"} if nd.spot else {})},
    "aks": lambda nd: {"kubernetes.azure.com/agentpool": nd.pool,
                       "kubernetes.azure.com/scalesetpriority": "spot" if nd.spot else "regular"},
}
_PROVIDER_ID = {"eks": "aws:///{zone}/i-0{h:015x}", "karpenter": "aws:///{zone}/i-0{h:015x}",
                "gke": "gce://capplan-test/{zone}/{name}", "kubeadm": "", "aks": "azure:///subscriptions/0000/resourceGroups/mc/{name}"}


def _ksm_label(key: str) -> str:
    import re

    return "label_" + re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"[^a-zA-Z0-9_]", "_", key)).lower()


def _write_ksm(w: _Writer, fleet: Fleet, cd: ClusterData, ext: dict, rshift: int) -> None:
    cs = cd.spec
    copies = _ksm_copies(fleet, cs)

    def node_metric(name: str, nd: Node, labels: dict, value) -> None:
        for tg, off, mask in copies:
            o = (off + rshift) % fleet.step or 1
            # honorLabels: true: the target's labels fill what the metric does not have itself
            w.series(name, {**labels, **{k: v for k, v in tg.items() if k not in labels}, **ext}, value, o, nd.alive & mask)

    if cs.allowlist:  # without an allowlist KSM >= 2.10 does not export kube_node_labels at all
        w.family("kube_node_labels", "gauge")
        for nd in cd.nodes:
            k8s = {**_PROVIDER_LABELS[cs.provider](nd), "node.kubernetes.io/instance-type": nd.instance_type,
                   "topology.kubernetes.io/zone": nd.zone, "team": "payments"}
            allowed = {k: v for k, v in k8s.items() if k != "team"}  # 'team' is not allow-listed
            if nd.pool == VIRTUAL_POOL:
                del allowed["node.kubernetes.io/instance-type"]
            node_metric("kube_node_labels", nd, {"node": nd.name, **{_ksm_label(k): v for k, v in sorted(allowed.items())}}, 1)
    if cs.provider == "kubeadm":  # kube-state-metrics internal/store/node.go: kube_node_role from node-role.kubernetes.io/<role>
        w.family("kube_node_role", "gauge")
        for nd in cd.nodes:
            if nd.pool == CONTROL_PLANE_POOL:
                node_metric("kube_node_role", nd, {"node": nd.name, "role": "control-plane"}, 1)
    w.family("kube_node_info", "gauge")
    for nd in cd.nodes:
        pid = _PROVIDER_ID[cs.provider].format(zone=nd.zone, h=_h(nd.name), name=nd.name)
        node_metric("kube_node_info", nd, {"node": nd.name, "kernel_version": "6.1.134-152.225.amzn2023.x86_64",
                                           "os_image": "Amazon Linux 2023", "container_runtime_version": "containerd://1.7.27",
                                           "kubelet_version": "v1.31.7-eks-4", "kubeproxy_version": "deprecated",
                                           "provider_id": pid, "pod_cidr": "", "system_uuid": f"ec2{_h(nd.name, 'u'):08x}",
                                           "internal_ip": nd.ip}, 1)
    w.family("kube_node_status_allocatable", "gauge")
    for nd in cd.nodes:
        s = nd.spec
        for res, unit, v in (("cpu", "core", s[2]), ("ephemeral_storage", "byte", 76 * GIB), ("memory", "byte", round(s[3] * GIB)),
                             ("pods", "integer", s[4])):
            node_metric("kube_node_status_allocatable", nd, {"node": nd.name, "resource": res, "unit": unit}, v)

    def pod_metric(name: str, p: Pod, labels: dict, value, mask: np.ndarray) -> None:
        for tg, off, cmask in copies:
            o = (off + rshift) % fleet.step or 1
            base = {"namespace": p.namespace, "pod": p.name, "uid": p.uid}
            w.series(name, {**base, **labels, **{k: v for k, v in tg.items() if k not in base and k not in labels}, **ext},
                     value, o, mask & cmask)

    def segments(p: Pod):
        """(node, mask) while the pod exists; its node label changes when it is scheduled."""
        exists = p.phase != ""
        for node in dict.fromkeys(p.node[exists].tolist()):
            yield node, exists & (p.node == node)

    nodes = {nd.name: nd for nd in cd.nodes}
    w.family("kube_pod_info", "gauge")
    for p in cd.pods:
        for node, mask in segments(p):
            nd = nodes.get(node)
            pod_metric("kube_pod_info", p, {"host_ip": nd.ip if nd else "", "pod_ip": (nd.ip if p.host_network else
                       f"10.{100 + _h(p.uid) % 50}.{_h(p.uid, 1) % 250}.{_h(p.uid, 2) % 250}") if nd else "", "node": node,
                       "created_by_kind": p.owner[0], "created_by_name": p.owner[1], "priority_class": "",
                       "host_network": str(p.host_network).lower()}, 1, mask)
    w.family("kube_pod_status_phase", "gauge")
    for p in cd.pods:
        exists = p.phase != ""
        for phase in ("Failed", "Pending", "Running", "Succeeded", "Unknown"):
            pod_metric("kube_pod_status_phase", p, {"phase": phase}, (p.phase == phase).astype(float), exists)
    w.family("kube_pod_container_resource_requests", "gauge")
    for p in cd.pods:
        for node, mask in segments(p):
            for cname, (cpu, mem) in p.containers.items():
                for res, unit, v in (("cpu", "core", cpu), ("memory", "byte", round(mem))):
                    pod_metric("kube_pod_container_resource_requests", p, {"container": cname, "node": node, "resource": res,
                                                                           "unit": unit}, v, mask)
    if cd.pvcs:
        w.family("kube_persistentvolumeclaim_info", "gauge")
        n = len(fleet.grid)
        for x in cd.pvcs:
            for tg, off, cmask in copies:
                o = (off + rshift) % fleet.step or 1
                base = {"namespace": x["namespace"], "persistentvolumeclaim": x["claim"], "storageclass": x["storageclass"],
                        "volumename": x["volume"], "volumemode": "Filesystem"}
                w.series("kube_persistentvolumeclaim_info", {**base, **{k: v for k, v in tg.items() if k not in base}, **ext},
                         1, o, np.ones(n, bool) & cmask)


def _write_kubelet(w: _Writer, fleet: Fleet, cd: ClusterData, ext: dict, rshift: int) -> None:
    if not cd.pvcs:
        return
    cs = cd.spec
    for metric, col in (("kubelet_volume_stats_capacity_bytes", "capacity"), ("kubelet_volume_stats_used_bytes", "used")):
        w.family(metric, "gauge")
        for x in cd.pvcs:
            for nd in x["mounts"]:  # every kubelet that mounts the claim reports it
                off = (_offset(fleet.step, cs.name, nd.name, "kubelet") + rshift) % fleet.step or 1
                tg = _targets(cs, nd, "", "kubelet", "/metrics")
                labels = {"namespace": x["namespace"], "persistentvolumeclaim": x["claim"],
                          **{k: v for k, v in tg.items() if k != "namespace"}, **ext}
                w.series(metric, labels, np.round(x[col]), off, nd.up)


def _write_ceph(w: _Writer, fleet: Fleet, cd: ClusterData, ext: dict, rshift: int) -> None:
    if not cd.ceph:
        return
    cs = cd.spec
    off = (_offset(fleet.step, cs.name, "ceph") + rshift) % fleet.step or 1
    tg = {"container": "mgr", "endpoint": "http-metrics", "instance": "10.244.1.9:9283", "job": "rook-ceph-mgr",
          "namespace": "rook-ceph", "pod": "rook-ceph-mgr-a-5c7b9d8f6-xk2lp", "service": "rook-ceph-mgr"}
    pools = cd.ceph["pools"]
    w.family("ceph_pool_metadata", "gauge")
    for name, d in pools.items():
        w.series("ceph_pool_metadata", {"pool_id": str(d["id"]), "name": name, "type": d["type"], "description": d["description"],
                                        "compression_mode": "none", **tg, **ext}, 1, off)
    for metric, key in (("ceph_pool_stored", "stored"), ("ceph_pool_max_avail", "max_avail")):
        w.family(metric, "gauge")
        for name, d in pools.items():
            w.series(metric, {"pool_id": str(d["id"]), **tg, **ext}, np.round(d[key]), off)
    w.family("ceph_cluster_total_bytes", "gauge")
    w.series("ceph_cluster_total_bytes", {**tg, **ext}, float(cd.ceph["raw_total"]), off)
    w.family("ceph_cluster_total_used_raw_bytes", "gauge")
    w.series("ceph_cluster_total_used_raw_bytes", {**tg, **ext}, np.round(cd.ceph["raw_used"]), off)
