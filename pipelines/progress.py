"""Progress of long steps, reported to whoever is listening (the CLI draws rich bars and
prints one line per finished step).

Tasks call :func:`report` (``done`` of ``total`` items of a stage); the run lifecycle calls
:func:`step` when a step starts (``seconds`` is None) and when it ends. Nothing is shown
unless a reporter is set (the CLI sets one for the length of a command; Prefect workers and
notebooks leave it unset).
"""

from __future__ import annotations

from typing import Callable

__all__ = ["set_reporter", "set_step_reporter", "report", "step"]

_reporter: Callable[[str, int, int, str], None] | None = None
_step_reporter: Callable[[str, float | None], None] | None = None


def set_reporter(reporter: Callable[[str, int, int, str], None] | None) -> None:
    global _reporter
    _reporter = reporter


def set_step_reporter(reporter: Callable[[str, float | None], None] | None) -> None:
    global _step_reporter
    _step_reporter = reporter


def report(stage: str, done: int, total: int, label: str = "") -> None:
    if _reporter is not None:
        _reporter(stage, done, total, label)


def step(name: str, seconds: float | None = None) -> None:
    """A run step started (``seconds`` None) or finished after ``seconds``."""
    if _step_reporter is not None:
        _step_reporter(name, seconds)
