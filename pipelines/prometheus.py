"""Prometheus ingest (placeholder until the ingest issue lands)."""


class PrometheusError(RuntimeError):
    """Prometheus could not be read; the message names the query and the cluster."""


def ingest_prometheus(store, cfg, as_of, progress=None):
    raise PrometheusError("the Prometheus source is not built yet")
