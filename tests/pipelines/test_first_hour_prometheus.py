"""What a new user hits in the first hour with a Prometheus source (issue 22, points 2, 3
and 5): a URL that is not Prometheus, a Prometheus that is not running, and a Prometheus
started today. Real servers: a stdlib web server, a closed port, Debian's prometheus."""

import datetime as dt
import functools
import http.server
import threading
import time
import urllib.parse
import urllib.request
import json

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.cli_doctor import doctor_report
from pipelines.config import load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.prometheus import PrometheusError, ingest_prometheus
from pipelines.io.store import Store
from pipelines.testing.promfixtures import prom_site
from pipelines.testing.promserver import PROMETHEUS, PrometheusServer, free_port


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    """`python3 -m http.server` on 127.0.0.1: a web server, not a Prometheus API."""
    folder = tmp_path_factory.mktemp("www")
    (folder / "index.html").write_text("<html><body>hello</body></html>")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_web_server_is_not_a_prometheus_api_said_once(web_server, tmp_path):
    cfg_path = prom_site(tmp_path, web_server)
    line = f"{web_server}: not a Prometheus API (GET /api/v1/status/buildinfo returned 404)"
    res = CliRunner().invoke(app, ["doctor", "--config", str(cfg_path)], env={"COLUMNS": "300"})
    out = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    assert out.count(line) == 1 and "FAIL" in out and "1 failed" in out
    assert "<" not in res.output and "DOCTYPE" not in res.output.upper()  # no HTML page, not four times, not once
    cfg = load_config(cfg_path)
    with pytest.raises(PrometheusError) as exc:
        ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, HistoryWindow.ending(cfg.as_of, 14))
    assert str(exc.value) == line  # the ingest: one plain line, the same words


def test_connection_refused_is_one_plain_sentence(tmp_path):
    port = free_port()  # bound and released: nothing listens there
    url = f"http://127.0.0.1:{port}"
    cfg_path = prom_site(tmp_path, url)
    res = CliRunner().invoke(app, ["doctor", "--config", str(cfg_path)])
    assert res.exit_code == 1
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert lines == [f"error: cannot connect to {url} (connection refused); is Prometheus running there? (2 attempt(s))"]
    # the retries are there, on --debug
    res = CliRunner().invoke(app, ["doctor", "--config", str(cfg_path), "--debug"])
    assert res.output.count("attempt 1 of 2 failed: cannot connect") == 1 and "HTTPConnectionPool" not in res.output
    cfg = load_config(cfg_path)
    with pytest.raises(PrometheusError, match=r"^cannot connect to .* \(connection refused\); is Prometheus running"):
        ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, HistoryWindow.ending(cfg.as_of, 14))


def test_dns_failure_and_a_silent_server_are_plain_too(tmp_path):
    res = CliRunner().invoke(app, ["doctor", "--config", str(prom_site(tmp_path / "dns", "http://prometheus.invalid:9090"))])
    assert res.exit_code == 1
    assert res.output.strip() == ("error: cannot connect to http://prometheus.invalid:9090 (host 'prometheus.invalid' "
                                  "not found in DNS); check source.prometheus.url (2 attempt(s))")
    # a server that accepts the connection and never answers
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        cfg = prom_site(tmp_path / "silent", url).read_text().replace("timeout_s: 30", "timeout_s: 0.5")
        (tmp_path / "silent" / "capplan.yaml").write_text(cfg)
        res = CliRunner().invoke(app, ["doctor", "--config", str(tmp_path / "silent" / "capplan.yaml")])
    finally:
        sock.close()
    assert res.exit_code == 1
    assert res.output.strip().endswith(f"failed after 2 attempt(s) against {url}: no answer from {url} within "
                                       "timeout_s=0.5 s"), res.output
    assert "ReadTimeout" not in res.output and "HTTPConnectionPool" not in res.output


# -- a Prometheus started today --------------------------------------------------------------

KSM = """\
# TYPE kube_node_info gauge
kube_node_info{node="ip-10-0-0-1.ec2.internal",internal_ip="10.0.0.1",provider_id="aws:///us-east-1a/i-0a1",kernel_version="6.1"} 1
kube_node_info{node="ip-10-0-0-2.ec2.internal",internal_ip="10.0.0.2",provider_id="aws:///us-east-1b/i-0a2",kernel_version="6.1"} 1
# TYPE kube_node_labels gauge
kube_node_labels{node="ip-10-0-0-1.ec2.internal",label_eks_amazonaws_com_nodegroup="general",label_node_kubernetes_io_instance_type="m6i.large",label_topology_kubernetes_io_zone="us-east-1a"} 1
kube_node_labels{node="ip-10-0-0-2.ec2.internal",label_eks_amazonaws_com_nodegroup="general",label_node_kubernetes_io_instance_type="m6i.large",label_topology_kubernetes_io_zone="us-east-1b"} 1
# TYPE kube_node_status_allocatable gauge
kube_node_status_allocatable{node="ip-10-0-0-1.ec2.internal",resource="cpu",unit="core"} 1.93
kube_node_status_allocatable{node="ip-10-0-0-1.ec2.internal",resource="memory",unit="byte"} 7.1e+09
kube_node_status_allocatable{node="ip-10-0-0-1.ec2.internal",resource="pods",unit="integer"} 29
kube_node_status_allocatable{node="ip-10-0-0-2.ec2.internal",resource="cpu",unit="core"} 1.93
kube_node_status_allocatable{node="ip-10-0-0-2.ec2.internal",resource="memory",unit="byte"} 7.1e+09
kube_node_status_allocatable{node="ip-10-0-0-2.ec2.internal",resource="pods",unit="integer"} 29
# TYPE kube_pod_info gauge
kube_pod_info{namespace="shop",pod="web-1",node="ip-10-0-0-1.ec2.internal",created_by_kind="ReplicaSet"} 1
# TYPE kube_pod_status_phase gauge
kube_pod_status_phase{namespace="shop",pod="web-1",phase="Running"} 1
# TYPE kube_pod_container_resource_requests gauge
kube_pod_container_resource_requests{namespace="shop",pod="web-1",container="web",node="ip-10-0-0-1.ec2.internal",resource="cpu",unit="core"} 0.5
"""


