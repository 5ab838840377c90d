"""An SMTP server that fails: drops the connection after its greeting, answers 421, refuses
one recipient with 550, breaks STARTTLS, echoes the login line in its error, never greets.

Each case is a real server on 127.0.0.1: aiosmtpd with custom hooks, or a few lines of raw
socket code for what aiosmtpd cannot do (no greeting, a drop, a handshake that is not TLS).
Each checks: retried where it makes sense, one clear line, the report files and the run kept,
the attempt recorded, a re-send that goes only to those who did not get it, no credential
anywhere. The images of the email are rendered once per module (they are not under test)."""

import base64
import email
import email.policy
import logging
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.io.smtp import EmailError
from pipelines.io.store import Store
from pipelines.jobs import notify

fault = pytest.mark.reliability(kind="fault")
secret = pytest.mark.reliability(kind="secret")
pytestmark = pytest.mark.integration

USER, PASSWORD = "capplan-bot", "Pa55-w0rd-never-shown"
#: the forms the credentials travel in: raw, and base64 as AUTH PLAIN and AUTH LOGIN send them
CREDENTIAL_FORMS = [PASSWORD, base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
                    base64.b64encode(PASSWORD.encode()).decode()]
TO, CC = ["ops@example.com", "bad@example.com"], ["cto@example.com"]


@pytest.fixture(scope="module", autouse=True)
def images_once():
    """The email's charts (kaleido, ~3 s each) rendered once, then reused by every send."""
    real, cache = notify.email_images, {}

    def cached(store, run_id, *args):
        if run_id not in cache:
            cache[run_id] = real(store, run_id, *args)
        return cache[run_id]

    notify.email_images = cached
    yield
    notify.email_images = real


@pytest.fixture
def site(demo_run, tmp_path, monkeypatch):
    """A private copy of the demo run's folder (its database and reports), so the send
    attempts recorded here never reach the other tests' run; credentials in the environment."""
    folder = tmp_path / "site"
    shutil.copytree(demo_run["folder"], folder, ignore=shutil.ignore_patterns("capplan-email-*.yaml"))
    monkeypatch.setenv("CAPPLAN_SMTP_USER", USER)
    monkeypatch.setenv("CAPPLAN_SMTP_PASSWORD", PASSWORD)
    run_id = demo_run["result"]["run_id"]
    report = Path(demo_run["result"]["files"]["report"])
    return {"folder": folder, "run_id": run_id, "db": folder / "data" / "capplan.duckdb",
            "report": report, "report_bytes": report.read_bytes()}


def email_config(site, port, security="none", retries=1, timeout_s=1.0):
    """The site's config pointed at ``port``, with short timeouts and retry delays."""
    text = (site["folder"] / "capplan.yaml").read_text()
    text = text.replace("enabled: false", "enabled: true").replace("port: 25", f"port: {port}")
    text = text.replace("security: starttls        # none | starttls | ssl", f"security: {security}")
    text = text.replace("to: [capacity-mgmt@example.com]", f"to: [{', '.join(TO)}]")
    text = text.replace("cc: []", f"cc: [{', '.join(CC)}]\n  retries: {retries}\n  retry_delay_s: 0.05\n  timeout_s: {timeout_s}")
    path = site["folder"] / f"capplan-email-{port}.yaml"
    path.write_text(text)
    return load_config(path)


def notifications(site):
    with Store(site["db"]).connect(read_only=True) as con:
        return con.execute("SELECT recipients, status, error FROM notifications WHERE run_id = ? ORDER BY sent_at",
                           [site["run_id"]]).fetchall()


