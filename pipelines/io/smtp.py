"""Sending a message over SMTP, with retries (see :mod:`pipelines.io.retry`).

Credentials come from the environment variables the config names; they are never logged,
stored or put in an error message: not raw, not in the base64 forms AUTH PLAIN / LOGIN send
them in, and a refused login is reported by its code only (servers echo the AUTH line).

What is retried follows the reply codes (RFC 5321 section 4.2.1: 4yz transient, 5yz
permanent; RFC 4954 section 6: 454 temporary, 535 refused login): dropped connections,
timeouts, 4yz replies and failed TLS handshakes are retried; 5yz replies, a refused login,
a certificate that does not verify and a server without STARTTLS or AUTH are not.

Recipients are followed one by one: the server answers each RCPT on its own (RFC 5321
section 3.3) and ``smtplib.SMTP.sendmail`` returns the refused ones when at least one was
accepted (https://docs.python.org/3/library/smtplib.html#smtplib.SMTP.sendmail), so a
retry goes only to those still owed the message and :class:`EmailError` says who got it.

STARTTLS (RFC 3207): a failed handshake or a server that does not offer it ends the attempt;
nothing is ever sent in plaintext instead, credentials least of all.
"""

from __future__ import annotations

import base64
import os
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import getaddresses

from ..config import Email
from ..display import for_terminal
from .retry import Transient, with_retries

__all__ = ["EmailError", "envelope_address", "send_message"]

#: what the client was doing, for the one line that reports a failure
_STAGES = {"connect": "its greeting", "ehlo": "EHLO", "starttls": "STARTTLS", "login": "the login",
           "send": "the message"}


class EmailError(RuntimeError):
    """The report could not be emailed to everyone (after retries). The report on disk is kept.

    ``accepted``: addresses the server took the message for; ``refused``: address -> the
    server's reason, for those it would not take; everyone else was not reached."""

    def __init__(self, message: str, accepted: list[str] | None = None, refused: dict[str, str] | None = None):
        super().__init__(message)
        self.accepted = list(accepted or [])
        self.refused = dict(refused or {})


class _Permanent(Exception):
    """A failure a retry cannot fix (5yz, refused login, bad certificate): reported at once."""


def envelope_address(recipient: str) -> str:
    """The bare address of a configured recipient (``"Ops <ops@x>"`` -> ``"ops@x"``)."""
    return getaddresses([recipient])[0][1] or recipient


def _credentials(cfg: Email) -> tuple[str | None, str | None]:
    user = os.environ.get(cfg.username_env) if cfg.username_env else None
    password = os.environ.get(cfg.password_env) if cfg.password_env else None
    return user, password


def send_message(cfg: Email, msg: EmailMessage, recipients: list[str] | None = None) -> list[str]:
    """Send ``msg`` to ``recipients`` (default: the config's ``to`` and ``cc``), with retries.

    Returns the envelope addresses that got it (all of them). Raises :class:`EmailError`
    (one line naming the server and the reason, never a credential) when anyone did not;
    its ``accepted`` and ``refused`` say who did and who was turned away."""
    user, password = _credentials(cfg)
    if cfg.password_env and cfg.username_env and user and not password:
        raise EmailError(f"environment variable {cfg.password_env} is not set (SMTP password)")
    wanted = [envelope_address(r) for r in (recipients if recipients is not None else [*cfg.to, *cfg.cc])]
    if not wanted:
        raise EmailError("email.to is empty: no recipients")
    secrets = _secret_forms(user, password)
    state: dict = {"accepted": [], "refused": {}, "pending": list(dict.fromkeys(wanted)), "attempts": 0}

    def attempt() -> None:
        state["attempts"] += 1
        _attempt(cfg, msg, user, password, secrets, state)

    where = f"{cfg.host}:{cfg.port}"
    try:
        with_retries(attempt, cfg.retries, f"email to {where}", base_delay_s=cfg.retry_delay_s, max_delay_s=60)
    except (Transient, _Permanent) as exc:
        tries = f"after {state['attempts']} attempt(s)" + (" (not retried: a retry cannot fix this)" if isinstance(exc, _Permanent) else "")
        got = f"; {len(state['accepted'])} of {len(wanted)} recipient(s) got it" if state["accepted"] else ""
        raise EmailError(f"could not send the report via {where} {tries}: {exc}{got}", state["accepted"], state["refused"]) from None
    if state["refused"]:
        refused = "; ".join(f"{a} ({why})" for a, why in state["refused"].items())
        raise EmailError(f"the server at {where} took the report for {len(state['accepted'])} of {len(wanted)} recipient(s) "
                         f"and refused {refused}", state["accepted"], state["refused"])
    return state["accepted"]


