"""Recorded series first: a real Prometheus holding months of kube-prometheus-stack's
recording rules (evaluated by ``promtool tsdb create-blocks-from rules`` over the backfilled
raw series, pipelines.testing.promserver), pulled through the mixins' recorded series and
through the raw series, compared with each other and with the generator's truth; what each
pull cost (stats=all, the query_costs table), the budget, and a pull that resumes."""

from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest

from pipelines.config import PrometheusSource, load_config
from pipelines.domain import HistoryWindow
from pipelines.io.sources.budget import Budget, BudgetExceeded, resolve_budget
from pipelines.io.sources.catalog import load_metric_catalog, rule_names
from pipelines.io.sources.doctor import inspect
from pipelines.io.sources.prometheus import connect, ingest_prometheus
from pipelines.io.store import Store
from pipelines.testing.promfixtures import AS_OF, RECORDED_WEST_SINCE_DAY, prom_site, recorded_spec, served, stop_served
from pipelines.testing.promserver import PROMETHEUS, PROMTOOL

needs_prometheus = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL), reason="Debian's prometheus is not installed")
WINDOW = HistoryWindow.ending(AS_OF, 7)
KEYS = ["cluster", "pool", "resource", "kind", "day"]


def daily(frame: pd.DataFrame) -> pd.DataFrame:
    f = frame.assign(day=frame["ts"].dt.floor("D"))
    return f.groupby(KEYS)["value"].agg(["max", "mean"])


def only_the_reboot_day_differs(raw: pd.DataFrame, got: pd.DataFrame, fleet, min_rows: int) -> tuple:
    """Asserts that two pulls' pool-days (:func:`daily`) are the same (at least ``min_rows``)
    and equal within 1% except on the reboot's pool-day, where ``got`` reads no less; returns
    that pool-day."""
    assert list(raw.index) == list(got.index) and len(raw) >= min_rows
    err = (got / raw - 1).abs()
    bad = err[(err > 0.01).any(axis=1)]
    reboot = _reboot_day(fleet)
    assert set(bad.index) <= {reboot}, bad
    assert (got.loc[reboot] >= raw.loc[reboot] * 0.999).all()
    return reboot


@pytest.fixture(scope="session")
def rec(tmp_path_factory):
    if not (PROMETHEUS and PROMTOOL):
        pytest.skip("Debian's prometheus is not installed")
    s = served("recorded", tmp_path_factory.mktemp("prom-recorded"), recorded_spec())
    yield s
    stop_served("recorded")


def _pull(folder, url, mode: str, extra: str = ""):
    cfg = load_config(prom_site(folder, url, 14, f"    recorded: {mode}\n{extra}"))
    store = Store(cfg.path(cfg.store.path))
    client = connect(cfg)
    res = ingest_prometheus(store, cfg, WINDOW, client=client)
    return SimpleNamespace(cfg=cfg, store=store, client=client, res=res, daily=daily(store.pool_samples(*WINDOW)))


@pytest.fixture(scope="session")
def pulls(rec, tmp_path_factory):
    """The same 7 days pulled twice: raw series only, and recorded series where they exist."""
    return SimpleNamespace(raw=_pull(tmp_path_factory.mktemp("raw"), rec.url, "never"),
                           recorded=_pull(tmp_path_factory.mktemp("rec"), rec.url, "auto"))


def _reboot_day(fleet) -> tuple:
    """The pool-day whose node-exporter restarts (a reboot: 10 minutes without scrapes)."""
    for cd in fleet.clusters:
        for nd in cd.nodes:
            if nd.boot > 0:
                ts = pd.Timestamp(fleet.grid[nd.boot] - 1, unit="s", tz="UTC").floor("D")
                return cd.spec.name, nd.pool, "cpu", "usage", ts
    raise AssertionError("the fixture has no reboot")


@needs_prometheus
def test_the_doctor_finds_each_clusters_recorded_series_and_since_when(rec):
    cfg = load_config(prom_site(rec.folder / "doctor", rec.url, 14))
    setup = inspect(connect(cfg), cfg.source.prometheus, WINDOW, 3600, rule_names(load_metric_catalog()))
    by = {cs.name: cs.recorded for cs in setup.clusters}
    start = WINDOW.start.timestamp()
    # east: the rules ran for the whole window (as for months); west: enabled on day 3 of the data
    assert by["east"]["instance:node_cpu_utilisation:rate5m"] == start
    west_since = pd.Timestamp(AS_OF, tz="UTC").timestamp() - (8 - RECORDED_WEST_SINCE_DAY) * 86400
    for rule in ("instance:node_cpu_utilisation:rate5m", "cluster:namespace:pod_cpu:active:kube_pod_container_resource_requests"):
        assert west_since < by["west"][rule] <= west_since + 3600, rule  # to the hour
    # both spellings are looked for; the kubernetes-mixin's has no node label on these stacks
    assert "node:node_cpu_utilization:ratio_rate5m" not in by["east"]
    detail = {c.cluster: c.detail for c in setup.checks if c.check == "recorded series"}
    assert "instance:node_cpu_utilisation:rate5m (node-mixin)" in detail["east"]
    assert "node:node_cpu_utilization:ratio_rate5m has no node label" in detail["east"]


