"""A Prometheus that answers badly (issue 23, "Also try"): HTTP 200 with status "error", a
partial-response warning, NaN/Inf/negative/huge values, timestamps out of order, repeated or
outside the window, a stall or a truncation mid-answer, a redirect to another host, a
self-signed TLS certificate. A real HTTP server on 127.0.0.1 serves crafted answers in the
shapes of the query API (https://prometheus.io/docs/prometheus/latest/querying/api/), alone
or in front of the real fixture Prometheus.

What is correct, case by case (the choices, also in pipelines/io/sources/promapi.py and
prometheus.py):
- 200 + status "error": read by its errorType like any error (bad_data: stop at once, one
  line saying what came back; unavailable/internal: retried);
- a "warnings" entry that is not a PromQL annotation: the answer is partial, so it is never
  stored; retried like a fault, then the pull stops naming the warning. Windows written
  before stay, a re-run continues from them. PromQL info/warning annotations: kept, shown
  among the run's warnings;
- NaN/Inf, negative values (no demand or capacity is below zero), values above a plausible
  bound per unit: dropped (gaps, counted by the data-quality section), one warning per query
  and reason naming an example series; timestamps off the request's grid or window: dropped
  (they would fall outside the window a re-run replaces); out of order: sorted; repeated:
  the last value kept, counted;
- a stall after the answer began, a truncated answer: retried (a connection fault), not
  split as a heavy query, then one line;
- a redirect: not followed (the configured headers would go to the other host), one line
  naming where it pointed;
- TLS: verified by default; the error says how to trust the CA (source.prometheus.ca_file,
  REQUESTS_CA_BUNDLE); ca_file is honoured and a missing one is a config error.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from pipelines.config import ConfigError, load_config
from pipelines.io.sources.prometheus import PrometheusError, connect, ingest_prometheus
from pipelines.io.store import Store

from pipelines.testing.promfixtures import prom_site

from ..pipelines.test_prometheus import main, needs_prometheus, prom_config, window  # noqa: F401  (main: fixture)

fault = pytest.mark.reliability(kind="fault")
bad_input = pytest.mark.reliability(kind="bad_input")
rows_lost = pytest.mark.reliability(kind="rows_lost")
secret = pytest.mark.reliability(kind="secret")
SECRET_HEADER = "tenant-7f3a9-secret"


class Crafted:
    """A real HTTP server on 127.0.0.1. ``answer(handler, path, form)`` writes a crafted
    answer and returns True, or returns False to pass the request to ``upstream`` (a real
    Prometheus). ``requests`` lists (path, form, headers) of every request."""

    def __init__(self, answer, upstream: str | None = None, tls: ssl.SSLContext | None = None):
        outer = self
        self.requests: list[tuple[str, dict, dict]] = []

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self, body: bytes | None):
                split = urllib.parse.urlsplit(self.path)
                form = dict(urllib.parse.parse_qsl(body.decode() if body else split.query))
                outer.requests.append((split.path, form, dict(self.headers)))
                try:
                    if answer(self, split.path, form):
                        return
                    req = urllib.request.Request(upstream + self.path, data=body, method=self.command)
                    try:
                        with urllib.request.urlopen(req, timeout=60) as r:
                            status, data = r.status, r.read()
                    except urllib.error.HTTPError as e:
                        status, data = e.code, e.read()
                    send(self, status, data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._handle(None)

            def do_POST(self):
                self._handle(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, path: str) -> int:
        return sum(p == path for p, _, _ in self.requests)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)


def matrix(series, warnings=None) -> bytes:
    env = {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": m, "values": v} for m, v in series]}}
    if warnings:
        env["warnings"] = warnings
    return json.dumps(env).encode()


ONE = [({"pool": "a"}, [[0, "1"], [3600, "2"], [7200, "3"]])]


def client(tmp_path, url, extra=""):
    cfg = load_config(prom_config(tmp_path, url, extra))
    return connect(cfg)


# -- one request, a crafted server -----------------------------------------------------------

@fault
def test_http_200_with_status_error_is_one_line_and_not_retried(tmp_path):
    def answer(h, path, form):
        send(h, 200, json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}).encode())
        return True

    srv = Crafted(answer)
    try:
        with pytest.raises(PrometheusError) as exc:
            client(tmp_path, srv.url).query_range("q", "up", 0, 7200, 3600)
    finally:
        srv.stop()
    assert str(exc.value) == ("query 'q' (clusters: all) failed with HTTP 200 with status 'error', errorType 'bad_data': "
                              "parse error at char 3 (an answer the Prometheus API never gives: is a proxy in between?)"
                              "; PromQL: up")
    assert srv.count("/api/v1/query_range") == 1  # a bad query is not asked again


@fault
def test_a_partial_answer_is_retried_then_named_and_an_annotation_is_kept(tmp_path):
    partial = "No StoreAPIs matched for this query; store 10.0.0.3:10901 unavailable"
    state = {"warning": partial}

    def answer(h, path, form):
        send(h, 200, matrix(ONE, [state["warning"]]))
        return True

    srv = Crafted(answer)
    try:
        c = client(tmp_path, srv.url)
        with pytest.raises(PrometheusError) as exc:
            c.query_range("q", "up", 0, 7200, 3600)
        assert srv.count("/api/v1/query_range") == 2  # retries: 1
        assert str(exc.value) == (f"query 'q' (clusters: all) failed after 2 attempt(s) against {srv.url} (window "
                                  "1970-01-01 00:00 .. 1970-01-01 02:00): the answer is partial; the server warned: " + partial)
        state["warning"] = "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count: \"up\""
        ans = c.query_range("q", "up", 0, 7200, 3600)
        assert len(ans.result[0]["values"]) == 3 and ans.warnings == [state["warning"]]
    finally:
        srv.stop()


@fault
@pytest.mark.parametrize("how", ["stall", "truncated"])
def test_a_stall_or_a_truncation_mid_answer_is_retried_not_split(tmp_path, how):
    body = matrix(ONE)

    def answer(h, path, form):
        if how == "stall":  # headers and half the body, then nothing
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            time.sleep(2.5)
        else:  # half the body, then the connection closes
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.close_connection = True
        return True

    srv = Crafted(answer)
    try:
        with pytest.raises(PrometheusError) as exc:
            client(tmp_path, srv.url, "    timeout_s: 1\n").query_range("q", "up", 0, 7200, 3600)
    finally:
        srv.stop()
    said = {"stall": "the answer stalled mid-way (nothing more within timeout_s=1 s)",
            "truncated": "the answer stopped before it was complete (connection closed mid-answer)"}[how]
    assert str(exc.value).endswith(said) and "failed after 2 attempt(s)" in str(exc.value)
    assert srv.count("/api/v1/query_range") == 2  # retried once, never split into smaller windows


@fault
@secret
def test_a_redirect_to_another_host_is_not_followed(tmp_path):
    other = Crafted(lambda h, path, form: send(h, 200, matrix(ONE)) or True)
    srv = Crafted(lambda h, path, form: send(h, 307, b"", {"Location": other.url + path}) or True)
    try:
        c = client(tmp_path, srv.url, f"    headers: {{X-Scope-OrgID: {SECRET_HEADER}}}\n")
        with pytest.raises(PrometheusError) as exc:
            c.query_range("q", "up", 0, 7200, 3600)
    finally:
        srv.stop()
        other.stop()
    assert str(exc.value) == (f"{srv.url}: POST /api/v1/query_range answered HTTP 307, a redirect to {other.url}"
                              "/api/v1/query_range; capplan does not follow redirects (credentials would go along): set "
                              "source.prometheus.url to the address that answers")
    assert srv.requests[0][2]["X-Scope-OrgID"] == SECRET_HEADER and other.requests == []  # nothing reached the other host
    assert srv.count("/api/v1/query_range") == 1


def _self_signed(folder):
    """A self-signed certificate for 127.0.0.1 (the cryptography package)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "capplan test CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "ca.pem", folder / "key.pem")
    return ctx


