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

__all__ = ["safe_label", "UNIT_SCALE", "capacity_figure", "overview_figure", "monthly_peaks", "track_record_figure", "figure_json",
           "runway_figure"]

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


#: Pixels per character of a 9-10 px label, and the narrowest plot area a chart gets (the
#: report's grid cells are at least 460 px wide): labels placed apart at this width stay
#: apart at any wider one.
CHAR_PX = 6.0
MIN_PLOT_PX = 380.0
#: Vertical distance between rows of labels (a 9-10 px label's box is about 16 px high).
LABEL_ROW_PX = 19
#: Days of history drawn before the forecast.
HISTORY_DAYS = 120


def _as_day(value) -> dt.date | None:
    """A date from a ``date``, ``datetime``, ``Timestamp`` or string; ``None`` for missing
    values (``None``, ``NaT``, ``NaN``), so a row read back from DuckDB can be passed as is."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).date()


def _rows_for(labels: list[tuple[str, dt.date]], x0: dt.date, x1: dt.date, plot_px: float = MIN_PLOT_PX) -> list[int]:
    """A row per label so that labels in one row do not overlap: each label starts at its
    date and is ``len(text) * CHAR_PX`` wide (greedy, in date order)."""
    span = max((x1 - x0).days, 1)
    ends: list[float] = []  # right edge (px) of the last label in each row
    rows = []
    for text, day in labels:
        left = (day - x0).days / span * plot_px
        right = left + (len(text) + 1) * CHAR_PX
        row = next((i for i, e in enumerate(ends) if e < left), len(ends))
        if row == len(ends):
            ends.append(right)
        else:
            ends[row] = right
        rows.append(row)
    return rows


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
    height: int = 340,
    history_days: int = HISTORY_DAYS,
) -> go.Figure:
    """Recent history, then the forecast with its interval band, N+k usable capacity, the
    threshold, trigger and order-by markers and shaded event windows, for one pool and
    resource.

    In: ``history`` (``kind, ts, value``: daily peaks; the last ``history_days`` are drawn),
    ``forecast`` (``kind, ts, yhat, yhat_lower, yhat_upper, yhat_baseline``). Values are in
    base units and shown in :data:`UNIT_SCALE` units. The event uplift is drawn apart from
    the baseline. Event labels sit in rows at the bottom and the date markers in rows above
    the plot, so no label covers another; the title is on the left, away from the mode bar.
    """
    scale, unit = UNIT_SCALE.get(resource, (1.0, ""))
    trigger, order_by, full_date = _as_day(trigger), _as_day(order_by), _as_day(full_date)
    events = [(name, _as_day(start), _as_day(end)) for name, start, end in (events or [])]
    fig = go.Figure()
    if len(history) and len(forecast):
        start = pd.Timestamp(forecast["ts"].min()) - pd.Timedelta(days=history_days)
        history = history[pd.to_datetime(history["ts"], utc=True) >= start]
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
        fig.add_hline(y=usable / scale, line={"color": "#2ca02c", "width": 2}, annotation_text="N+k usable" if resource != "storage" else "capacity",
                      annotation_position="top right", annotation_font_size=9)
        fig.add_hline(y=usable * threshold_pct / 100 / scale, line={"color": "#ff7f0e", "dash": "dash", "width": 1.5},
                      annotation_text=f"{threshold_pct:g}% threshold", annotation_position="bottom right", annotation_font_size=9)
    x0, x1 = _x_range(history, forecast)
    evs = sorted([(n, max(s, x0), e) for n, s, e in (events or []) if (e or x1) >= x0 and s <= x1], key=lambda t: t[1])
    for (name, start_day, end_day), row in zip(evs, _rows_for([(n, s) for n, s, _ in evs], x0, x1)):
        end_x = (end_day or x1) + dt.timedelta(days=1)
        fig.add_vrect(x0=str(start_day), x1=str(end_x), fillcolor="rgba(255,200,0,0.15)", line_width=0)
        fig.add_annotation(x=str(start_day), y=0, yref="paper", yshift=2 + LABEL_ROW_PX * row, xanchor="left", yanchor="bottom",
                           text=safe_label(name), showarrow=False, font={"size": 9, "color": "#8a6d00"},
                           name="event-label")
    marks = sorted([(f"{label} {day}", day, color) for label, day, color in (
        ("order by", order_by, "#d62728"), ("trigger", trigger, "#ff7f0e"), ("full", full_date, "#7f7f7f")) if day],
        key=lambda t: t[1])
    rows = _rows_for([(t, d) for t, d, _ in marks], x0, x1)
    for (text, day, color), row in zip(marks, rows):
        fig.add_vline(x=str(day), line={"color": color, "dash": "dot", "width": 1.5})
        fig.add_annotation(x=str(day), y=1.0, yref="paper", yshift=LABEL_ROW_PX * row, xanchor="left", yanchor="bottom", text=text,
                           showarrow=False, font={"size": 10, "color": color}, name="date-marker")
    top = 44 + LABEL_ROW_PX * (max(rows) + 1 if rows else 0)
    fig.update_layout(
        title={"text": safe_label(title), "font": {"size": 13}, "x": 0.0, "xanchor": "left", "xref": "paper", "y": 0.99,
               "yanchor": "top", "yref": "container"},
        height=height, margin={"l": 50, "r": 10, "t": top, "b": 30},
        xaxis={"type": "date", "range": [str(x0), str(x1)]}, yaxis_title=unit,
        legend={"orientation": "h", "y": -0.15, "font": {"size": 10}}, template="plotly_white", hovermode="x unified",
    )
    return fig


def _x_range(history: pd.DataFrame, forecast: pd.DataFrame) -> tuple[dt.date, dt.date]:
    ts = pd.concat([pd.to_datetime(history["ts"], utc=True) if len(history) else pd.Series(dtype="datetime64[ns, UTC]"),
                    pd.to_datetime(forecast["ts"], utc=True) if len(forecast) else pd.Series(dtype="datetime64[ns, UTC]")])
    if ts.empty:
        today = dt.date(2000, 1, 1)
        return today, today + dt.timedelta(days=1)
    return ts.min().date(), ts.max().date() + dt.timedelta(days=1)


#: Overview colours: below the threshold, at or above it, above 100% of N+k usable.
OVERVIEW_COLORS = ("#2e7d32", "#e69500", "#b00020")


def overview_figure(monthly: pd.DataFrame, order_by: dict[str, dt.date], width: int | None = None) -> go.Figure:
    """Pools x months, coloured by forecast peak utilisation of N+k usable capacity: green
    below the pool's threshold, amber at or above it, red at or above 100%; order-by dates
    marked with a cross and the date.

    In: ``monthly`` (``label, month, peak_pct, threshold_pct``: one row per pool and month,
    ``month`` a date, ``peak_pct`` the month's highest forecast utilisation), ``order_by``
    (``label -> date``).
    """
    labels = sorted(monthly["label"].unique(), reverse=True)
    months = sorted(monthly["month"].unique())
    grid = monthly.pivot_table(index="label", columns="month", values="peak_pct", aggfunc="max").reindex(index=labels, columns=months)
    thr = monthly.groupby("label")["threshold_pct"].first().reindex(labels).to_numpy()[:, None]
    values = grid.to_numpy(dtype=float)
    level = np.where(values >= 100, 2, np.where(values >= thr, 1, 0)).astype(float)
    level[np.isnan(values)] = np.nan
    names = [pd.Timestamp(m).strftime("%Y-%m") for m in months]
    text = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.0f}%")(values)
    g, a, r = OVERVIEW_COLORS
    fig = go.Figure(go.Heatmap(
        z=level, x=names, y=[safe_label(lb) for lb in labels], text=text, texttemplate="%{text}", textfont={"size": 9},
        colorscale=[[0, g], [0.333, g], [0.333, a], [0.666, a], [0.666, r], [1, r]], zmin=0, zmax=2, showscale=False,
        xgap=1, ygap=1, hovertemplate="%{y} %{x}: %{text} of N+k usable<extra></extra>",
    ))
    marks = [(safe_label(lb), pd.Timestamp(d).strftime("%Y-%m"), f"order by {pd.Timestamp(d):%m-%d}")
             for lb, d in order_by.items() if d is not None and pd.Timestamp(d).strftime("%Y-%m") in names]
    if marks:
        fig.add_trace(go.Scatter(x=[m[1] for m in marks], y=[m[0] for m in marks], mode="markers+text", text=[m[2] for m in marks],
                                 textposition="middle right", textfont={"size": 8, "color": "#111"},
                                 marker={"symbol": "x-thin", "size": 9, "line": {"width": 2, "color": "#111"}},
                                 hoverinfo="text", showlegend=False))
    fig.update_layout(
        # short: the mode bar sits at the top right; the colour key is in the caption below
        title={"text": "Forecast peak utilisation by month", "font": {"size": 12}, "x": 0.0, "xanchor": "left"},
        height=max(220, 26 * len(labels) + 90), margin={"l": 10, "r": 10, "t": 40, "b": 30}, template="plotly_white",
        xaxis={"side": "top", "type": "category"}, yaxis={"automargin": True, "type": "category"},
    )
    if width:
        fig.update_layout(width=width)
    return fig


def track_record_figure(per_run: pd.DataFrame) -> go.Figure:
    """How past plans did, one bar per earlier run: the share of days its 80% band held
    (the line at 80% is what a calibrated band holds). In: ``past_as_of, coverage_80``."""
    runs = per_run.sort_values("past_as_of")
    fig = go.Figure(go.Bar(x=[str(d)[:10] for d in runs["past_as_of"]], y=(100 * runs["coverage_80"]).round(1).tolist(),
                           marker_color="#1f77b4", text=[f"{v:.0%}" for v in runs["coverage_80"]], textposition="outside",
                           name="80% band held"))
    fig.add_hline(y=80, line={"color": "#2ca02c", "dash": "dash"}, annotation_text="80% target", annotation_position="bottom right",
                  annotation_font_size=9)
    fig.update_layout(title={"text": "Past plans: share of days inside the 80% band", "font": {"size": 12}, "x": 0.0, "xanchor": "left"},
                      height=240, margin={"l": 40, "r": 10, "t": 40, "b": 30}, template="plotly_white",
                      yaxis={"range": [0, 110], "title": "%"}, xaxis={"type": "category", "title": "plan as of"})
    return fig


def monthly_peaks(headroom: pd.DataFrame, as_of: dt.date, months: int = 6) -> pd.DataFrame:
    """Per pool and month of the horizon (the first ``months``), the highest forecast
    utilisation over its resources and demand kinds. In: the ``headroom`` table (``cluster,
    pool, ts, utilisation_pct, threshold_pct``). Out: ``label, month, peak_pct, threshold_pct``."""
    if headroom.empty:
        return pd.DataFrame(columns=["label", "month", "peak_pct", "threshold_pct"])
    h = headroom.copy()
    h["month"] = pd.to_datetime(h["ts"], utc=True).dt.tz_localize(None).dt.to_period("M").dt.to_timestamp()
    first = pd.Timestamp(as_of).to_period("M").to_timestamp()
    h = h[(h["month"] >= first) & (h["month"] < first + pd.DateOffset(months=months))]
    h["label"] = h["cluster"] + " / " + h["pool"]
    # utilisation against the pool's own threshold decides the colour; keep the row nearest to it
    h["ratio"] = h["utilisation_pct"] / h["threshold_pct"]
    top = h.sort_values("ratio").groupby(["label", "month"]).tail(1)
    return top.rename(columns={"utilisation_pct": "peak_pct"})[["label", "month", "peak_pct", "threshold_pct"]].reset_index(drop=True)


def runway_figure(title: str, unit: str, need: pd.DataFrame, limit: float, crossing=None, file_by=None,
                  risk_column: str = "q900", history: pd.DataFrame | None = None, height: int = 300) -> go.Figure:
    """A limit's or a quota's runway: what is needed per day (the median, the 80% band and
    the risk bound the plan uses) against the limit, with the crossing and file-by dates.

    In: ``need`` (``ts`` and quantile columns ``q100, q500, q900`` and ``risk_column``, in
    ``unit``), the limit in force, optionally the limit's ``history`` (``ts, value``)."""
    need = need.sort_values("ts")
    x = _x(need["ts"])
    fig = go.Figure()
    fig.add_trace(go.Scatter(**x, y=_round(need["q100"]), line={"width": 0}, showlegend=False, hoverinfo="skip", name="lower"))
    fig.add_trace(go.Scatter(**x, y=_round(need["q900"]), fill="tonexty", fillcolor="rgba(31,119,180,0.15)", line={"width": 0},
                             name="needed, 80% band", hoverinfo="skip"))
    fig.add_trace(go.Scatter(**x, y=_round(need["q500"]), name="needed (P50)", line={"color": "#1f77b4", "width": 1.5}))
    fig.add_trace(go.Scatter(**x, y=_round(need[risk_column]), name="needed at the risk bound",
                             line={"color": "#d62728", "dash": "dot", "width": 1.5}))
    if history is not None and len(history):
        h = history.sort_values("ts")
        fig.add_trace(go.Scatter(x=pd.DatetimeIndex(h["ts"]).strftime("%Y-%m-%d").tolist(), y=_round(h["value"]),
                                 name="limit (history)", line={"color": "#2ca02c", "shape": "hv", "width": 1.5}))
    fig.add_hline(y=limit, line={"color": "#2ca02c", "width": 2}, annotation_text=f"limit {limit:,.0f} {unit}",
                  annotation_position="top left", annotation_font_size=9)
    for label, day, color in (("file by", _as_day(file_by), "#d62728"), ("crosses", _as_day(crossing), "#ff7f0e")):
        if day:
            fig.add_vline(x=str(day), line={"color": color, "dash": "dot", "width": 1.5})
            fig.add_annotation(x=str(day), y=1.0, yref="paper", xanchor="left", yanchor="bottom", text=f"{label} {day}",
                               showarrow=False, font={"size": 10, "color": color}, name="date-marker",
                               yshift=LABEL_ROW_PX if label == "crosses" else 0)
    fig.update_layout(title={"text": safe_label(title), "font": {"size": 13}, "x": 0.0, "xanchor": "left"}, height=height,
                      margin={"l": 50, "r": 10, "t": 44 + LABEL_ROW_PX * 2, "b": 30}, yaxis_title=unit,
                      xaxis={"type": "date"}, legend={"orientation": "h", "y": -0.15, "font": {"size": 10}},
                      template="plotly_white", hovermode="x unified")
    return fig


def figure_json(fig: go.Figure) -> str:
    """Figure spec as JSON that is safe inside ``<script type="application/json">``."""
    from plotly.io.json import to_json_plotly

    spec = fig.to_plotly_json()
    spec["layout"].pop("template", None)  # one shared template in the page, not one per chart
    text = to_json_plotly({"data": spec["data"], "layout": spec["layout"]})
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
