"""`capplan doctor`: check a Prometheus / Thanos / Mimir source before a run (not built yet)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``doctor`` command to the CLI."""
