"""Forecast fan-out on a real local Dask cluster (scheduler + two workers on 127.0.0.1)
gives the same numbers as the single-process run."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipelines.orchestration.dask import chunked, dask_runner
from pipelines.jobs import RunContext
from pipelines.jobs.stages import forecast_pools, local_fan_out

from pipelines.testing.promserver import free_port

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent



@pytest.fixture
def dask_cluster(tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value() or "", "PREFECT_LOGGING_LEVEL": "WARNING"}
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "scheduler.log", "w"))]
    address = f"tcp://127.0.0.1:{port}"
    for i in range(2):
        procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"worker{i}.log", "w")))
    from distributed import Client

    deadline = time.time() + 60
    while True:
        try:
            with Client(address, timeout="5s") as c:
                if len(c.scheduler_info()["workers"]) == 2:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError("dask cluster did not start: " + (tmp_path / "scheduler.log").read_text()[-2000:])
        time.sleep(0.5)
    yield address
    for p in procs[::-1]:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def test_chunked_keeps_everything_in_order():
    assert chunked(list(range(10)), 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert chunked([1], 8) == [[1]]


def test_dask_results_equal_single_process(demo_run, dask_cluster, prefect_harness):
    ctx = RunContext.create(demo_run["config"], {"forecasting": {"horizon_days": 90, "workers": 1}})
    history = ctx.store.pool_samples(*ctx.window)
    history = history[history.cluster == history.cluster.iloc[0]]
    tiers = {}
    local = forecast_pools(ctx, history, tiers, local_fan_out())
    remote = forecast_pools(ctx, history, tiers, dask_runner(dask_cluster))
    cols = ["series_id", "ts", "yhat", "yhat_lower", "yhat_upper", "model"]
    a = local.forecasts[cols].sort_values(["series_id", "ts"]).reset_index(drop=True)
    b = remote.forecasts[cols].sort_values(["series_id", "ts"]).reset_index(drop=True)
    assert len(a) > 0 and a["series_id"].nunique() >= 8
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(local.scores.sort_values(["series_id", "model"]).reset_index(drop=True),
                                  remote.scores.sort_values(["series_id", "model"]).reset_index(drop=True))
