"""capplan's I/O and orchestration: config, DuckDB store, ingest, Prefect flows, report, email, CLI."""