def _attempt(cfg: Email, msg: EmailMessage, user: str | None, password: str | None, secrets: list[str], state: dict) -> None:
    """One SMTP session to the addresses in ``state["pending"]``; moves them to ``accepted``
    or ``refused`` (5yz) or leaves them pending (4yz: raises :class:`Transient`)."""
    state["deferred"] = {}
    stage, server = "connect", None
    try:
        context = ssl.create_default_context()
        if cfg.security == "ssl":
            server = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=context)
        else:
            server = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        stage = "ehlo"
        server.ehlo_or_helo_if_needed()
        if cfg.security == "starttls":
            stage = "starttls"
            server.starttls(context=context)
            stage = "ehlo"
            server.ehlo()
        if user and password:
            stage = "login"
            server.login(user, password)
        stage = "send"
        try:
            refused = server.send_message(msg, to_addrs=state["pending"])
        except smtplib.SMTPRecipientsRefused as exc:  # nobody got it in this session
            refused, state["accepted_now"] = exc.recipients, False
        else:
            state["accepted_now"] = True
        _sort_recipients(state, refused, secrets)
    except (smtplib.SMTPException, OSError) as exc:
        text = _describe(exc, stage, cfg, secrets)
        raise (_Permanent if _is_permanent(exc) else Transient)(text) from None
    finally:
        if server is not None:
            _close(server)
    if state["pending"]:
        why = "; ".join(f"{a} ({r})" for a, r in state["deferred"].items()) or "the session ended before DATA"
        raise Transient(f"the server deferred {why}")


def _sort_recipients(state: dict, refused: dict, secrets: list[str]) -> None:
    """Split the pending addresses by the server's RCPT answers (``refused``: address ->
    (code, reply)): 5yz refused for good, 4yz deferred (kept pending), the rest accepted if
    the message went (``state["accepted_now"]``), else kept pending."""
    pending = []
    for address in state["pending"]:
        if address in refused:
            code, reply = refused[address]
            why = f"{code} {_server_text(reply, secrets)}"
            if code >= 500:
                state["refused"][address] = why
            else:
                state["deferred"][address] = why
                pending.append(address)
        elif state["accepted_now"]:
            state["accepted"].append(address)
        else:
            pending.append(address)
    state["pending"] = pending


def _close(server: smtplib.SMTP) -> None:
    """QUIT, ignoring a server that is already gone: what it accepted stays accepted (a
    failure here must not make the caller send the message twice)."""
    try:
        server.quit()
    except (smtplib.SMTPException, OSError):
        server.close()


def _is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, ssl.SSLCertVerificationError | smtplib.SMTPNotSupportedError):
        return True
    code = getattr(exc, "smtp_code", None)
    return isinstance(code, int) and code >= 500


def _describe(exc: BaseException, stage: str, cfg: Email, secrets: list[str]) -> str:
    """One line saying what failed at which step, with the server's reply cleaned of any
    credential; a refused login shows its code only."""
    what = _STAGES[stage]
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return (f"the server refused the login ({exc.smtp_code}; user from ${cfg.username_env}, password from "
                f"${cfg.password_env}; its reply is not shown, it may repeat the credentials)")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        if stage == "starttls":
            return f"the server does not offer STARTTLS (email.security: {cfg.security}); nothing was sent unencrypted"
        if stage == "login":
            return "the server does not offer AUTH, and credentials are configured (email.username_env)"
        return f"the server does not support what {what} needs ({_server_text(str(exc), secrets)}; a non-ASCII address?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's TLS certificate did not verify ({exc.verify_message})"
    if stage == "starttls" and isinstance(exc, ssl.SSLError | smtplib.SMTPServerDisconnected | ConnectionError):
        return (f"the TLS handshake after STARTTLS failed ({_server_text(getattr(exc, 'reason', None) or str(exc), secrets)}); "
                "nothing was sent unencrypted")
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        waited = f"{cfg.timeout_s:g} s (email.timeout_s)"
        return f"no greeting within {waited}" if stage == "connect" else f"no answer to {what} within {waited}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"the server closed the connection at {what}" + (" (after its greeting)" if stage == "ehlo" else "")
    if isinstance(exc, smtplib.SMTPResponseException):
        verb = "greeted with" if stage == "connect" else f"answered {what} with"
        return f"the server {verb} {exc.smtp_code} {_server_text(exc.smtp_error, secrets)}"
    return _server_text(f"{type(exc).__name__}: {exc}", secrets)


def _server_text(text: bytes | str, secrets: list[str], limit: int = 200) -> str:
    """A server's reply as one printable line: decoded, control characters shown as escapes,
    cut at ``limit`` characters, every form of a credential replaced by ``***``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return for_terminal(_scrub(" ".join(str(text).split()), secrets), limit)


def _secret_forms(user: str | None, password: str | None) -> list[str]:
    """The strings that must never be shown: the password, the user name, and the base64
    of each and of the AUTH PLAIN token (``\\0user\\0password``), longest first."""
    forms = [s for s in (password, user) if s]
    if password:
        b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        forms += [b64(f"\0{user or ''}\0{password}"), b64(f"{user or ''}\0{user or ''}\0{password}"), b64(password)]
        forms += [b64(user)] if user else []
    return sorted(set(forms), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    """Replace each secret form (one under 8 characters only as a whole word), and any base64
    token that decodes to text holding the password or the user name (an echo cut or padded
    differently), with ``***``."""
    for s in secrets:  # a short one (user "mail") only as a whole word: "mailbox" stays readable
        text = text.replace(s, "***") if len(s) >= 8 else re.sub(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])", "***", text)
    raw = [s.encode() for s in secrets if s]

    def hide(m: re.Match) -> str:
        token = m.group(0)
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except ValueError:
            return token
        return "***" if any(r in decoded for r in raw) else token

    return re.sub(r"[A-Za-z0-9+/]{8,}={0,2}", hide, text) if raw else text