@needs_prometheus
def test_recorded_and_raw_pulls_give_the_same_pool_days(rec, pulls):
    raw, got = pulls.raw.daily, pulls.recorded.daily
    # The one difference: the node-mixin's `1 - idle` rule reads a node as busy for the few
    # minutes its idle counter's rate window empties (an exporter restart: the reboot's 10
    # minutes without scrapes); the raw busy-mode sum reads less there. It only ever reads
    # more, by less than one node's idle share for an hour.
    reboot = only_the_reboot_day_differs(raw, got, rec.fleet, 4 * 8 * 7)
    assert (got.loc[reboot] / raw.loc[reboot] - 1).max() < 0.05
    # and both match the generator's truth, per pool and day (the raw pull everywhere)
    truth = rec.fleet.truth_daily()
    truth = truth[(truth["day"] >= WINDOW.start) & (truth["day"] < WINDOW.end)].set_index(KEYS)
    for frame, known in ((raw, set()), (got, {reboot})):
        e = (frame.reindex(truth.index) / truth[["max", "mean"]] - 1).abs()
        assert set(e[(e > 0.01).any(axis=1)].index) <= known, e[(e > 0.01).any(axis=1)]


@needs_prometheus
def test_the_pull_reads_recorded_series_where_they_exist_and_raw_before(pulls):
    with duckdb.connect(str(pulls.recorded.store.path), read_only=True) as con:
        costs = con.execute("SELECT query_group, variant, cluster, window_start, window_end, samples, server_s, requests "
                            "FROM query_costs").df()
    assert len(costs) and (costs["samples"] > 0).all() and (costs["requests"] == 1).all()
    cpu = costs[costs["query_group"] == "pool_cpu_usage"]
    assert set(cpu[cpu["cluster"] == "east"]["variant"]) == {"recorded"}  # rules for the whole window
    west = cpu[cpu["cluster"] == "west"].sort_values("window_start")
    assert list(dict.fromkeys(west["variant"])) == ["raw", "recorded"]  # raw, then recorded from the rules' start
    cut = west[west["variant"] == "recorded"]["window_start"].min()
    assert west[west["variant"] == "raw"]["window_end"].max() == cut
    # capacity and storage have no recorded series: raw everywhere
    assert set(costs[costs["query_group"] == "pool_cpu_capacity"]["variant"]) == {"raw"}
    # the raw-only pull never asks for a recorded series
    sent = [r.params["query"] for r in pulls.raw.client.records if not r.name.startswith("doctor:")]
    assert sent and not any("instance:node_" in q or ":active:" in q for q in sent)


@needs_prometheus
def test_recorded_series_cost_the_server_less_and_the_cost_is_reported(pulls):
    def per_day(pull, group, cluster, col):
        with duckdb.connect(str(pull.store.path), read_only=True) as con:
            return con.execute(f"SELECT sum({col}) / (sum(epoch(window_end) - epoch(window_start)) / 86400) FROM query_costs "
                               "WHERE query_group = ? AND cluster = ? AND variant = ?",
                               [group, cluster, "raw" if pull is pulls.raw else "recorded"]).fetchall()[0][0]

    # samples from stats=all: exact for the drill-down queries (no subquery; Prometheus 2.42
    # does not count the samples inside the pool queries' peak subquery, the doctor's probes do)
    assert per_day(pulls.recorded, "node_cpu_usage", "east", "samples") < per_day(pulls.raw, "node_cpu_usage", "east",
                                                                                  "samples") / 4
    # the server's evaluation time: the five-minute peaks over the rule's one series per node
    # instead of eight modes per CPU and their rate windows
    assert per_day(pulls.recorded, "pool_cpu_usage", "east", "server_s") < per_day(pulls.raw, "pool_cpu_usage", "east",
                                                                                   "server_s")
    raw, got = pulls.raw.res.cost, pulls.recorded.res.cost
    assert got["samples"] < raw["samples"] and set(got["by_variant"]) == {"raw", "recorded"}
    assert got["line"].startswith("Prometheus pull: ") and f"{got['samples']:,} samples read" in got["line"]
    with duckdb.connect(str(pulls.recorded.store.path), read_only=True) as con:
        assert con.execute("SELECT sum(samples) FROM query_costs").fetchall()[0][0] == got["samples"]