def _node(i: int) -> str:
    return (f"# TYPE node_memory_MemTotal_bytes gauge\nnode_memory_MemTotal_bytes 8.0e+09\n"
            f"# TYPE node_memory_MemAvailable_bytes gauge\nnode_memory_MemAvailable_bytes {5.0e9 + i}\n"
            f"# TYPE node_cpu_seconds_total counter\nnode_cpu_seconds_total{{cpu=\"0\",mode=\"idle\"}} {time.time():.0f}\n")


@pytest.fixture(scope="module")
def started_today(tmp_path_factory):
    """A fresh, empty Prometheus started now, scraping (every second) kube-state-metrics and
    two node-exporters served by a small HTTP server: everything is scraped, nothing is
    older than a few seconds."""
    if not PROMETHEUS:
        pytest.skip("Debian's prometheus is not installed")

    class Exporter(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = (KSM if self.path == "/ksm" else _node(int(self.path.rsplit("/", 1)[-1]))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    addr = f"127.0.0.1:{exporter.server_address[1]}"
    nodes = "".join(f"      - targets: ['{addr}']\n        labels: {{__metrics_path__: /node/{i}, instance: '10.0.0.{i}:9100'}}\n"
                    for i in (1, 2))
    config = ("global:\n  scrape_interval: 1s\nscrape_configs:\n"
              f"  - job_name: kube-state-metrics\n    honor_labels: true\n    static_configs:\n"
              f"      - targets: ['{addr}']\n        labels: {{__metrics_path__: /ksm}}\n"
              f"  - job_name: node-exporter\n    static_configs:\n{nodes}")
    folder = tmp_path_factory.mktemp("today")
    (folder / "tsdb").mkdir()
    started_on = dt.datetime.now(dt.timezone.utc).date()  # the plan date below: no data before its 00:00, even past midnight
    server = PrometheusServer(folder, folder / "tsdb", config_text=config, tag="today")
    server.started_on = started_on
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # until both node-exporters and kube-state-metrics were scraped twice
            q = urllib.parse.urlencode({"query": "count(count_over_time(node_memory_MemTotal_bytes[1m]) >= 2) "
                                                 "+ count(count_over_time(kube_node_info[1m]) >= 2)"})
            with urllib.request.urlopen(f"{server.url}/api/v1/query?{q}", timeout=5) as r:
                result = json.loads(r.read())["data"]["result"]
            if result and float(result[0]["value"][1]) == 4:
                break
            time.sleep(0.5)
        yield server
    finally:
        server.stop()
        exporter.shutdown()


def test_a_prometheus_started_today_says_what_it_found_and_how_short_the_history_is(started_today, tmp_path):
    today = started_today.started_on
    cfg_path = prom_site(tmp_path, started_today.url, history_days=180, as_of=today)
    rep = doctor_report(cfg_path, today, cost=False)
    checks = {c["check"]: c for c in rep["checks"]}
    # the "hour before 00:00" probe found nothing: the checks look at the latest data instead
    assert checks["clusters"]["status"] == "OK", checks["clusters"]
    assert checks["clusters"]["detail"] == "kube-state-metrics found: default (2 nodes)"
    assert checks["probe time"]["status"] == "WARN" and "the last hour before now" in checks["probe time"]["detail"]
    hist = checks["history"]
    assert hist["status"] == "FAIL" and "too short, the plan asks for 180 days" in hist["detail"]
    assert "(0.0 days)" in hist["detail"] and "none is in the window" in hist["detail"]
    h = rep["history"]["default"]
    assert h["asked_days"] == 180 and h["window_days"] == 0 and 0 <= h["held_days"] < 0.1 and not h["complete"]
    since = dt.datetime.strptime(h["since"], "%Y-%m-%d %H:%M").replace(tzinfo=dt.timezone.utc)
    assert abs((dt.datetime.now(dt.timezone.utc) - since).total_seconds()) < 3 * 3600  # to the hour, not "never"
    assert rep["found"]["default"].startswith("kube-state-metrics found, 2 nodes; node-exporter found, 2 of 2 nodes; ")
    res = CliRunner().invoke(app, ["doctor", "--config", str(cfg_path), "--no-cost"], env={"COLUMNS": "400"})
    out = " ".join(res.output.split())
    assert res.exit_code == 1
    assert (f"history [default]: 180 days of history asked; the server holds {h['held_days']:.1f} days (since {h['since']}), "
            "0.0 of them before the plan date: too short") in out
    assert "found [default]: kube-state-metrics found, 2 nodes; node-exporter found, 2 of 2 nodes" in out
    assert f"as of {today}, 180 days of history" not in out  # the old header, which said only what was asked
