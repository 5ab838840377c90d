"""Scale-out: the forecast fan-out on an existing Dask cluster through Prefect's task runner.

By default the forecast stage runs on a local process pool (all cores). With
``executor.dask_address`` (or ``--dask-address``) set, the series are split into chunks
and each chunk is a Prefect task run by prefect-dask's ``DaskTaskRunner`` on that
cluster; the results are the same numbers (every model is deterministic).
"""

from __future__ import annotations

from typing import Callable

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from forecasting.engine import forecast_panel, panel_chunks

__all__ = ["dask_runner", "forecast_chunk", "chunked"]


@task(name="forecast-chunk", cache_policy=NO_CACHE)
def forecast_chunk(jobs: list, horizon_days: float, model: str, level: float) -> dict:
    """Forecast one chunk of series in the worker's own process."""
    return forecast_panel(jobs, horizon_days, model=model, level=level, peak=True, workers=1)


def chunked(items: list, n: int) -> list[list]:
    """Split into at most ``n`` chunks of near-equal size, keeping order."""
    n = max(1, min(n, len(items)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return [c for c in out if c]


def dask_runner(address: str, chunks_per_worker: int = 4) -> Callable:
    """A fan-out for :func:`pipelines.jobs.stages.forecast_pools` on a Dask cluster."""
    from prefect_dask import DaskTaskRunner

    def run(jobs, horizon_days, model, level, workers):
        from distributed import Client

        with Client(address, timeout="30s") as client:
            n_workers = max(1, len(client.scheduler_info()["workers"]))

        parts = panel_chunks(jobs, n_workers * chunks_per_worker)  # requests stay with their usage

        # The data travels in the closure, not as flow parameters (Prefect stores those).
        @flow(name="forecast-fanout", task_runner=DaskTaskRunner(address=address))
        def forecast_fanout() -> dict:
            futures = forecast_chunk.map(parts, unmapped(horizon_days), unmapped(model), unmapped(level))
            merged: dict = {}
            for f in futures:
                merged.update(f.result())
            return merged

        return forecast_fanout()

    return run
