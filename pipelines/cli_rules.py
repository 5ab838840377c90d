"""`capplan rules`: write capplan's pool rules for the configured Prometheus source
(:mod:`pipelines.io.sources.pool_rules`), from what the doctor finds there."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

__all__ = ["register", "render_rules"]

FORMATS = ("rules", "prometheusrule")


def render_rules(config: Path, fmt: str = "rules", as_of: dt.date | None = None, namespace: str = "monitoring",
                 release: str = "kube-prometheus-stack") -> tuple[str, int, str, int]:
    """The pool rules for ``config``'s Prometheus source(s) as a rules file or a
    ``PrometheusRule`` manifest (``fmt``; in ``namespace``, labelled ``release``). Out: (text,
    number of rules, the first server's URL, the days of history a plan reads). Raises
    PrometheusError when a server cannot be inspected."""
    from .config import ConfigError, load_config
    from .domain import HistoryWindow
    from .io.sources.catalog import load_metric_catalog, rule_names
    from .io.sources.doctor import inspect
    from .jobs.context import resolve_as_of
    from .io.sources.pool_rules import prometheus_rule, rules_file, rules_for
    from .io.sources.promapi import PrometheusError, PromClient, parse_duration

    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected {' or '.join(FORMATS)}, got {fmt!r}")
    cfg = load_config(config)
    src = cfg.source.prometheus
    day = resolve_as_of(as_of, cfg.as_of)  # the plan date, as a run takes it
    window = HistoryWindow.ending(day, cfg.forecasting.history_days)
    catalog = load_metric_catalog(cfg.path(src.catalog) if src.catalog else None)
    rules = []
    for one in src.per_server():
        setup = inspect(PromClient(one, cfg.base_dir), one, window, parse_duration(src.step), rule_names(catalog), catalog)
        stop = [c for c in setup.failed if c.check in ("server", "clusters", "scrape jobs")]
        if stop or not setup.clusters:
            why = stop[0].detail if stop else "no cluster with kube-state-metrics"
            raise PrometheusError(f"{one.url}: cannot write the pool rules: {why} (`capplan doctor` shows every check)",
                                  plain=True)
        rules += [r for r in rules_for(catalog, setup.clusters, one, setup.rate_window_s) if r not in rules]
    text = prometheus_rule(rules, namespace, release) if fmt == "prometheusrule" else rules_file(rules)
    return text, len(rules), src.per_server()[0].url, cfg.forecasting.history_days


def register(app: typer.Typer) -> None:
    """Add the ``rules`` command to the CLI."""

    @app.command()
    def rules(
        config: Path = typer.Option(Path("capplan.yaml"), "--config", "-c", help="capplan.yaml to use"),
        output: Path = typer.Option(Path("capplan-pool-rules.yaml"), "--output", "-o", help="file to write"),
        fmt: str = typer.Option("rules", "--format", "-f", help="rules (a Prometheus rules file) | prometheusrule "
                                "(a prometheus-operator PrometheusRule manifest, for kube-prometheus-stack)"),
        namespace: str = typer.Option("monitoring", "--namespace", help="prometheusrule: the manifest's namespace"),
        release: str = typer.Option("kube-prometheus-stack", "--release", help="prometheusrule: its `release` label "
                                    "(kube-prometheus-stack's default ruleSelector matches the Helm release name)"),
        as_of: Optional[str] = typer.Option(None, "--as-of", help="plan date YYYY-MM-DD (default: config's as_of, else today)"),
        debug: bool = typer.Option(False, "--debug", help="show each retried request's attempts"),
    ) -> None:
        """Write capplan's pool recording rules: one rule per pool and storage series (and
        per node and namespace series of the drill-down), so a pull reads one series per pool
        instead of one per node or container. Load the file
        in each Prometheus that scrapes the clusters (or kubectl apply the PrometheusRule);
        `capplan doctor` then shows since when the pull reads them."""
        from .cli import _date, _errors, console
        from .io.files import atomic_write
        from .io.sources.pool_rules import backfill_hint

        with _errors(debug):
            text, n, url, days = render_rules(config, fmt, _date(as_of), namespace, release)
            output.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(output.resolve(), text)  # a path the user named: a symlink is followed
            console.print(f"{n} pool rule(s) written to {output} ({fmt})", highlight=False)
            console.print(backfill_hint(str(output) if fmt == "rules" else "<the same rules as a plain file: --format rules>",
                                        url, days), markup=False, highlight=False)
