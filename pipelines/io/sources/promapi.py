"""A small client for the Prometheus HTTP API (Prometheus, Thanos Query, Mimir), and range
queries split by time so that no request is too heavy for the server.

Why not prometheus-api-client: it returns only ``data.result``, so the query statistics
(``stats=all``: samples the server touched) and the ``warnings`` of a partial answer are
lost, and it cannot tell "too many samples" (split the window) from a bad query (stop).

Failures, and what happens (docs/research/real-stacks.md 8.1, 8.2, 9.2):

* connection refused, DNS, 5xx, 429, truncated JSON: :class:`Transient`, the same request
  is retried (``pipelines.io.retry``, tenacity) ``retries`` times;
* HTTP 422 "query processing would load too many samples", 503 ``timeout``, 504, a read
  timeout, Mimir ``err-mimir-max-*`` limits: :class:`TooHeavy`. The request is **not**
  re-sent: the same query over the same window would hit the same limit again (and a
  timeout means the server just spent its whole budget on it; three more attempts only
  load production monitoring). The window is split in two and each half is asked
  separately, down to one step;
* 400 (bad PromQL), 401, 403, 404, other 422 (e.g. "many-to-many matching"): a
  :class:`PrometheusError` at once, naming the query, the cluster and the PromQL.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter

from ...config import PrometheusSource
from ...display import FORMAT_CHARS
from ..retry import Transient, with_retries

try:  # orjson ships with Prefect; parsing large matrices is ~3x faster than json
    import orjson as _json

    _loads: Callable[[bytes], Any] = _json.loads
except ImportError:  # pragma: no cover
    import json as _json_std

    _loads = _json_std.loads

__all__ = ["PrometheusError", "Unreachable", "TooHeavy", "PromClient", "RangeAnswer", "RequestRecord", "WindowPlanner",
           "plan_chunks", "parse_duration", "escape_label_value", "label_regex", "ANY_VALUE_RE", "fmt_ts"]


class PrometheusError(RuntimeError):
    """Prometheus could not be read; the message names the query and the cluster.
    ``status``: the HTTP status of a refused request (None: no answer). ``plain``: the
    message says everything alone (not prefixed with the query that hit it)."""

    def __init__(self, message: str, status: int | None = None, plain: bool = False):
        super().__init__(message)
        self.status = status
        self.plain = plain


class Unreachable(Transient):
    """No HTTP answer at all (refused, DNS, connect timeout, dropped connection): the
    message is the whole story, said once after the retries."""


class TooHeavy(Exception):
    """The server refused or gave up on a query because of its size: split the window."""


def parse_duration(text: str) -> int:
    """Prometheus duration (``30s``, ``5m``, ``1h``, ``1d``, ``1h30m``) to seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        from ...config import ConfigError

        raise ConfigError(f"{text!r} is not a duration like 30s, 5m, 1h or 1d")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return int(sum(int(n) * unit[u] for n, u in parts))


#: Go escapes a PromQL double-quoted string reads (strconv.Unquote rules).
_GO_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(f'[\\\\"\x00-\x1f{FORMAT_CHARS}]')  # quotes, backslash, what a terminal hides

#: A ``label_replace`` regex taking a whole label value, line breaks included: RE2's ``.``
#: does not match ``\n`` without the ``s`` flag, so ``(.+)`` silently skips such a value.
ANY_VALUE_RE = "(?s)(.+)"


def escape_label_value(value: str) -> str:
    """``value`` as the inside of a double-quoted PromQL string literal, read back exactly:
    backslash and double quote escaped, line breaks, tabs, other control characters and
    bidi/zero-width marks as Go escapes (``\\n``, ``\\t``, ``\\u202e``); all other text
    as it is. The one function that puts a label value into PromQL (PromQL string literals,
    https://prometheus.io/docs/prometheus/latest/querying/basics/#string-literals: Go's
    escaping rules; a raw line break would end the query with "unterminated quoted string")."""
    def esc(m: re.Match) -> str:
        ch = m.group(0)
        return _GO_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"

    return _NEEDS_ESCAPE.sub(esc, value)


def label_regex(values) -> str:
    """The inside of a double-quoted PromQL ``=~`` matcher matching exactly one of
    ``values``: each value regex-escaped, joined by ``|``, then string-escaped
    (:func:`escape_label_value`). Python's ``re.escape`` puts a backslash before ASCII
    punctuation and whitespace only, which RE2 (Go regexp/syntax) reads as the character
    itself; Prometheus anchors the regex (``^(?:...)$``)."""
    return escape_label_value("|".join(re.escape(v) for v in values))


