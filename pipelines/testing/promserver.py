"""A real Prometheus for tests: synthetic kube-state-metrics / node-exporter history written
as OpenMetrics, backfilled with promtool, served on 127.0.0.1 with a long retention."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
GIB = 2**30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PromFleet:
    """What was generated, for comparison with what capplan ingests."""

    ts: np.ndarray  # unix seconds, hourly
    nodes: pd.DataFrame  # cluster, pool, tier, zone, node, instance_type, cpu_cores, memory_bytes, pods
    cpu_usage: np.ndarray  # (nodes, steps) cores
    mem_usage: np.ndarray  # bytes
    cpu_requests: np.ndarray
    mem_requests: np.ndarray
    pods: np.ndarray
    storage_used: dict[str, np.ndarray]
    storage_capacity: dict[str, float]

    def pool_expected(self, cluster: str, pool: str, what: str, from_index: int = 0) -> np.ndarray:
        idx = np.flatnonzero(((self.nodes.cluster == cluster) & (self.nodes.pool == pool)).to_numpy())
        return getattr(self, what)[idx].sum(axis=0)[from_index:]


def make_fleet(as_of: dt.date, days: int = 180, seed: int = 11, clusters=("east", "west"), pools=("compute", "data"), per_pool: int = 3,
               cluster_names: dict[str, str] | None = None) -> PromFleet:
    rng = np.random.default_rng(seed)
    end = int(pd.Timestamp(as_of, tz="UTC").timestamp())
    ts = np.arange(end - days * 86400, end, 3600)
    rows = []
    for c in clusters:
        for p in pools:
            for i in range(per_pool):
                rows.append({"cluster": (cluster_names or {}).get(c, c), "pool": p, "tier": p, "zone": f"z{i % 3}", "node": f"{c}-{p}-{i}",
                             "instance_type": "c6i.2xlarge", "cpu_cores": 7.52, "memory_bytes": 14.4 * GIB, "pods": 110.0, "storage_bytes": 0.0})
    nodes = pd.DataFrame(rows)
    n, m = len(nodes), len(ts)
    hours = (ts // 3600) % 24
    shape = 1 + 0.2 * np.sin(2 * np.pi * (hours - 8) / 24)
    trend = 1 + 0.3 * np.linspace(0, 1, m)
    base = rng.uniform(1.5, 3.0, size=(n, 1))
    cpu = np.round(base * shape * trend * (1 + rng.normal(0, 0.03, (n, m))), 6)
    mem = np.round(cpu * 1.5 * GIB)
    creq = np.round(base * 1.4 * trend, 3)
    mreq = np.round(creq * 1.6 * GIB)
    pods = np.round(20 * trend * np.ones((n, 1)))
    used = {c: np.round((50 + 0.01 * np.arange(m)) * 2**40) for c in {r["cluster"] for r in rows}}
    cap = {c: float(100 * 2**40) for c in used}
    return PromFleet(ts, nodes, cpu, mem, creq, mreq, pods, used, cap)


def _labels(d: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in d.items()) + "}"


def write_openmetrics(fleet: PromFleet, path: Path, counter_reset_node: int | None = 0) -> None:
    """OpenMetrics text for promtool. The CPU counter of one node restarts at 0 midway."""
    with open(path, "w") as fh:
        def series(name: str, labels: dict, values: np.ndarray) -> None:
            lab = _labels(labels)
            fh.write("".join(f"{name}{lab} {v!r} {t}\n" for t, v in zip(fleet.ts.tolist(), values.tolist())))

        fh.write("# TYPE node_cpu_seconds_total counter\n")
        for i, r in enumerate(fleet.nodes.itertuples()):
            counter = np.cumsum(fleet.cpu_usage[i] * 3600.0)
            if counter_reset_node is not None and i == counter_reset_node:
                half = len(counter) // 2
                counter[half:] -= counter[half - 1]  # the exporter restarted: counting from 0 again
            series("node_cpu_seconds_total", {"cluster": r.cluster, "node": r.node, "cpu": "0", "mode": "user"}, counter)
        for name, values in (("node_memory_MemTotal_bytes", None), ("node_memory_MemAvailable_bytes", "avail"),
                             ("kubelet_running_pods", "pods")):
            fh.write(f"# TYPE {name} gauge\n")
            for i, r in enumerate(fleet.nodes.itertuples()):
                total = np.full(len(fleet.ts), 16 * GIB)
                v = total if values is None else (total - fleet.mem_usage[i] if values == "avail" else fleet.pods[i])
                series(name, {"cluster": r.cluster, "node": r.node}, v)
        fh.write("# TYPE kube_pod_container_resource_requests gauge\n")
        for i, r in enumerate(fleet.nodes.itertuples()):
            for res, unit, arr in (("cpu", "core", fleet.cpu_requests), ("memory", "byte", fleet.mem_requests)):
                series("kube_pod_container_resource_requests", {"cluster": r.cluster, "node": r.node, "namespace": "shop",
                       "pod": f"p-{r.node}", "container": "app", "resource": res, "unit": unit}, arr[i])
        fh.write("# TYPE kube_node_labels gauge\n")
        for r in fleet.nodes.itertuples():
            series("kube_node_labels", {"cluster": r.cluster, "node": r.node, "label_node_kubernetes_io_pool": r.pool,
                   "label_node_kubernetes_io_tier": r.tier, "label_topology_kubernetes_io_zone": r.zone,
                   "label_node_kubernetes_io_instance_type": r.instance_type}, np.ones(len(fleet.ts)))
        fh.write("# TYPE kube_node_status_allocatable gauge\n")
        for r in fleet.nodes.itertuples():
            for res, unit, v in (("cpu", "core", r.cpu_cores), ("memory", "byte", r.memory_bytes), ("pods", "integer", r.pods)):
                series("kube_node_status_allocatable", {"cluster": r.cluster, "node": r.node, "resource": res, "unit": unit}, np.full(len(fleet.ts), v))
        for name, get in (("ceph_cluster_total_used_bytes", lambda c: fleet.storage_used[c]), ("ceph_cluster_total_bytes", lambda c: np.full(len(fleet.ts), fleet.storage_capacity[c]))):
            fh.write(f"# TYPE {name} gauge\n")
            for c in fleet.storage_used:
                series(name, {"cluster": c}, get(c))
        fh.write("# EOF\n")


class PrometheusServer:
    """promtool backfill + prometheus on 127.0.0.1; stop() kills it."""

    def __init__(self, folder: Path, om_file: Path):
        self.folder = folder
        self.tsdb = folder / "tsdb"
        self.tsdb.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=720h", str(om_file), str(self.tsdb)],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"promtool failed: {r.stderr[-2000:]}")
        self.port = free_port()
        cfg = folder / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1h\n")
        self.log = open(folder / "prometheus.log", "w")
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={self.tsdb}",
                                      "--storage.tsdb.retention.time=3650d", f"--web.listen-address=127.0.0.1:{self.port}",
                                      "--query.lookback-delta=5m"], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("prometheus did not start: " + (folder / "prometheus.log").read_text()[-2000:])
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