@fault
def test_a_self_signed_certificate_is_refused_until_its_ca_is_trusted(tmp_path):
    srv = Crafted(lambda h, path, form: send(h, 200, matrix(ONE)) or True, tls=_self_signed(tmp_path))
    try:
        with pytest.raises(PrometheusError) as exc:
            client(tmp_path / "default", srv.url).query_range("q", "up", 0, 7200, 3600)
        assert str(exc.value) == (f"cannot connect to {srv.url}: TLS verification failed (the certificate is self-signed "
                                  "or signed by a CA this machine does not trust). To trust the server's CA, set "
                                  "source.prometheus.ca_file to its CA bundle (PEM; relative to capplan.yaml), or set "
                                  "REQUESTS_CA_BUNDLE; verify_tls: false turns verification off (only for a test server)")
        assert srv.count("/api/v1/query_range") == 0  # no request was sent over the untrusted connection
        (tmp_path / "trusted").mkdir()
        (tmp_path / "trusted" / "ca.pem").write_bytes((tmp_path / "ca.pem").read_bytes())
        ans = client(tmp_path / "trusted", srv.url, "    ca_file: ca.pem\n").query_range("q", "up", 0, 7200, 3600)
        assert len(ans.result[0]["values"]) == 3
        with pytest.raises(ConfigError, match=r"source.prometheus.ca_file: .*missing.pem is not a file"):
            client(tmp_path / "missing", srv.url, "    ca_file: missing.pem\n")
    finally:
        srv.stop()