@needs_prometheus
def test_an_interrupted_pull_resumes_from_the_last_committed_request(rec, pulls, tmp_path):
    cfg_extra = "    budget: {total_samples: 60000}\n"
    cfg = load_config(prom_site(tmp_path, rec.url, 14, cfg_extra))
    store = Store(cfg.path(cfg.store.path))
    with pytest.raises(BudgetExceeded, match="budget.total_samples"):
        ingest_prometheus(store, cfg, WINDOW, client=connect(cfg))
    kept = store.stored_windows("prometheus")
    assert len(kept) > 0
    # again without the limit: only what was not committed is asked for
    cfg = load_config(tmp_path / "capplan.yaml", {"source": {"prometheus": {"budget": {"total_samples": None}}}})
    client = connect(cfg)
    ingest_prometheus(store, cfg, WINDOW, client=client)
    for r in client.records:
        if r.name.startswith("doctor:"):
            continue
        shift = 3600 if r.name.startswith(("pool_", "storage_")) else 0  # pool points are stored an hour earlier
        a, b = pd.Timestamp(r.start - shift, unit="s", tz="UTC"), pd.Timestamp(r.end - shift, unit="s", tz="UTC")
        mine = kept[(kept["query_name"].str.split("#").str[0] == r.name) & (kept["cluster"] == r.cluster)]
        assert not ((mine["window_start"] <= b) & (mine["window_end"] > a)).any(), (r.name, r.cluster, a)
    pd.testing.assert_frame_equal(store.pool_samples(*WINDOW).reset_index(drop=True),
                                  pulls.recorded.store.pool_samples(*WINDOW).reset_index(drop=True), check_dtype=False)


def test_the_low_impact_preset_and_the_budget():
    low = resolve_budget(PrometheusSource(budget={"preset": "low_impact"}))
    assert (low.max_concurrency, low.samples_per_s, low.samples_budget_pct) == (1, 2_000_000.0, 10.0)
    mine = resolve_budget(PrometheusSource(max_concurrency=6, budget={"preset": "low_impact", "max_concurrency": 2,
                                                                       "samples_per_s": 50.0}))
    assert (mine.max_concurrency, mine.samples_per_s) == (2, 50.0)
    normal = resolve_budget(PrometheusSource(max_concurrency=6))
    assert (normal.max_concurrency, normal.samples_per_s, normal.total_samples) == (6, None, None)
    b = Budget(1, None, 1000, 50.0)
    b.take(600, "q")
    b.settle(600, 700)
    assert b.spent == 700
    with pytest.raises(BudgetExceeded, match="would pass source.prometheus.budget.total_samples"):
        b.take(400, "q")
    b.take(300, "q")  # exactly at the limit is allowed


@needs_prometheus
def test_clusters_on_their_own_servers_are_pulled_together(rec, pulls, tmp_path):
    """One server per cluster (here the same Prometheus behind two entries, each serving
    one cluster): both pulled in one pool, each server within its own query slots."""
    extra = (f"    servers:\n      - {{url: {rec.url}, clusters: [east]}}\n      - {{url: {rec.url}, clusters: [west]}}\n"
             "    budget: {max_concurrency: 1}\n")
    cfg = load_config(prom_site(tmp_path, rec.url, 14, extra))
    assert [(s.url, s.clusters) for s in cfg.source.prometheus.per_server()] == [(rec.url, ["east"]), (rec.url, ["west"])]
    store = Store(cfg.path(cfg.store.path))
    res = ingest_prometheus(store, cfg, WINDOW)
    assert set(res.inventory["cluster"]) == {"east", "west"} and res.cost["budget"].count("1 query at once") == 2
    pd.testing.assert_frame_equal(store.pool_samples(*WINDOW).reset_index(drop=True),
                                  pulls.recorded.store.pool_samples(*WINDOW).reset_index(drop=True), check_dtype=False)
    twice = load_config(prom_site(tmp_path / "twice", rec.url, 14, f"    servers:\n      - {{url: {rec.url}}}\n"
                                                                   f"      - {{url: {rec.url}}}\n"))
    with pytest.raises(Exception, match="a cluster is served by two servers"):
        ingest_prometheus(Store(twice.path(twice.store.path)), twice, WINDOW)
