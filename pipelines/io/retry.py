"""Retries of one network request (Prometheus, SMTP), declared once, with tenacity.

Why per request and not Prefect task ``retries=``: a transient fault hits one HTTP request
or one SMTP session; retrying the whole Prefect task would pull every query or re-render
the report again. tenacity (a well-kept library) gives exponential backoff, a stop after
N attempts and a predicate for what is worth retrying, instead of hand-written loops.
"""

from __future__ import annotations

import logging
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ..display import for_terminal

__all__ = ["Transient", "with_retries"]

T = TypeVar("T")
log = logging.getLogger("capplan.retry")


class Transient(Exception):
    """A failure worth retrying (connection refused, timeout, 5xx). ``str()`` describes it."""


def with_retries(call: Callable[[], T], retries: int, what: str, base_delay_s: float = 0.5, max_delay_s: float = 8.0) -> T:
    """Run ``call``; on :class:`Transient`, wait (``base_delay_s`` doubling, at most
    ``max_delay_s``) and try again, ``retries`` times. The last :class:`Transient` is
    re-raised; any other exception passes through at once (not retried)."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        # DEBUG, not WARNING: the caller reports the last failure once, in one line; the
        # attempts before it are for --debug (a WARNING reached the terminal through
        # logging's last-resort handler, four times the same 400-character urllib3 text).
        log.debug("%s: attempt %d of %d failed: %s", what, state.attempt_number, retries + 1, for_terminal(exc, limit=1000))

    retrying = Retrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=base_delay_s, max=max_delay_s),
        retry=retry_if_exception_type(Transient),
        after=note,
        reraise=True,
    )
    return retrying(call)
