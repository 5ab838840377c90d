"""Plotly figures shared by the HTML report, the email and the analyst notebook.

Every label that comes from Prometheus or a config file is passed through
:func:`safe_label` (HTML-escaped) because plotly interprets a subset of HTML in
titles, legends and hover text.
"""

from __future__ import annotations

import datetime as dt
import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["safe_label", "UNIT_SCALE", "capacity_figure", "figure_json"]

#: resource -> (divisor to display units, unit label)
UNIT_SCALE = {"cpu": (1.0, "cores"), "memory": (2.0**30, "GiB"), "pods": (1.0, "pods"), "storage": (2.0**40, "TiB")}
COLORS = {"usage": "#1f77b4", "requests": "#9467bd"}


def safe_label(text: object) -> str:
    """Escape an untrusted label for plotly text (which renders some HTML tags)."""
    return html.escape(str(text), quote=True)


def _round(values: np.ndarray | pd.Series, digits: int = 4) -> list:
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mags = np.where(v != 0, np.floor(np.log10(np.abs(v))), 0)
    factor = 10.0 ** (digits - 1 - mags)
    return (np.round(v * factor) / factor).tolist()


def _x(ts: pd.Series) -> dict:
    """Regular x values as a start and a step in milliseconds (far smaller than a list of
    dates: it is what keeps a 50-pool report to a few megabytes)."""
    days = pd.DatetimeIndex(ts)
    if days.tz is not None:
        days = days.tz_convert("UTC").tz_localize(None)
    steps = np.diff(days.to_numpy()).astype("timedelta64[ms]").astype(np.int64)
    if len(days) > 1 and (steps == steps[0]).all():
        return {"x0": days[0].strftime("%Y-%m-%d %H:%M"), "dx": int(steps[0])}
    return {"x": days.strftime("%Y-%m-%d %H:%M").tolist()}


def capacity_figure(
    title: str,
    resource: str,
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    usable: float | None,
    threshold_pct: float,
    trigger: dt.date | None = None,
    order_by: dt.date | None = None,
    events: list[tuple[str, dt.date, dt.date | None]] | None = None,
    full_date: dt.date | None = None,
    height: int = 320,
) -> go.Figure:
    """History, forecast, interval band, N+k usable capacity, threshold, trigger and
    order-by markers and shaded event windows for one pool and resource.

    In: ``history`` (``kind, ts, value``: daily peaks), ``forecast`` (``kind, ts, yhat,
    yhat_lower, yhat_upper, yhat_baseline``). Values are in base units and shown in
    :data:`UNIT_SCALE` units. The event uplift is drawn apart from the baseline.
    """
    scale, unit = UNIT_SCALE.get(resource, (1.0, ""))
    fig = go.Figure()
    for kind in sorted(set(history.get("kind", pd.Series(dtype=str))) | set(forecast.get("kind", pd.Series(dtype=str)))):
        color = COLORS.get(kind, "#555")
        band = "rgba(31,119,180,0.15)" if kind == "usage" else "rgba(148,103,189,0.15)"
        h = history[history["kind"] == kind].sort_values("ts") if len(history) else history
        if len(h):
            fig.add_trace(go.Scatter(**_x(h["ts"]), y=_round(h["value"] / scale), name=f"{kind} (daily peak)",
                                     line={"color": color, "width": 1.5}))
        f = forecast[forecast["kind"] == kind].sort_values("ts") if len(forecast) else forecast
        if len(f):
            x = _x(f["ts"])
            fig.add_trace(go.Scatter(**x, y=_round(f["yhat_lower"] / scale), line={"width": 0}, showlegend=False,
                                     hoverinfo="skip", name=f"{kind} lower"))
            fig.add_trace(go.Scatter(**x, y=_round(f["yhat_upper"] / scale), fill="tonexty", fillcolor=band,
                                     line={"width": 0}, name=f"{kind} interval", hoverinfo="skip"))
            fig.add_trace(go.Scatter(**x, y=_round(f["yhat_baseline"] / scale), name=f"{kind} baseline forecast",
                                     line={"color": color, "dash": "dot", "width": 1.5}))
            if not np.allclose(f["yhat"].to_numpy(), f["yhat_baseline"].to_numpy()):
                fig.add_trace(go.Scatter(**x, y=_round(f["yhat"] / scale), name=f"{kind} with events",
                                         line={"color": "#d62728" if kind == "usage" else "#e377c2", "width": 1.5}))
    if usable is not None:
        fig.add_hline(y=usable / scale, line={"color": "#2ca02c", "width": 2}, annotation_text="N+k usable",
                      annotation_position="top left")
        fig.add_hline(y=usable * threshold_pct / 100 / scale, line={"color": "#ff7f0e", "dash": "dash", "width": 1.5},
                      annotation_text=f"{threshold_pct:g}% threshold", annotation_position="bottom left")
    for name, start, end in events or []:
        end_x = (end or (forecast["ts"].max().date() if len(forecast) else start)) + dt.timedelta(days=1)
        fig.add_vrect(x0=str(start), x1=str(end_x), fillcolor="rgba(255,200,0,0.15)", line_width=0,
                      annotation_text=safe_label(name), annotation_position="top left", annotation_font_size=9)
    for label, day, color in (("order-by", order_by, "#d62728"), ("trigger", trigger, "#ff7f0e"), ("full", full_date, "#7f7f7f")):
        if day:
            fig.add_vline(x=str(day), line={"color": color, "dash": "dot", "width": 1.5})
            fig.add_annotation(x=str(day), y=1, yref="paper", text=f"{label} {day}", showarrow=False,
                               font={"size": 10, "color": color}, yanchor="bottom")
    fig.update_layout(
        title={"text": safe_label(title), "font": {"size": 13}}, height=height, margin={"l": 50, "r": 10, "t": 40, "b": 30},
        xaxis={"type": "date"}, yaxis_title=unit, legend={"orientation": "h", "y": -0.15, "font": {"size": 10}}, template="plotly_white",
        hovermode="x unified",
    )
    return fig


def figure_json(fig: go.Figure) -> str:
    """Figure spec as JSON that is safe inside ``<script type="application/json">``."""
    from plotly.io.json import to_json_plotly

    spec = fig.to_plotly_json()
    spec["layout"].pop("template", None)  # one shared template in the page, not one per chart
    text = to_json_plotly({"data": spec["data"], "layout": spec["layout"]})
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
