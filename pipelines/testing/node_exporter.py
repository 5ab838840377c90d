"""node-exporter's real metric and label names, for the Prometheus fixture.

:func:`node_exporter_template` runs Debian's ``prometheus-node-exporter`` once on
127.0.0.1 (a free port), reads ``/metrics`` and stops it; when the binary is not installed
it falls back to :data:`CAPTURED`, the same families captured from Debian's
prometheus-node-exporter 1.5.0 on this project's CI machine (2 CPUs). The fixture takes
the CPU modes, the filesystem and uname label names, and the meminfo metric names from it,
so its series are named exactly as a real exporter names them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["NodeExporterTemplate", "node_exporter_template", "parse_template", "CAPTURED", "NODE_EXPORTER"]

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")

#: The families the fixture uses, as Debian's prometheus-node-exporter 1.5.0 wrote them.
CAPTURED = """\
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1044.01
node_cpu_seconds_total{cpu="0",mode="iowait"} 3.16
node_cpu_seconds_total{cpu="0",mode="irq"} 0
node_cpu_seconds_total{cpu="0",mode="nice"} 1.98
node_cpu_seconds_total{cpu="0",mode="softirq"} 0.9
node_cpu_seconds_total{cpu="0",mode="steal"} 82.86
node_cpu_seconds_total{cpu="0",mode="system"} 192.84
node_cpu_seconds_total{cpu="0",mode="user"} 2870.08
node_cpu_seconds_total{cpu="1",mode="idle"} 733.86
node_cpu_seconds_total{cpu="1",mode="iowait"} 10.95
node_cpu_seconds_total{cpu="1",mode="irq"} 0
node_cpu_seconds_total{cpu="1",mode="nice"} 2.84
node_cpu_seconds_total{cpu="1",mode="softirq"} 7.2
node_cpu_seconds_total{cpu="1",mode="steal"} 81.49
node_cpu_seconds_total{cpu="1",mode="system"} 226.49
node_cpu_seconds_total{cpu="1",mode="user"} 3129.76
# HELP node_exporter_build_info A metric with a constant '1' value labeled by version, revision, branch, goversion from which node_exporter was built, and the goos and goarch for the build.
# TYPE node_exporter_build_info gauge
node_exporter_build_info{branch="debian/sid",goarch="amd64",goos="linux",goversion="go1.19.8",revision="1.5.0-1+b6",version="1.5.0"} 1
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 8.04050944e+10
# HELP node_filesystem_free_bytes Filesystem free space in bytes.
# TYPE node_filesystem_free_bytes gauge
node_filesystem_free_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 2.42013974528e+11
# HELP node_filesystem_size_bytes Filesystem size in bytes.
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 2.70553174016e+11
# HELP node_memory_Buffers_bytes Memory information field Buffers_bytes.
# TYPE node_memory_Buffers_bytes gauge
node_memory_Buffers_bytes 1.3791232e+07
# HELP node_memory_Cached_bytes Memory information field Cached_bytes.
# TYPE node_memory_Cached_bytes gauge
node_memory_Cached_bytes 2.022940672e+09
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 2.363932672e+10
# HELP node_memory_MemFree_bytes Memory information field MemFree_bytes.
# TYPE node_memory_MemFree_bytes gauge
node_memory_MemFree_bytes 2.1752815616e+10
# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 2.5276510208e+10
# HELP node_memory_Slab_bytes Memory information field Slab_bytes.
# TYPE node_memory_Slab_bytes gauge
node_memory_Slab_bytes 2.01613312e+08
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{domainname="(none)",machine="x86_64",nodename="vm",release="6.18.44-fc-v657",sysname="Linux",version="#1 SMP PREEMPT_DYNAMIC @0"} 1
"""

FAMILIES = ("node_cpu_seconds_total", "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes",
            "node_memory_MemFree_bytes", "node_memory_Buffers_bytes", "node_memory_Cached_bytes", "node_memory_Slab_bytes",
            "node_filesystem_size_bytes", "node_filesystem_avail_bytes", "node_filesystem_free_bytes", "node_uname_info")


@dataclass(frozen=True)
class NodeExporterTemplate:
    """Names taken from a real node-exporter."""

    version: str
    source: str  # "live" (ran the binary) | "captured"
    cpu_modes: tuple[str, ...]
    #: metric name -> its label names (without cpu/mode for the CPU counter)
    labels: dict
    #: label sets of node_filesystem_size_bytes (device, fstype, mountpoint)
    filesystems: tuple[tuple[tuple[str, str], ...], ...]
    types: dict
    #: the exposition text the names were taken from
    text: str = ""

    def has(self, name: str) -> bool:
        return name in self.types


def parse_template(text: str, source: str) -> NodeExporterTemplate:
    modes: list[str] = []
    labels: dict = {}
    types: dict = {}
    filesystems = []
    version = "unknown"
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name
            types.setdefault(name, fam.type)
            labels.setdefault(name, tuple(sorted(s.labels)))
            if name == "node_cpu_seconds_total" and s.labels.get("mode") not in modes:
                modes.append(s.labels["mode"])
            if name == "node_filesystem_size_bytes":
                filesystems.append(tuple(sorted(s.labels.items())))
            if name == "node_exporter_build_info":
                version = s.labels.get("version", version)
    missing = [f for f in FAMILIES if f not in types]
    if missing:
        raise RuntimeError(f"node-exporter ({source}) does not export {', '.join(missing)}")
    return NodeExporterTemplate(version, source, tuple(sorted(modes)), labels, tuple(filesystems), types, text)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_exporter_template(live: bool = True) -> NodeExporterTemplate:
    """Run the real exporter once (when installed and ``live``) and take its names."""
    if not (live and NODE_EXPORTER):
        return parse_template(CAPTURED, "captured")
    port = _free_port()
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    return parse_template(CAPTURED, "captured")
                time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return parse_template(text, "live")
