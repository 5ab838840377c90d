"""Email through a real SMTP server (aiosmtpd on 127.0.0.1)."""

import email
import email.policy
import logging
import re
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import load_config
from pipelines.io.smtp import EmailError
from pipelines.jobs.notify import send_run_report
from pipelines.io.store import Store

from ..conftest import AS_OF
from pipelines.testing.promserver import free_port

pytestmark = pytest.mark.integration
SECRET = "s3cr3t-Pa55word-xyz"



class Handler:
    def __init__(self, refuse_first: int = 0):
        self.messages: list[bytes] = []
        self.refuse_first = refuse_first
        self.calls = 0

    async def handle_DATA(self, server, session, envelope):
        self.calls += 1
        if self.calls <= self.refuse_first:
            return "451 4.3.0 try again later"
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password.decode() == SECRET
        return AuthResult(success=ok)

    servers = []

    def start(refuse_first=0):
        handler = Handler(refuse_first)
        port = free_port()
        ctl = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False)
        ctl.start()
        servers.append(ctl)
        return handler, port

    yield start
    for s in servers:
        s.stop()


def _email_config(demo_run, port, retries=2, extra=""):
    cfg_path = demo_run["config"]
    text = cfg_path.read_text()
    text = text.replace("enabled: false", "enabled: true").replace("port: 25", f"port: {port}")
    text = text.replace("security: starttls        # none | starttls | ssl", "security: none")
    text = text.replace("cc: []", f"cc: [cto@example.com]\n  retries: {retries}\n  retry_delay_s: 0.1")
    path = cfg_path.with_name(f"capplan-email-{port}.yaml")
    path.write_text(text + extra)
    return load_config(path)


def test_email_parts_headers_inline_chart_and_attachment(demo_run, smtp, monkeypatch, caplog):
    monkeypatch.setenv("CAPPLAN_SMTP_USER", "capplan")
    monkeypatch.setenv("CAPPLAN_SMTP_PASSWORD", SECRET)
    handler, port = smtp()
    cfg = _email_config(demo_run, port)
    run_id = demo_run["result"]["run_id"]
    caplog.set_level(logging.DEBUG)
    # the test SMTP server's own DEBUG log has a line per line of DATA (a 7 MB message): on a
    # loaded machine that alone outlasts the client's timeout; capplan's loggers stay at DEBUG
    caplog.set_level(logging.INFO, logger="mail.log")
    out = send_run_report(cfg, run_id)
    assert out["status"] == "sent" and out["inline_chart"]
    assert len(handler.messages) == 1
    msg = email.message_from_bytes(handler.messages[0], policy=email.policy.default)
    assert re.match(r"Capacity plan 2026-11: .+", msg["Subject"])
    assert msg["To"] == "capacity-mgmt@example.com" and msg["Cc"] == "cto@example.com"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Expansion plan" in plain and "order by" in plain
    assert "<script" not in html.lower() and not re.search(r'src="https?:', html)
    cids = re.findall(r'src="cid:([^"]+)"', html)
    images = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(images) == 2 and sorted(i["Content-ID"].strip("<>") for i in images) == sorted(cids)  # overview + urgent pool
    for img in images:
        png = img.get_content()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") <= 640  # fits a mail client's reading pane (IHDR width)
    assert all(int(w) <= 640 for w in re.findall(r'<img [^>]*width="(\d+)"', html))
    for part in (plain, html):  # units everywhere, never a bare number or a missing value
        assert not re.search(r"\b(nan|None|NaT)\b", part)
    store = Store(demo_run["db"])
    for a in store.table("plans", run_id).itertuples():
        if a.action == "expand-storage":
            assert f"+{a.storage_gib / 1024:g} TiB {a.storage_type}" in html and f"+{a.storage_gib / 1024:g} TiB {a.storage_type}" in plain
            line = next(x for x in plain.splitlines() if x.startswith(f"- {a.cluster}/{a.pool} ("))
            assert line.split("forecast peak ")[1].split(";")[0].endswith("of raw capacity"), line  # storage has no N+k
        elif a.action == "add-nodes":
            assert f"{a.quantity} x {a.instance_type}" in html
    attachments = [p for p in msg.iter_attachments() if p.get_filename() == "capacity-report.html"]
    assert len(attachments) == 1
    content = attachments[0].get_content()
    assert "Plotly.newPlot" in (content.decode() if isinstance(content, bytes) else content)
    # the secret is nowhere: message, logs, database, report files
    assert SECRET.encode() not in handler.messages[0]
    assert SECRET not in caplog.text
    assert SECRET.encode() not in Path(demo_run["db"]).read_bytes()
    for f in (demo_run["folder"] / "reports").rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes()
    from forecasting.plandoc import pool_summary
    from pipelines.present.tables import headline

    actions = store.table("plans", run_id)
    for c in ("order_by_date", "needed_by_date"):
        actions[c] = pd.to_datetime(actions[c]).dt.date
    assert msg["Subject"] == headline(pool_summary(store.table("decisions", run_id), actions), AS_OF)
    assert msg["Subject"] == demo_run["result"]["summary"]["headline"]  # the run's own headline


