"""Bad input files are rejected with a message naming the file, line or field; property
tests for the capacity math."""

import datetime as dt
import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasting.headroom import decisions, usable_capacity, utilisation
from forecasting.sizing import usable_after
from forecasting.policy import PoolPolicy
from pipelines.config import ConfigError, load_catalog, load_config, load_events
from pipelines.io.sources import IngestError
from pipelines.io.sources.file import read_samples_file

from ..conftest import write_config
from ..forecasting.test_headroom import AS_OF, demand_frame, nodes, policy

bad_input = pytest.mark.reliability(kind="bad_input")

HEADER = "cluster,pool,resource,kind,ts,value,unit\n"


@bad_input
@pytest.mark.parametrize("body, message", [
    ("c,p,cpu,usage,yesterday,1,cores\n", r"line 2: timestamp 'yesterday' has no time zone"),
    ("c,p,cpu,usage,2026-11-01T10:00:00,1,cores\n", r"line 2: timestamp .* has no time zone"),
    ("c,p,cpu,usage,2026-11-01T10:00:00Z,1,cores\nc,p,cpu,usage,2026-11-01T11:00:00+08:00,1,cores\n", r"mixes time-zone offsets"),
    ("c,p,cpu,usage,2026-11-01T10:00:00Z,1,cores\nc,p,cpu,usage,2026-11-01T10:00:00Z,2,cores\n", r"line 3: duplicate sample"),
    ("c,p,cpu,usage,2026-11-01T10:00:00Z,lots,cores\n", r"line 2: value 'lots' is not a finite number"),
    ("c,p,cpu,usage,2026-11-01T10:00:00Z,inf,cores\n", r"line 2: value 'inf' is not a finite number"),
    ("c,p,cpu,usage,2026-11-01T10:00:00Z,1,millicores\n", r"line 2: unit 'millicores' for cpu; expected 'cores'"),
    ("c,p,gpu,usage,2026-11-01T10:00:00Z,1,cores\n", r"line 2: resource 'gpu'"),
])
def test_csv_imports(tmp_path, body, message):
    f = tmp_path / "export.csv"
    f.write_text(HEADER + body)
    with pytest.raises(IngestError) as exc:
        read_samples_file(f)
    assert str(f) in str(exc.value) and re.search(message, str(exc.value)), str(exc.value)


@bad_input
def test_csv_missing_columns_and_files(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("when,how_much\n1,2\n")
    with pytest.raises(IngestError, match="missing column 'ts'"):
        read_samples_file(f)
    with pytest.raises(IngestError, match="file not found"):
        read_samples_file(tmp_path / "nope.csv")


def test_good_csv_and_wide_csv(tmp_path):
    f = tmp_path / "ok.csv"
    f.write_text(HEADER + "c,p,cpu,usage,2026-11-01T10:00:00Z,1.5,cores\nc,p,cpu,usage,2026-11-01T11:00:00+00:00,2,cores\n")
    out = read_samples_file(f)
    assert list(out["value"]) == [1.5, 2.0] and out["ts"].dt.tz is not None
    w = tmp_path / "wide.csv"
    w.write_text("timestamp,cluster=c/pool=p/resource=cpu/kind=usage\n2026-11-01T10:00:00Z,3\n")
    assert read_samples_file(w)["value"].tolist() == [3.0]


@bad_input
@pytest.mark.parametrize("edit, field", [
    (("threshold_pct: 70", "threshold_pct: -1"), "threshold_pct"),
    (("threshold_pct: 70", "threshold_pct: 101"), "threshold_pct"),
    (("redundancy_k: 2", "redundancy_k: two"), "redundancy_k"),
    (("lead_time_days: 30", "lead_time_days: -3"), "lead_time_days"),
    (("model: auto ", "model: oracle "), "forecasting.model"),
    (("level_pct: 80", "level_pct: 100"), "level_pct"),
    (("source:\n", "sauce:\n"), "sauce"),
])
def test_config_values(tmp_path, edit, field):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(*edit, 1))
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert str(cfg) in str(exc.value) and field in str(exc.value) and "\n" not in str(exc.value)


