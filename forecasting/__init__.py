"""capplan's pure core: forecasting and capacity math. No I/O, no clock, no framework.

The two names most analysts need are :func:`forecast_series` and
:func:`forecast_daily_peak`; capacity decisions live in :mod:`forecasting.headroom`
and :mod:`forecasting.planning`.
"""

from .engine import ForecastInputError, ForecastResult, fit_forecast, forecast_daily_peak, forecast_panel, forecast_series

__all__ = ["forecast_series", "forecast_daily_peak", "fit_forecast", "forecast_panel", "ForecastResult", "ForecastInputError"]
