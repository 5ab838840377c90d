"""Sending a message over SMTP, with retries (see :mod:`pipelines.io.retry`).

Credentials come from the environment variables the config names; they are never logged,
stored or put in an error message. A failed send is retried, then reported.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage

from ..config import Email
from .retry import Transient, with_retries

__all__ = ["EmailError", "send_message"]


class EmailError(RuntimeError):
    """The report could not be emailed (after retries). The report on disk is kept."""


def _credentials(cfg: Email) -> tuple[str | None, str | None]:
    user = os.environ.get(cfg.username_env) if cfg.username_env else None
    password = os.environ.get(cfg.password_env) if cfg.password_env else None
    return user, password


def send_message(cfg: Email, msg: EmailMessage) -> None:
    """Send with retries; raise :class:`EmailError` naming the server, never the password."""
    user, password = _credentials(cfg)
    if cfg.password_env and cfg.username_env and user and not password:
        raise EmailError(f"environment variable {cfg.password_env} is not set (SMTP password)")
    if not cfg.to:
        raise EmailError("email.to is empty: no recipients")

    def attempt() -> None:
        try:
            context = ssl.create_default_context()
            if cfg.security == "ssl":
                server: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=context)
            else:
                server = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with server:
                if cfg.security == "starttls":
                    server.starttls(context=context)
                if user and password:
                    server.login(user, password)
                server.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise Transient(_describe(exc, password)) from None

    try:
        with_retries(attempt, cfg.retries, f"email to {cfg.host}:{cfg.port}", base_delay_s=cfg.retry_delay_s, max_delay_s=60)
    except Transient as exc:
        raise EmailError(f"could not send the report via {cfg.host}:{cfg.port} after {cfg.retries + 1} attempt(s): {exc}; "
                         "the report is on disk; re-send with `capplan report --send RUN_ID`") from None


def _describe(exc: BaseException, secret: str | None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.replace(secret, "***") if secret else text