@bad_input
@pytest.mark.parametrize("entry, message", [
    ("{name: a, start: 2026-11-12, end: 2026-11-01, uplift_pct: 5}", "end 2026-11-01 is before start"),
    ("{name: a, start: 2026-11-01, end: 2026-11-02, uplift_pct: -100}", "above -100"),
    ("{name: a, start: 2026-11-01, end: 2026-11-02, scope: {level: galaxy}}", "scope.level"),
    ("{name: a, start: 2026-11-01, end: 2026-11-02, scope: {level: tier}}", "needs at least one name"),
    ("{name: a, kind: step, start: 2026-11-01}", "a step needs 'uplift_pct'"),
    ("{name: a, start: 2026-11-01, uplift_pct: 5}", "an uplift needs 'end'"),
    ("{name: a, start: not-a-date, end: 2026-11-02}", "start"),
])
def test_event_files(tmp_path, entry, message):
    f = tmp_path / "events.yaml"
    f.write_text(f"events:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=message) as exc:
        load_events(f)
    assert "event 'a'" in str(exc.value) and str(f) in str(exc.value)


@bad_input
@pytest.mark.parametrize("entry, message", [
    ("{name: big, vcpu: 0, memory_gib: 4, on_demand_hourly_usd: 1}", "vcpu"),
    ("{name: big, vcpu: 2, memory_gib: 4, on_demand_hourly_usd: -0.1}", "on_demand_hourly_usd"),
    ("{name: big, vcpu: 2, memory_gib: 4, on_demand_hourly_usd: 1, spot_discount_pct: 120}", "spot_discount_pct"),
    ("{name: big, vcpu: 2, memory_gib: 4}", "on_demand_hourly_usd"),
])
def test_catalog_files(tmp_path, entry, message):
    f = tmp_path / "instances.yaml"
    f.write_text(f"prices_as_of: 2026-11-01\ninstance_types:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=message) as exc:
        load_catalog(f)
    assert "entry 'big'" in str(exc.value)


@bad_input
def test_unknown_instance_type_in_a_policy_is_named(demo_run, tmp_path):
    from forecasting.policy import CatalogError
    from pipelines.config import load_catalog as lc

    cat = lc(demo_run["folder"] / "catalogs" / "instances.yaml")
    with pytest.raises(CatalogError, match="'c9z.huge' is not in the catalog"):
        cat.instance("c9z.huge")


# -- properties of the capacity math -------------------------------------------------
node_sizes = st.lists(st.floats(min_value=0.5, max_value=64), min_size=1, max_size=12)


@given(sizes=node_sizes, k=st.integers(0, 3), zones=st.integers(1, 4), unit=st.sampled_from(["node", "zone"]))
@settings(max_examples=150, deadline=None)
def test_n_plus_k_never_exceeds_capacity(sizes, k, zones, unit):
    inv = pd.concat([nodes(1, cpu=c, zones=(f"z{i % zones}",)).assign(node=f"n{i}") for i, c in enumerate(sizes)], ignore_index=True)
    u = usable_capacity(inv, policy(redundancy_k=k, failure_unit=unit)).set_index("resource")
    assert 0 <= u.loc["cpu", "usable"] <= u.loc["cpu", "capacity"] + 1e-9
    if k == 0:
        assert u.loc["cpu", "usable"] == pytest.approx(u.loc["cpu", "capacity"])


@given(base=st.lists(st.floats(min_value=0, max_value=20), min_size=3, max_size=30), extra=st.floats(min_value=0, max_value=10))
@settings(max_examples=150, deadline=None)
def test_more_demand_never_gives_a_later_trigger(base, extra):
    inv = nodes(5)
    pol = policy(demand_bound="point")
    usable = usable_capacity(inv, pol)

    def trigger(values):
        d = decisions(utilisation(demand_frame("cpu", "usage", values), usable, pol), pol, AS_OF, 90).iloc[0]
        return d["trigger_date"] or dt.date.max

    assert trigger([v + extra for v in base]) <= trigger(base)


@given(sizes=node_sizes, add=st.integers(0, 6), k=st.integers(0, 2))
@settings(max_examples=150, deadline=None)
def test_adding_nodes_never_raises_utilisation(sizes, add, k):
    inv = pd.concat([nodes(1, cpu=c, zones=(f"z{i % 3}",)).assign(node=f"n{i}") for i, c in enumerate(sizes)], ignore_index=True)
    p = PoolPolicy(redundancy_k=k)
    alloc = {"cpu": float(max(sizes)), "memory": 16.0 * 2**30, "pods": 110.0}
    before = usable_after(inv, {}, p)["cpu"]
    after = usable_after(inv, {"x": (add, alloc)}, p)["cpu"]
    assert after >= before - 1e-9  # more usable capacity means utilisation can only fall


@bad_input
def test_a_fleet_type_missing_from_the_catalog_stops_the_run_before_forecasting(tmp_path):
    """A real fleet runs types the shipped catalog does not price: the run stops in seconds
    naming each type, its pools and nodes, with the catalog lines to paste (sizes from the
    nodes' allocatable), and publishes nothing."""
    import duckdb

    from forecasting.policy import CatalogError
    from pipelines.jobs import RunRequest, run

    from ..conftest import write_config

    cfg = write_config(tmp_path, nodes=120, clusters=1)
    inst = tmp_path / "catalogs" / "instances.yaml"
    inst.write_text("\n".join(line for line in inst.read_text().splitlines() if "name: t3.medium" not in line) + "\n")
    with pytest.raises(CatalogError) as exc:
        run(RunRequest(config_path=str(cfg)))
    msg = str(exc.value)
    assert "instance types not in the catalog: t3.medium (" in msg and "/edge)" in msg
    assert "- {name: t3.medium, vcpu: 2, memory_gib: 4, max_pods: 17, on_demand_hourly_usd: <price>" in msg
    assert not any((tmp_path / "reports").rglob("*.*"))
    with duckdb.connect(str(tmp_path / "data" / "capplan.duckdb"), read_only=True) as con:
        steps = con.execute("SELECT status FROM runs").fetchall()
        assert steps == [("failed",)]
        assert con.execute("SELECT count(*) FROM forecasts").fetchall()[0][0] == 0
        assert con.execute("SELECT count(*) FROM samples").fetchall()[0][0] > 0  # the ingest is kept for the re-run


@bad_input
def test_nodes_without_an_instance_type_stop_the_plan_with_the_label_to_add():
    from types import SimpleNamespace

    import pandas as pd

    from forecasting.policy import Catalog, CatalogError
    from pipelines.jobs.stages import require_prices

    ctx = SimpleNamespace(catalog=Catalog(prices_as_of="2026-11-01", instance_types=[]),
                          cfg=SimpleNamespace(catalogs=SimpleNamespace(instances="catalogs/instances.yaml")))
    inv = pd.DataFrame([{"cluster": "c", "pool": "p", "node": "n1", "instance_type": "unknown", "cpu_cores": 2.0,
                         "memory_bytes": 8 * 2**30, "pods": 110.0}])
    with pytest.raises(CatalogError, match=r"1 node\(s\) have no instance type \(e.g. n1 in c/p\).*node.kubernetes.io/instance-type"):
        require_prices(ctx, inv)
    assert Catalog(prices_as_of="2026-11-01", instance_types=[]).missing_instance_types(inv) is None


@bad_input
@pytest.mark.parametrize("file, edit, message", [
    ("quotas.yaml", ("region: cn-north-1", "region: cn-middle-7"), r"quotas\.yaml: quota 'L-1216C47A': quotas\.0: .*unknown aws region 'cn-middle-7'"),
    ("quotas.yaml", ("value: 1220 ", "value: -5 "), r"quotas\.yaml: quota 'L-1216C47A': quotas\.0\.value: Input should be greater than 0, got -5"),
    ("quotas.yaml", ("code: L-34B43A08", "code: L-1216C47A"), r"quotas\.yaml: .*quota code\(s\) listed twice for one account and region: L-1216C47A"),
    ("commitments.yaml", ("expiry: 2027-03-01", "expiry: 2026-01-01"),
     r"commitments\.yaml: commitment 'compute-sp-2026-03': commitments\.0: .*expiry 2026-01-01 is not after start 2026-03-01"),
    ("commitments.yaml", ("hourly_usd: 60", "hourly_usd: -60"), r"commitments\.yaml: commitment 'compute-sp-2026-03': commitments\.0\.hourly_usd"),
])
def test_bad_quota_and_commitment_catalogs_stop_before_anything_is_written(tmp_path, file, edit, message):
    """One line naming the file, the entry and the field; exit code 2; no database, no report."""
    import subprocess
    import sys

    cfg = write_config(tmp_path)
    target = tmp_path / "catalogs" / file
    assert edit[0] in target.read_text()
    target.write_text(target.read_text().replace(*edit, 1))
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    err = r.stderr.strip()
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "capplan.duckdb").exists() and not (tmp_path / "reports").exists()
