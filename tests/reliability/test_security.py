"""Security: untrusted labels escaped everywhere, SQL only with parameters, secrets never
stored or logged, TLS verification on by default."""

import ast
import email
import email.policy
import re

import pytest

from pipelines.config import Config, Email
from forecasting.plandoc import pool_summary
from pipelines.present.email import Image, build_message

from ..conftest import ROOT
from ..pipelines.test_report import EVIL, _inputs

secret = pytest.mark.reliability(kind="secret")
bad_input = pytest.mark.reliability(kind="bad_input")


@bad_input
def test_email_escapes_hostile_labels():
    inp = _inputs()
    pools = pool_summary(inp.decisions, inp.actions)
    msg = build_message(Email(to=["a@example.com"]), f"Capacity plan: {EVIL}", [f"cluster {EVIL}"], pools, inp.actions, None,
                        [Image(EVIL, b"\x89PNG\r\n\x1a\nxx")])
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_sql_is_only_built_from_fixed_identifiers():
    """Every execute() whose SQL is an f-string may only interpolate fixed names (tables
    from RUN_TABLES, column lists), never values: values always go as parameters."""
    allowed = {"table", "cols", "columns", "', '.join(cols)"}
    offenders = []
    paths = sorted((ROOT / "pipelines").rglob("*.py"))
    assert any(p.name == "store.py" for p in paths)  # the module that runs SQL is among them
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "execute" and node.args:
                sql = node.args[0]
                if isinstance(sql, ast.JoinedStr):
                    names = {ast.unparse(v.value) for v in sql.values if isinstance(v, ast.FormattedValue)}
                    if not names <= allowed:
                        offenders.append(f"{path.name}:{node.lineno} interpolates {names - allowed}")
                if isinstance(sql, ast.BinOp) or (isinstance(sql, ast.Call) and getattr(sql.func, "attr", "") == "format"):
                    offenders.append(f"{path.name}:{node.lineno} builds SQL by concatenation/format")
    assert not offenders, offenders


def test_tls_verification_is_on_by_default():
    cfg = Config()
    assert cfg.source.prometheus.verify_tls is True
    assert cfg.email.security == "starttls"


@secret
def test_config_holds_no_secret_fields():
    """Credentials are named by environment variable only: no field takes a password/token value."""
    def fields(model, prefix=""):
        for name, f in model.model_fields.items():
            yield prefix + name
            ann = f.annotation
            if hasattr(ann, "model_fields"):
                yield from fields(ann, prefix + name + ".")
    names = list(fields(Config))
    risky = [n for n in names if re.search(r"(password|token|secret)", n) and not n.endswith("_env")]
    assert not risky, risky


@secret
def test_prometheus_token_never_stored_or_logged(tmp_path, monkeypatch, caplog):
    from ..pipelines.test_prometheus import prom_config, window
    from ..reliability.test_faults import TOKEN, FakeProm, matrix
    from pipelines.config import load_config
    from pipelines.io.sources.prometheus import PrometheusError, ingest_prometheus
    from pipelines.io.store import Store

    monkeypatch.setenv("CAPPLAN_PROM_TOKEN", TOKEN)
    fake = FakeProm(lambda path: (200, matrix([])) if "query_range" in path else (500, f'{{"error": "boom {TOKEN}"}}'))
    try:
        cfg = load_config(prom_config(tmp_path, fake.url))
        with pytest.raises(PrometheusError) as exc:
            ingest_prometheus(Store(cfg.path(cfg.store.path)), cfg, window(cfg))
        assert TOKEN not in str(exc.value)
        assert any(h.get("Authorization") == f"Bearer {TOKEN}" for h in fake.headers_seen)
    finally:
        fake.stop()
    assert TOKEN not in caplog.text
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