# -- a whole pull through a crafted proxy in front of the real Prometheus -----------------

EXTRA = "    clusters: [west]\n    drill_down: false\n    storage: []\n    on_missing_data: warn\n"


def pull_config(folder, url):
    """One cluster, pool series only, 14 days: a pull of a few seconds (two cpu requests)."""
    return load_config(prom_site(folder, url, 14, EXTRA))


def _is_cpu_usage(form: dict) -> bool:
    q = form.get("query", "")
    return form.get("step") == "3600" and "node_cpu_seconds_total" in q and "sum by (cluster, pool)" in q


def _samples(store: Store):
    with store.connect(read_only=True) as con:
        return con.execute("SELECT x.series_id, x.ts, x.value FROM samples x JOIN series s USING (series_id) "
                           "WHERE s.level = 'pool' ORDER BY 1, 2").df()


@pytest.fixture(scope="module")
def reference(main, tmp_path_factory):  # noqa: F811
    """The same pull with nothing spoiled."""
    folder = tmp_path_factory.mktemp("answers-ref")
    cfg = pull_config(folder, main.url)
    store = Store(cfg.path(cfg.store.path))
    ingest_prometheus(store, cfg, window(cfg))
    return _samples(store)


@fault
@rows_lost
@needs_prometheus
@pytest.mark.parametrize("fault_kind", ["partial", "truncated"])  # an answer with a hole, a broken connection
def test_a_bad_answer_mid_pull_loses_nothing_and_a_rerun_continues(main, reference, tmp_path, fault_kind):  # noqa: F811
    spoil = {"on": True, "cpu": 0}

    def answer(h, path, form):
        if not (spoil["on"] and path.endswith("/query_range") and _is_cpu_usage(form)):
            return False
        spoil["cpu"] += 1
        if spoil["cpu"] == 1:
            return False  # the first request of the pool cpu query is answered well: it stays
        if fault_kind == "partial":
            send(h, 200, matrix(ONE, ["partial response: store gateway 10.0.0.9 did not answer"]))
        else:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.write(b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pool":"de')
            h.close_connection = True
        return True

    proxy = Crafted(answer, upstream=main.url)
    try:
        cfg = pull_config(tmp_path, proxy.url)
        store = Store(cfg.path(cfg.store.path))
        with pytest.raises(PrometheusError) as exc:
            ingest_prometheus(store, cfg, window(cfg))
        said = {"partial": "the answer is partial; the server warned: partial response: store gateway 10.0.0.9 did not answer",
                "truncated": "the answer stopped before it was complete (connection closed mid-answer)"}[fault_kind]
        assert str(exc.value).startswith("query 'pool_cpu_usage' (clusters: west) failed after 2 attempt(s)")
        assert str(exc.value).endswith(said) and "\n" not in str(exc.value)
        after_failure = _samples(store)
        # nothing of the bad answer is stored: every stored sample is one the real server gave
        merged = after_failure.merge(reference, on=["series_id", "ts"], how="left", suffixes=("", "_ref"))
        assert merged["value_ref"].notna().all() and np.allclose(merged["value"], merged["value_ref"])
        assert not after_failure.duplicated(["series_id", "ts"]).any()
        spoil["on"] = False
        ingest_prometheus(store, cfg, window(cfg))  # the re-run continues from what was written
    finally:
        proxy.stop()
    final = _samples(store)
    assert len(final) == len(reference) and not final.duplicated(["series_id", "ts"]).any()
    assert np.allclose(final["value"].to_numpy(), reference["value"].to_numpy())


@bad_input
@rows_lost
@needs_prometheus
def test_nan_inf_negative_huge_and_misplaced_timestamps_are_screened(main, reference, tmp_path):  # noqa: F811
    spoiled = {"n": 0}

    def answer(h, path, form):
        if not (path.endswith("/query_range") and _is_cpu_usage(form)):
            return False
        req = urllib.request.Request(main.url + path, data=urllib.parse.urlencode(form).encode())
        with urllib.request.urlopen(req, timeout=60) as r:
            body = json.loads(r.read())
        step = 3600
        for s in body["data"]["result"]:
            v = s["values"]
            if len(v) < 12:
                continue
            spoiled["n"] += 1
            v[1][1], v[2][1], v[3][1] = "NaN", "+Inf", "-Inf"
            v[4][1], v[5][1] = "-0.5", "3e30"  # negative cores; 3e30 cores
            v[6], v[7] = v[7], v[6]  # out of order
            v.insert(8, [v[8][0], "12345"])  # the same timestamp twice: a stray value, then the real one last
            v.append([v[-1][0] + 7 * step, "1"])  # after the request's end
            v.append([v[0][0] + 0.5 * step, "1"])  # between two steps
        send(h, 200, json.dumps(body).encode())
        return True

    proxy = Crafted(answer, upstream=main.url)
    try:
        cfg = pull_config(tmp_path, proxy.url)
        store = Store(cfg.path(cfg.store.path))
        res = ingest_prometheus(store, cfg, window(cfg))
    finally:
        proxy.stop()
    assert spoiled["n"] > 0
    got = _samples(store)
    cpu = got[got["series_id"].str.contains("/resource=cpu/")]
    assert np.isfinite(got["value"]).all() and (got["value"] >= 0).all() and 0 < cpu["value"].max() < 1e7
    assert not got.duplicated(["series_id", "ts"]).any()
    w = window(cfg)
    assert got["ts"].min() >= w.start and got["ts"].max() < w.end
    # every sample kept is the real server's; the spoiled ones are gaps, not guesses
    merged = got.merge(reference, on=["series_id", "ts"], how="left", suffixes=("", "_ref"))
    assert merged["value_ref"].notna().all() and np.allclose(merged["value"], merged["value_ref"])
    assert len(reference) - len(got) == 5 * spoiled["n"]  # NaN, +Inf, -Inf, negative, huge
    notes = [x for x in res.warnings if x.startswith("pool_cpu_usage [west]:")]
    n = spoiled["n"]
    assert f"pool_cpu_usage [west]: {3 * n} sample(s) dropped, NaN or infinite values" in "\n".join(notes)
    assert any(x.startswith(f"pool_cpu_usage [west]: {n} sample(s) dropped, negative values, e.g. cluster=west/pool=")
               and x.endswith(": -0.5") for x in notes), notes
    assert any(f"{n} sample(s) dropped, implausibly large values" in x and x.endswith(": 3e+30") for x in notes)
    assert any(f"{2 * n} sample(s) dropped, timestamps outside the request's window or step grid" in x for x in notes)
    assert any(f"{n} sample(s) dropped, repeated timestamps (the last value kept)" in x for x in notes)


# -- answers from a proxy in front: not the API's JSON ---------------------------------------

def _page(status: int, ctype: str, text: str):
    def answer(h, path, form):
        body = text.encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        return True
    return answer


@fault
def test_a_proxy_504_page_splits_the_window_and_a_429_text_is_retried(tmp_path):
    from pipelines.io.sources.promapi import TooHeavy
    gateway = Crafted(_page(504, "text/html", "<html><body><h1>504 Gateway Time-out</h1></body></html>"))
    limited = Crafted(_page(429, "text/plain", "rate limited"))
    try:
        with pytest.raises(TooHeavy):  # a heavy window behind nginx: split, not asked again as it is
            client(tmp_path, gateway.url).query_range("q", "up", 0, 7200, 3600)
        assert gateway.count("/api/v1/query_range") == 1
        with pytest.raises(PrometheusError) as exc:
            client(tmp_path, limited.url).query_range("q", "up", 0, 7200, 3600)
        assert limited.count("/api/v1/query_range") == 2  # retried (retries: 1), then one line
        assert "failed after 2 attempt(s)" in str(exc.value) and "HTTP 429" in str(exc.value)
        assert "not a Prometheus API" not in str(exc.value)
    finally:
        gateway.stop()
        limited.stop()


@bad_input
@secret
def test_an_auth_proxy_refusing_the_token_is_named_and_never_echoes_it(tmp_path, monkeypatch):
    token = "tok-9d8e7f-very-secret"
    monkeypatch.setenv("CAPPLAN_TEST_TOKEN", token)
    srv = Crafted(_page(401, "text/plain", f"invalid bearer {token}"))
    try:
        cfg = prom_config(tmp_path, srv.url, "    auth: {bearer_token_env: CAPPLAN_TEST_TOKEN}\n")
        with pytest.raises(PrometheusError) as exc:
            connect(load_config(cfg)).query_range("q", "up", 0, 7200, 3600)
        assert "returned 401 (unauthorised: check the token or credentials" in str(exc.value)
        assert token not in str(exc.value) and "***" in str(exc.value)
        from typer.testing import CliRunner
        from pipelines.cli import app
        res = CliRunner().invoke(app, ["doctor", "--config", str(cfg)], env={"COLUMNS": "300"})
    finally:
        srv.stop()
    assert res.exit_code == 1, res.output
    assert "401 (unauthorised: check the token or credentials" in res.output and token not in res.output
    assert "not a Prometheus API" not in res.output  # the credentials, not the URL, are wrong
