"""Prefect orchestration of the jobs: thin flows, steps shown as tasks, Dask fan-out.

Importing this package sets capplan's defaults for Prefect (only where the environment
has not set them), before Prefect reads its settings:

* ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300``: with no Prefect server
  configured, a flow starts a temporary local one; on a cold machine (empty Prefect home,
  first imports, database migrations) that takes longer than Prefect's 20 s default;
* analytics off; no warnings about logs that cannot reach an API.
"""

from __future__ import annotations

import os

__all__ = ["prefect_defaults", "PREFECT_DEFAULTS"]

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def prefect_defaults() -> None:
    """Set :data:`PREFECT_DEFAULTS` where the environment has not (call before importing prefect)."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


prefect_defaults()