def fmt_ts(t: float) -> str:
    return f"{dt.datetime.fromtimestamp(t, dt.timezone.utc):%Y-%m-%d %H:%M}"


def plan_chunks(start: float, end: float, step_s: int, max_points: int = 11000) -> list[tuple[float, float]]:
    """Non-overlapping [start, end] pairs (both inclusive, on the step grid) that cover
    ``[start, end)`` with at most ``max_points`` points each."""
    first = math.ceil(start / step_s) * step_s
    last = math.floor((end - 1) / step_s) * step_s
    if last < first:
        return []
    n = int((last - first) // step_s) + 1
    return [(first + k * step_s, first + (min(k + max_points, n) - 1) * step_s) for k in range(0, n, max_points)]


@dataclass
class RequestRecord:
    """One range request, for the doctor and the benchmark."""

    name: str
    cluster: str
    start: float
    end: float
    step: int
    seconds: float
    outcome: str  # ok | too-heavy
    points: int = 0
    peak_samples: int | None = None
    total_samples: int | None = None
    #: the form that was sent (to replay a pull, as the benchmark does)
    params: dict = field(default_factory=dict, repr=False)
    #: the server's evaluation time (stats timings.evalTotalTime)
    eval_s: float | None = None


@dataclass
class RangeAnswer:
    """The ``result`` of one range request and what the server said about its cost."""

    result: list[dict]
    start: float
    end: float
    step: int
    peak_samples: int | None = None
    total_samples: int | None = None
    eval_s: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return int((self.end - self.start) // self.step) + 1


#: Warnings that describe the query, not missing data (PromQL annotations, Prometheus
#: 2.45+: "PromQL info: metric might not be a counter ..."): kept as the run's warnings.
_ANNOTATION = re.compile(r"PromQL (info|warning):", re.I)

_HEAVY = re.compile(r"too many samples|query timed out|err-mimir-max-|exceeded maximum resolution|"
                    r"the query time range exceeds|expanding series: the query hit", re.I)


class PromClient:
    """Requests to one Prometheus-compatible API (``src.url``), with credentials from the
    environment, TLS verification, retries of transient faults and a record of every
    range request (``records``)."""

    def __init__(self, src: PrometheusSource, base_dir: Path = Path(".")):
        self.src = src
        self.url = src.url.rstrip("/")
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(src.max_concurrency, src.budget.max_concurrency or 0) + 4)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(src.headers)
        self._secrets: list[str] = []
        if src.auth.bearer_token_env and (token := os.environ.get(src.auth.bearer_token_env)):
            self.session.headers["Authorization"] = f"Bearer {token}"
            self._secrets.append(token)
        if src.auth.username_env and src.auth.password_env:
            user, password = os.environ.get(src.auth.username_env), os.environ.get(src.auth.password_env)
            if user and password:
                self.session.auth = (user, password)
                self._secrets.append(password)
        if src.verify_tls and src.ca_file:
            ca = src.ca_file if src.ca_file.is_absolute() else base_dir / src.ca_file
            if not ca.is_file():
                from ...config import ConfigError

                raise ConfigError(f"source.prometheus.ca_file: {ca} is not a file (expected the CA bundle, PEM, that "
                                  f"signed {src.url}'s certificate)")
            self.session.verify = str(ca)
        else:
            self.session.verify = src.verify_tls
        #: Extra parameters for every query (Thanos dedup / partial_response), set by the doctor.
        self.query_params: dict[str, str | list[str]] = {}
        self.records: list[RequestRecord] = []
        #: status endpoints the server does not have: name -> HTTP status (404...)
        self.missing: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------
    def clean(self, text: str) -> str:
        """``text`` with every credential replaced by ``***``."""
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _send(self, method: str, path: str, params: dict, query: bool) -> dict:
        """One HTTP request; returns the envelope (``data``, ``warnings``). Raises
        :class:`Transient`, :class:`TooHeavy` or :class:`PrometheusError` (see module)."""
        # verify= on every request: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a
        # session's own bundle (psf/requests#3829), which would ignore source.prometheus.ca_file
        kw = {"timeout": self.src.timeout_s, "allow_redirects": False, "verify": self.session.verify}
        try:
            if method == "POST":
                r = self.session.post(self.url + path, data=params, **kw)
            else:
                r = self.session.get(self.url + path, params=params, **kw)
        except requests.exceptions.SSLError as exc:
            raise PrometheusError(self.clean(_tls_message(self.src.url, exc)), plain=True) from None
        except requests.exceptions.ConnectTimeout:
            raise Unreachable(f"cannot connect to {self.url} (no answer to the connection within "
                              f"{self.src.timeout_s:g} s); is the host right and reachable?") from None
        except requests.exceptions.ReadTimeout:  # no answer yet: the server is still evaluating
            if query:
                raise TooHeavy(f"no answer within timeout_s={self.src.timeout_s:g} s (timed out)") from None
            raise Transient(f"no answer from {self.url} within timeout_s={self.src.timeout_s:g} s") from None
        except requests.exceptions.ChunkedEncodingError:
            raise Transient("the answer stopped before it was complete (connection closed mid-answer)") from None
        except requests.exceptions.ConnectionError as exc:
            if "Read timed out" in str(exc):
                # The answer had begun (status and headers came) and then stalled: a fault of
                # the connection, retried like one; not a heavy query (splitting the window
                # would ask hundreds of requests of a stalling server).
                raise Transient(f"the answer stalled mid-way (nothing more within timeout_s={self.src.timeout_s:g} s)"
                                ) from None
            raise _unreachable(self.url, exc) from None
        if r.is_redirect:
            # Not followed: requests drops Authorization on a change of host but keeps
            # source.prometheus.headers (X-Scope-OrgID, a custom auth header) and would send
            # the query on; an answer from a login page or another server is not the one
            # asked for. The user sets the address that answers.
            where = r.headers.get("Location", "?")
            raise PrometheusError(self.clean(f"{self.url}: {method} {path} answered HTTP {r.status_code}, a redirect to "
                                             f"{where}; capplan does not follow redirects (credentials would go "
                                             "along): set source.prometheus.url to the address that answers"),
                                  r.status_code, plain=True)
        try:
            env = _loads(r.content)
            if not isinstance(env, dict):
                raise ValueError("not an object")
        except ValueError:
            env = None
        if env is None:
            _not_json(self.url, method, path, r, query, self.clean)  # always raises
        if r.status_code == 200 and env.get("status") == "success":
            partial = [w for w in env.get("warnings") or [] if not _ANNOTATION.match(str(w))]
            if partial:
                # A partial answer (a Thanos store or a Mimir querier did not answer, a remote
                # read failed): "There will still be data in the data field" (querying/api,
                # Format overview), but not all of it. Stored, it would be a silent hole the
                # window bookkeeping calls complete: retried like a fault, then the pull stops
                # with the warning; what was written before is kept and a re-run continues.
                raise Transient(self.clean("the answer is partial; the server warned: "
                                           + "; ".join(str(w)[:200] for w in partial[:3])))
            return env
        detail = self.clean(str(env.get("error") or "").strip()[:300])
        kind = str(env.get("errorType") or "")
        status = r.status_code
        if status == 200:
            # The API's contract is a non-2xx status with every error (querying/api "Format
            # overview"); a 200 with status "error" comes from a proxy or a broken frontend.
            # Read it by its errorType like any error, and say what came back.
            detail = f"HTTP 200 with status {env.get('status')!r}" + (f", errorType {kind!r}" if kind else "") \
                + (f": {detail}" if detail else " and no error text")
            if query and (_HEAVY.search(detail) or kind == "timeout"):
                raise TooHeavy(detail)
            if kind in ("unavailable", "internal"):
                raise Transient(detail)
            raise PrometheusError(f"{detail} (an answer the Prometheus API never gives: is a proxy in between?)", status)
        detail = f"HTTP {status}: {detail}"
        if query and (_HEAVY.search(detail) or kind == "timeout" or status == 504):
            raise TooHeavy(detail)
        if status in (429,) or status >= 500:
            raise Transient(detail)
        hint = {400: "bad query", 401: "unauthorised: check the token or credentials",
                403: "forbidden: check the credentials' permissions",
                404: f"not found: is {self.src.url} the query API's base (Mimir: .../prometheus)?",
                422: "the query cannot be executed"}.get(status, "unexpected answer")
        raise PrometheusError(f"HTTP {status} ({hint}): {detail.split(': ', 1)[1]}", status)

    def call(self, method: str, path: str, params: dict, what: str, query: bool = False, window: str = "") -> dict:
        """:meth:`_send` with retries; a :class:`PrometheusError` names ``what``."""
        try:
            return with_retries(lambda: self._send(method, path, params, query), self.src.retries, f"prometheus {what}")
        except Unreachable as exc:  # the same for every query: said once, without the query
            raise PrometheusError(f"{exc} ({self.src.retries + 1} attempt(s))", plain=True) from None
        except Transient as exc:
            raise PrometheusError(self.clean(
                f"{what} failed after {self.src.retries + 1} attempt(s) against {self.src.url}{window}: {exc}")) from None
        except PrometheusError as exc:
            if exc.plain:
                raise PrometheusError(self.clean(str(exc)), exc.status, plain=True) from None
            raise PrometheusError(self.clean(f"{what} failed with {exc}"), exc.status) from None

    def _server_timeout(self) -> str:
        # The server gives up a little before we do, so a heavy query stops using its CPU
        # and answers 503 "timeout" (which splits the window) instead of a dropped socket.
        return f"{max(self.src.timeout_s * 0.9, 0.5):.3f}"

    # -- the API -----------------------------------------------------------------------
    def status(self, what: str) -> dict | None:
        """``/api/v1/status/<what>`` data, or None when the server has no such endpoint."""
        try:
            return self.call("GET", f"/api/v1/status/{what}", {}, f"status {what!r}").get("data")
        except PrometheusError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                self.missing[what] = exc.status
                return None
            raise

    def get_raw(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=self.src.timeout_s, allow_redirects=False,
                                verify=self.session.verify)

    def instant(self, name: str, expr: str, at: float, cluster: str = "all") -> list[dict]:
        """An instant query at ``at`` (unix seconds)."""
        params = {"query": expr, "time": f"{at:.3f}", "timeout": self._server_timeout(), **self.query_params}
        env = self.call("POST", "/api/v1/query", params, f"query {name!r} (clusters: {cluster})", query=False)
        return env["data"]["result"]

    def query_range(self, name: str, expr: str, start: float, end: float, step: int, cluster: str = "all",
                    extra: dict | None = None) -> RangeAnswer:
        """One range request (``start``, ``end`` inclusive). :class:`TooHeavy` passes through."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step),
                  "timeout": self._server_timeout(), "stats": "all", **self.query_params, **(extra or {})}
        window = f" (window {fmt_ts(start)} .. {fmt_ts(end)})"
        t = time.perf_counter()
        try:
            env = self.call("POST", "/api/v1/query_range", params, f"query {name!r} (clusters: {cluster})", query=True,
                            window=window)
        except TooHeavy:
            self._record(RequestRecord(name, cluster, start, end, step, time.perf_counter() - t, "too-heavy", params=params))
            raise
        except PrometheusError as exc:
            bad_query = "HTTP 4" in str(exc) or exc.status == 200  # a 200 "error" names the query too
            raise PrometheusError(f"{exc}; PromQL: {expr}" if bad_query else str(exc), exc.status, exc.plain) from None
        data = env.get("data") or {}
        stats = data.get("stats") or {}
        samples = stats.get("samples") or {}  # absent before Prometheus 2.35 (docs/research 8.5)
        timings = stats.get("timings") or {}
        ans = RangeAnswer(data.get("result") or [], start, end, step, _int(samples.get("peakSamples")),
                          _int(samples.get("totalQueryableSamples")), timings.get("evalTotalTime"),
                          [self.clean(str(w)) for w in env.get("warnings") or []])
        self._record(RequestRecord(name, cluster, start, end, step, time.perf_counter() - t, "ok",
                                   sum(len(r.get("values") or ()) for r in ans.result), ans.peak_samples, ans.total_samples,
                                   params, ans.eval_s))
        return ans

    def labels(self, match: str, start: float, end: float) -> list[str]:
        env = self.call("POST", "/api/v1/labels", {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"},
                        f"labels of {match}")
        return list(env.get("data") or [])

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.records.append(rec)


def _tls_message(url: str, exc: Exception) -> str:
    """A failed TLS handshake in one line: why, and how to trust the server's CA."""
    text = str(exc)
    why = ("the certificate is self-signed or signed by a CA this machine does not trust"
           if re.search(r"self[- ]signed|unable to get local issuer|CERTIFICATE_VERIFY_FAILED", text) else
           "the certificate does not name this host" if "match" in text or "hostname" in text.lower() else
           re.sub(r"\s+", " ", text)[-160:])
    return (f"cannot connect to {url}: TLS verification failed ({why}). To trust the server's CA, set "
            "source.prometheus.ca_file to its CA bundle (PEM; relative to capplan.yaml), or set REQUESTS_CA_BUNDLE; "
            "verify_tls: false turns verification off (only for a test server)")


def _unreachable(url: str, exc: Exception) -> Unreachable:
    """requests' ConnectionError (urllib3's 400-character "Max retries exceeded ...
    (Caused by NewConnectionError(...))") as one plain sentence."""
    text = str(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return Unreachable(f"cannot connect to {url} (connection refused); is Prometheus running there?")
    if re.search(r"NameResolution|Name or service not known|nodename nor servname|Temporary failure in name resolution|"
                 r"No address associated|getaddrinfo failed", text):
        host = requests.utils.urlparse(url).hostname
        return Unreachable(f"cannot connect to {url} (host {host!r} not found in DNS); check source.prometheus.url")
    if re.search(r"RemoteDisconnected|Connection aborted|Connection reset|BrokenPipe", text):
        return Unreachable(f"the connection to {url} was closed before an answer came (a proxy or a restart?)")
    if "timed out" in text.lower():
        return Unreachable(f"cannot connect to {url} (the connection timed out); is the host right and reachable?")
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return Unreachable(f"cannot connect to {url} ({m.group(1).strip() if m else type(exc).__name__})")


def _not_json(url: str, method: str, path: str, r: requests.Response, query: bool = False,
              clean: Callable[[str], str] = str) -> None:
    """An answer that is not the API's JSON envelope: a truncated answer (retried), a
    proxy's error page (a 504 or a "too many samples" text on a query: too heavy, split; 429
    and other 5xx: retried) or a server that is not a Prometheus API (stop). Never prints
    the page itself (an HTML error page is 400 lines of markup); a short plain-text answer
    is quoted with the credentials scrubbed (``clean``: an auth proxy may echo the token)."""
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
    status = r.status_code
    if status == 200 and ("json" in ctype or not r.content):
        raise Transient("the answer was not complete JSON (truncated?)")
    text = r.text.strip() if "html" not in ctype else ""
    said = clean(f": {text}") if text and len(text) <= 120 and "\n" not in text else ""
    what = f"HTTP {status} from {url} ({ctype} answer, not the API's JSON){said}"
    if query and (status == 504 or _HEAVY.search(r.text[:300])):
        raise TooHeavy(what)
    if status == 429 or (status >= 500 and status != 501):
        raise Transient(what)
    if status in (401, 403):
        hint = "unauthorised: check the token or credentials" if status == 401 else "forbidden: check the credentials"
        raise PrometheusError(f"{url}: {method} {path} returned {status} ({hint}; {ctype} answer){said}",
                              status, plain=True)
    raise PrometheusError(f"{url}: not a Prometheus API ({method} {path} returned {status}"
                          + (f", {ctype}" if status == 200 else "") + ")"
                          + ("; is it the query API's base URL (Mimir: .../prometheus)?" if status == 404 else ""),
                          status, plain=True)


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class WindowPlanner:
    """How many steps one request of a query may cover, learned as requests come back.

    The first request of a query covers one day (a probe, unless the doctor measured the
    cost already). From its ``stats`` (peak samples and evaluation time per step) the
    next requests are sized to use at most ``budget_samples`` and half the timeout; a
    request that is too heavy anyway is split and the smaller size is kept."""

    def __init__(self, step: int, budget_samples: int, timeout_s: float, max_points: int, max_length_s: int | None,
                 fallback_s: int = 7 * 86400):
        self.step = step
        self.budget = budget_samples
        self.timeout_s = timeout_s
        self.max_steps = max(1, min(max_points, (max_length_s // step) if max_length_s else max_points))
        self.fallback = max(1, min(self.max_steps, fallback_s // step))
        self._steps: dict[str, int] = {}
        self._cap: dict[str, int] = {}  # sizes that were too heavy once are never asked again
        self._total: dict[str, float] = {}  # samples read per step, from the last answer
        self._lock = threading.Lock()

    def steps(self, key: str) -> int:
        """Steps of the next request of ``key``: whole days when a request is a day or more
        (day-aligned requests are what Mimir's query-frontend splits and caches by)."""
        with self._lock:
            n = self._steps.get(key) or max(1, min(self.max_steps, 86400 // self.step))
            n = max(1, min(n, self._cap.get(key, n)))
        day = 86400 // self.step if 86400 % self.step == 0 else 0
        return n - n % day if day and n >= day else n

    def expected_samples(self, key: str, steps: int) -> float:
        """Samples a request of ``steps`` is expected to read (0 before any answer)."""
        with self._lock:
            return self._total.get(key, 0.0) * steps

    def seed(self, key: str, peak_per_step: float | None, eval_s_per_step: float | None) -> None:
        """Size ``key`` from a measured cost (the doctor's probe, or a returned request)."""
        n = self.max_steps
        if peak_per_step:
            n = min(n, int(self.budget / peak_per_step))
        if eval_s_per_step:
            n = min(n, int(0.5 * self.timeout_s / eval_s_per_step))
        if not peak_per_step and not eval_s_per_step:
            n = self.fallback
        with self._lock:
            self._steps[key] = max(1, n)

    def learn(self, key: str, ans: RangeAnswer) -> None:
        steps = ans.steps
        self.seed(key, ans.peak_samples / steps if ans.peak_samples else None,
                  ans.eval_s / steps if ans.eval_s else None)
        if ans.total_samples is not None:
            with self._lock:
                self._total[key] = ans.total_samples / steps

    def shrink(self, key: str, steps: int) -> None:
        """A request of ``steps`` was too heavy: never ask for more than half of it again."""
        with self._lock:
            self._cap[key] = max(1, min(self._cap.get(key, steps), steps // 2 or 1))

    def pull(self, client: PromClient, key: str, name: str, expr: str, first: float, last: float, cluster: str,
             extra: Callable[[float, float], dict] | None = None, budget: Any = None,
             answered: Callable[[RangeAnswer], None] | None = None) -> list[RangeAnswer]:
        """Every evaluation point ``first .. last`` (inclusive, on the grid) of one query.
        ``budget`` (:class:`pipelines.io.sources.budget.Budget`): each request waits for a
        query slot and for its expected samples under the rate limit. ``answered`` is called
        with each answer as it comes (the ingest commits it)."""
        out: list[RangeAnswer] = []
        pos = first
        while pos <= last:
            b = min(pos + (self.steps(key) - 1) * self.step, last)
            for ans in self._split(client, key, name, expr, pos, b, cluster, extra, budget):
                self.learn(key, ans)
                out.append(ans)
                if answered:
                    answered(ans)
            pos = b + self.step
        return out

    def _request(self, client: PromClient, key: str, name: str, expr: str, a: float, b: float, cluster: str,
                 extra: Callable[[float, float], dict] | None, budget: Any) -> RangeAnswer:
        if budget is None:
            return client.query_range(name, expr, a, b, self.step, cluster, extra(a, b) if extra else None)
        expected = self.expected_samples(key, int((b - a) // self.step) + 1)
        with budget.slots:
            budget.take(expected, f"query {name!r} (clusters: {cluster})")
            ans = client.query_range(name, expr, a, b, self.step, cluster, extra(a, b) if extra else None)
        budget.settle(expected, ans.total_samples)
        return ans

    def _split(self, client: PromClient, key: str, name: str, expr: str, a: float, b: float, cluster: str,
               extra: Callable[[float, float], dict] | None, budget: Any = None) -> list[RangeAnswer]:
        try:
            return [self._request(client, key, name, expr, a, b, cluster, extra, budget)]
        except TooHeavy as exc:
            steps = int((b - a) // self.step) + 1
            if steps == 1:
                raise PrometheusError(
                    f"query {name!r} (clusters: {cluster}) is too heavy even for one step at {fmt_ts(a)} against "
                    f"{client.src.url}: {exc}. Raise the server's limit (query.max-samples, query.timeout) or "
                    f"source.prometheus.timeout_s, or pull fewer clusters at once (source.prometheus.clusters)") from None
            self.shrink(key, steps)
            mid = a + ((steps // 2) - 1) * self.step
            return (self._split(client, key, name, expr, a, mid, cluster, extra, budget)
                    + self._split(client, key, name, expr, mid + self.step, b, cluster, extra, budget))
