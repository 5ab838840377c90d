"""Progress of long steps, reported to whoever is listening (the CLI draws rich bars).

Tasks call :func:`report`; nothing is shown unless a reporter is set (the CLI sets one
for the length of a command; Prefect workers and notebooks leave it unset).
"""

from __future__ import annotations

from typing import Callable

__all__ = ["set_reporter", "report"]

_reporter: Callable[[str, int, int, str], None] | None = None


def set_reporter(reporter: Callable[[str, int, int, str], None] | None) -> None:
    global _reporter
    _reporter = reporter


def report(stage: str, done: int, total: int, label: str = "") -> None:
    if _reporter is not None:
        _reporter(stage, done, total, label)