# -- servers ---------------------------------------------------------------------------------
class Mailbox:
    """aiosmtpd handler: keeps each accepted message with its envelope recipients; ``rcpt``
    maps an address to the replies it gets, one per attempt (then 250); ``auth`` answers AUTH."""

    def __init__(self, rcpt=None, auth=None):
        self.messages: list[tuple[list[str], bytes]] = []
        self.rcpt = {k: list(v) for k, v in (rcpt or {}).items()}
        self.auth = auth
        self.auth_lines: list[list[str]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        replies = self.rcpt.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"

    async def handle_AUTH(self, server, session, envelope, args):
        self.auth_lines.append(args)
        if self.auth:
            return self.auth(args)
        from aiosmtpd.smtp import MISSING

        return MISSING


@pytest.fixture
def mailbox():
    """Start aiosmtpd servers on free ports: ``mailbox(handler) -> port``."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from pipelines.testing.promserver import free_port

    started = []

    def start(handler: Mailbox) -> int:
        port = free_port()
        ctl = Controller(handler, hostname="127.0.0.1", port=port, auth_require_tls=False,
                         authenticator=lambda *a: AuthResult(success=True))
        ctl.start()
        started.append(ctl)
        return port

    yield start
    for ctl in started:
        ctl.stop()


class RawServer:
    """A real TCP server on 127.0.0.1 playing ``script(conn, lines)`` on each connection, for
    what aiosmtpd cannot do; every line the client sent is kept in ``lines``."""

    def __init__(self, script):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.script, self.connections, self.lines = script, 0, []
        self.open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(conn)
            threading.Thread(target=self._play, args=(conn,), daemon=True).start()

    def _play(self, conn):
        try:
            self.script(conn, self.lines)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.sock.close()
        for c in self.open:
            c.close()


def read_line(conn, lines) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise ConnectionResetError
        data += chunk
    lines.append(data)
    return data.decode(errors="replace").strip()


def drop_after_greeting(conn, lines):
    conn.sendall(b"220 mx.test ESMTP\r\n")


def busy_421(conn, lines):
    conn.sendall(b"421 4.3.2 mx.test too busy, closing transmission channel\r\n")


def never_greets(conn, lines):
    conn.recv(1024)  # the client gives up at its timeout and closes


def broken_starttls(conn, lines):
    """Advertises STARTTLS and AUTH, says go ahead, then answers the TLS hello with plain text;
    anything else before TLS gets 530 (a real server would take AUTH here: we record it)."""
    conn.sendall(b"220 mx.test ESMTP\r\n")
    while True:
        line = read_line(conn, lines).upper()
        if line.startswith(("EHLO", "HELO")):
            conn.sendall(b"250-mx.test\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
        elif line == "STARTTLS":
            conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
            conn.recv(4096)  # the ClientHello
            conn.sendall(b"this is not TLS at all\r\n" * 4)
            return
        else:
            conn.sendall(b"530 5.7.0 Must issue a STARTTLS command first\r\n")


@pytest.fixture
def raw():
    servers = []

    def start(script) -> RawServer:
        s = RawServer(script)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


# -- tests -----------------------------------------------------------------------------------
def assert_nothing_lost(site, exc: EmailError, port: int):
    """One line naming the server and the run's re-send; the report on disk unchanged; the
    run still there; the attempt recorded as failed; no credential in any of it."""
    text = str(exc)
    assert "\n" not in text and f"127.0.0.1:{port}" in text
    assert f"capplan report --send {site['run_id']}" in text, text
    assert site["report"].read_bytes() == site["report_bytes"]
    assert Store(site["db"]).run(site["run_id"])["status"] == "succeeded"
    rows = notifications(site)
    assert rows and rows[-1][1] == "failed", rows
    for form in CREDENTIAL_FORMS:
        assert form not in text and form not in repr(rows)


CONNECTION_FAULTS = {
    # name: (server script, config security, what the one line says)
    "drop-after-greeting": (drop_after_greeting, "none", "closed the connection"),
    "421-at-greeting": (busy_421, "none", "421 4.3.2 mx.test too busy"),
    "never-greets": (never_greets, "none", "no greeting within 1 s"),
    "broken-starttls": (broken_starttls, "starttls", "TLS handshake after STARTTLS failed"),
}


@fault
@pytest.mark.parametrize("case", list(CONNECTION_FAULTS))
def test_server_fault_is_retried_reported_recorded_and_a_resend_delivers(case, site, raw, mailbox, caplog, monkeypatch):
    script, security, says = CONNECTION_FAULTS[case]
    caplog.set_level(logging.DEBUG)  # every capplan log line (retries at DEBUG) is checked for credentials below
    caplog.set_level(logging.INFO, logger="mail.log")  # the test server's own log shows what it received
    server = raw(script)
    cfg = email_config(site, server.port, security=security, retries=1, timeout_s=1.0)
    spent = []

    def timed(*args):  # the real send, timed apart from reading the run and building the message
        started = time.monotonic()
        try:
            return real_send(*args)
        finally:
            spent.append(time.monotonic() - started)

    real_send = notify.send_message
    monkeypatch.setattr(notify, "send_message", timed)
    with pytest.raises(EmailError) as exc:
        notify.send_run_report(cfg, site["run_id"])
    elapsed = spent[0]
    assert server.connections == 2, "a server fault is retried (email.retries: 1)"
    assert says in str(exc.value) and "after 2 attempt(s)" in str(exc.value), str(exc.value)
    # bounded by email.timeout_s per attempt (a server that never greets would otherwise hold the
    # run until the socket's default timeout, minutes); generous slack for a loaded machine
    assert elapsed < 2 * 1.0 + 20, f"bounded by email.timeout_s per attempt, took {elapsed:.1f} s"
    assert_nothing_lost(site, exc.value, server.port)
    if case == "broken-starttls":  # never fell back to plaintext: no AUTH, no MAIL, no password
        sent = b"".join(server.lines)
        assert b"AUTH" not in sent.upper() and b"MAIL" not in sent.upper()
        assert all(form.encode() not in sent for form in CREDENTIAL_FORMS)
    for form in CREDENTIAL_FORMS:
        assert form not in caplog.text
    # the re-send, once the server is fixed, goes to every recipient
    box = Mailbox()
    cfg = email_config(site, mailbox(box), retries=0)
    out = notify.send_run_report(cfg, site["run_id"])
    assert out["status"] == "sent" and [sorted(m[0]) for m in box.messages] == [sorted(TO + CC)]


@fault
def test_one_recipient_refused_the_others_get_it_and_a_resend_goes_only_to_the_refused(site, mailbox):
    box = Mailbox(rcpt={"bad@example.com": ["550 5.1.1 <bad@example.com>: mailbox unavailable"] * 5})
    port = mailbox(box)
    cfg = email_config(site, port, retries=2)
    with pytest.raises(EmailError) as exc:
        notify.send_run_report(cfg, site["run_id"])
    text = str(exc.value)
    assert [sorted(m[0]) for m in box.messages] == [["cto@example.com", "ops@example.com"]], "the others got it, once"
    assert "bad@example.com" in text and "550 5.1.1" in text and "2 of 3" in text and "\n" not in text, text
    assert len(box.rcpt["bad@example.com"]) == 4, "a 550 is permanent: not retried"
    assert f"capplan report --send {site['run_id']}" in text
    rows = {(r, s) for r, s, _ in notifications(site)}
    assert {("ops@example.com", "sent"), ("cto@example.com", "sent"), ("bad@example.com", "refused")} <= rows, rows
    assert site["report"].read_bytes() == site["report_bytes"]
    # the mailbox is fixed: the re-send goes to the one who did not get it, and to nobody else
    box.rcpt.clear()
    out = notify.send_run_report(cfg, site["run_id"])
    assert out["status"] == "sent" and out["recipients"] == ["bad@example.com"]
    assert [m[0] for m in box.messages[1:]] == [["bad@example.com"]]
    msg = email.message_from_bytes(box.messages[1][1], policy=email.policy.default)
    assert msg["To"] == ", ".join(TO) and msg["Cc"] == ", ".join(CC), "the same message: all recipients in its headers"
    # everyone has it now: a deliberate `capplan report --send` sends it to all again
    out = notify.send_run_report(cfg, site["run_id"])
    assert sorted(box.messages[2][0]) == sorted(TO + CC)


@fault
def test_a_recipient_deferred_with_450_is_retried_alone(site, mailbox):
    box = Mailbox(rcpt={"bad@example.com": ["450 4.2.1 mailbox busy, try later"]})
    cfg = email_config(site, mailbox(box), retries=1)
    out = notify.send_run_report(cfg, site["run_id"])
    assert out["status"] == "sent"
    assert [sorted(m[0]) for m in box.messages] == [["cto@example.com", "ops@example.com"], ["bad@example.com"]]


@secret
def test_login_error_echoing_the_login_line_shows_no_credential(site, mailbox, caplog):
    def echo(args):  # a careless server: its error repeats the AUTH line, decoded too
        decoded = base64.b64decode(args[1]).decode(errors="replace") if len(args) > 1 else ""
        return f"535 5.7.8 authentication failed for: AUTH {' '.join(args)} ({decoded!r})"

    box = Mailbox(auth=echo)
    port = mailbox(box)
    cfg = email_config(site, port, retries=2)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="mail.log")  # the test server's own log shows what it received
    with pytest.raises(EmailError) as exc:
        notify.send_run_report(cfg, site["run_id"])
    text = str(exc.value)
    assert "535" in text and "CAPPLAN_SMTP_PASSWORD" in text and "\n" not in text, text
    assert len(box.auth_lines) <= 2, "a refused login is not retried (smtplib tries PLAIN, then LOGIN)"
    assert not box.messages
    from typer.testing import CliRunner

    from pipelines.cli import app

    cli = CliRunner().invoke(app, ["report", "--config", str(site["folder"] / f"capplan-email-{port}.yaml"),
                                   "--send", site["run_id"]])
    assert cli.exit_code == 1 and "535" in cli.output and len(cli.output.strip().splitlines()) == 1, cli.output
    db = site["db"].read_bytes()
    for form in CREDENTIAL_FORMS:
        assert form not in text and form not in cli.output and form not in repr(notifications(site))
        assert form.encode() not in db
        assert not [r for r in caplog.records if not r.name.startswith("mail.log") and form in r.getMessage()]
    assert USER not in text and USER not in cli.output


@fault
def test_a_recipient_deferred_to_the_end_is_failed_not_refused_and_asking_twice_sends_nobody(site, mailbox):
    box = Mailbox(rcpt={"bad@example.com": ["450 4.2.1 mailbox busy, try later"] * 10})
    port = mailbox(box)
    with pytest.raises(EmailError) as exc:
        notify.send_run_report(email_config(site, port, retries=1), site["run_id"])
    assert "450 4.2.1" in str(exc.value)
    rows = {(r, s) for r, s, _ in notifications(site)}
    assert ("bad@example.com", "failed") in rows and ("bad@example.com", "refused") not in rows, rows  # 4yz: not for good
    # bad@ leaves the list: nobody is owed the report, however often it is asked
    cfg = email_config(site, port, retries=1)
    cfg.email.to = ["ops@example.com"]
    for _ in range(2):
        assert notify.send_run_report(cfg, site["run_id"])["status"] == "already-sent"
    assert len(box.messages) == 1, "the second 'nothing to send' must not turn into a send to everyone"


@secret
def test_a_short_user_name_is_hidden_as_a_word_not_inside_other_words():
    from pipelines.io.smtp import _secret_forms, _server_text
    secrets = _secret_forms("mail", "s3cr3t-Pa55word-xyz")
    text = _server_text("550 5.1.1 mailbox unavailable for mail (pw s3cr3t-Pa55word-xyz)", secrets)
    assert text == "550 5.1.1 mailbox unavailable for *** (pw ***)"