def test_refusing_server_is_retried_then_succeeds(demo_run, smtp, monkeypatch):
    monkeypatch.setenv("CAPPLAN_SMTP_USER", "capplan")
    monkeypatch.setenv("CAPPLAN_SMTP_PASSWORD", SECRET)
    handler, port = smtp(refuse_first=2)
    cfg = _email_config(demo_run, port, retries=2)
    out = send_run_report(cfg, demo_run["result"]["run_id"])
    assert out["status"] == "sent" and handler.calls == 3 and len(handler.messages) == 1


def test_failure_is_reported_recorded_and_the_report_kept(demo_run, smtp, monkeypatch):
    monkeypatch.setenv("CAPPLAN_SMTP_USER", "capplan")
    monkeypatch.setenv("CAPPLAN_SMTP_PASSWORD", SECRET)
    handler, port = smtp(refuse_first=10)
    cfg = _email_config(demo_run, port, retries=1)
    run_id = demo_run["result"]["run_id"]
    with pytest.raises(EmailError) as exc:
        send_run_report(cfg, run_id)
    assert f"127.0.0.1:{port}" in str(exc.value) and "2 attempt(s)" in str(exc.value) and SECRET not in str(exc.value)
    assert "capplan report --send" in str(exc.value)
    assert Path(demo_run["result"]["files"]["report"]).exists()
    with Store(demo_run["db"]).connect(read_only=True) as con:
        status = con.execute("SELECT status FROM notifications WHERE run_id = ? ORDER BY sent_at DESC LIMIT 1", [run_id]).fetchall()[0][0]
    assert status == "failed"


def test_connection_refused_is_a_clear_error(demo_run, monkeypatch):
    monkeypatch.setenv("CAPPLAN_SMTP_PASSWORD", SECRET)
    cfg = _email_config(demo_run, free_port(), retries=0)
    with pytest.raises(EmailError, match="ConnectionRefusedError"):
        send_run_report(cfg, demo_run["result"]["run_id"])


def test_cli_resend_past_run(demo_run, smtp, monkeypatch):
    import subprocess
    import sys

    handler, port = smtp()
    _email_config(demo_run, port)  # writes capplan-email-<port>.yaml
    path = next(demo_run["folder"].glob(f"capplan-email-{port}.yaml"))
    env = {**__import__("os").environ, "CAPPLAN_SMTP_USER": "capplan", "CAPPLAN_SMTP_PASSWORD": SECRET}
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "report", "--config", str(path), "--send", demo_run["result"]["run_id"]],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "sent" in r.stdout and len(handler.messages) == 1
    assert SECRET not in r.stdout + r.stderr


class _FlakyFigure:
    """A figure whose first ``fail`` renders raise as kaleido does while its page is loading."""

    class layout:
        height = 300

    def __init__(self, fail: int):
        self.fail, self.calls = fail, 0

    def to_image(self, **kwargs):
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("ReferenceError: Plotly is not defined")
        return b"\x89PNG"


def test_chart_render_is_retried_with_a_pause_then_given_up_with_the_reason(monkeypatch, caplog):
    from pipelines.present import email as email_mod
    monkeypatch.setattr(email_mod, "RENDER_PAUSE_S", 0.0)
    flaky = _FlakyFigure(fail=email_mod.RENDER_ATTEMPTS - 1)
    assert email_mod.chart_png(flaky) == b"\x89PNG" and flaky.calls == email_mod.RENDER_ATTEMPTS
    broken = _FlakyFigure(fail=99)
    with caplog.at_level(logging.WARNING, logger="capplan.email"):
        assert email_mod.chart_png(broken) is None
    assert broken.calls == email_mod.RENDER_ATTEMPTS
    assert "Plotly is not defined" in caplog.text and "sending without it" in caplog.text
