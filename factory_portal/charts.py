"""Pure helpers for chart JSON: every `charts.py` builds Plotly figure dicts with these.

Plotly renders trace names, tick labels and hover text as a small subset of HTML, so every label that
comes from user data goes through `escape_label`. Series are capped at `MAX_POINTS` points each, and
every axis names its unit.
"""

from __future__ import annotations

import datetime as dt
import html
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

MAX_POINTS = 2000
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13, "color": "#1b1f24"}
# Colour-blind-safe categorical palette (Okabe-Ito), readable on white.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
STATE_COLORS = {"online": "#1a7f37", "stale": "#9a6700", "unhealthy": "#cf222e", "lost": "#6e7781"}


def escape_label(text: object) -> str:
    """Make user text inert for Plotly's pseudo-HTML (it decodes entities, so `&lt;b&gt;` shows as `<b>`)."""
    return html.escape(str(text), quote=False)


def axis_title(title: str, unit: str) -> str:
    return f"{title} ({unit})" if unit else title


def downsample(x: Sequence, y: Sequence[float | None], *, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """At most `max_points` points: consecutive buckets averaged, x taken from each bucket's first point.

    None (no reading) is skipped inside a bucket and kept when a whole bucket has none, so a gap stays a
    gap instead of becoming a zero.
    """
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    n = len(x)
    if n <= max_points:
        return list(x), list(y)
    out_x, out_y = [], []
    for b in range(max_points):
        lo, hi = b * n // max_points, (b + 1) * n // max_points
        values = [v for v in y[lo:hi] if v is not None]
        out_x.append(x[lo])
        out_y.append(sum(values) / len(values) if values else None)
    return out_x, out_y


def local_iso(ts: dt.datetime, time_zone: str) -> str:
    """An aware UTC timestamp as the wall-clock time of a site (Plotly has no time zones of its own)."""
    return ts.astimezone(zoneinfo.ZoneInfo(time_zone)).replace(tzinfo=None).isoformat(timespec="seconds")


def base_layout(*, x_title: str, x_unit: str, y_title: str, y_unit: str, **extra) -> dict:
    layout = {
        "font": FONT,
        "margin": {"l": 64, "r": 16, "t": 32, "b": 56},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "hovermode": "closest",
        "showlegend": True,
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"},
        "xaxis": {"title": {"text": escape_label(axis_title(x_title, x_unit))}, "gridcolor": "#eaeef2",
                  "automargin": True},
        "yaxis": {"title": {"text": escape_label(axis_title(y_title, y_unit))}, "gridcolor": "#eaeef2",
                  "automargin": True, "rangemode": "tozero"},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def empty_figure(*, message: str, x_title: str = "", x_unit: str = "", y_title: str = "", y_unit: str = "") -> dict:
    """A figure with no data that says why, in place of an empty pair of axes."""
    layout = base_layout(x_title=x_title, x_unit=x_unit, y_title=y_title, y_unit=y_unit, showlegend=False)
    layout["xaxis"].update({"visible": bool(x_title), "showticklabels": False})
    layout["yaxis"].update({"visible": bool(y_title), "showticklabels": False})
    layout["annotations"] = [{"text": escape_label(message), "showarrow": False, "xref": "paper", "yref": "paper",
                              "x": 0.5, "y": 0.5, "font": {"size": 14, "color": "#57606a"}}]
    return {"data": [], "layout": layout, "meta": {"empty": True}}


@dataclass(frozen=True)
class Series:
    """One line of a time-series chart: aware UTC timestamps and values in `unit` (None = no reading)."""

    name: str
    x: Sequence[dt.datetime]
    y: Sequence[float | None]


def time_series_figure(
    *, series: Sequence[Series], y_title: str, y_unit: str, time_zone: str, empty_message: str,
    max_points: int = MAX_POINTS,
) -> dict:
    """Lines over time in the site's time zone; the building block telemetry and metering charts use."""
    if not any(len(s.x) for s in series):
        return empty_figure(message=empty_message, x_title="time", x_unit=time_zone, y_title=y_title, y_unit=y_unit)
    data = []
    for i, s in enumerate(series):
        x, y = downsample(list(s.x), list(s.y), max_points=max_points)
        name = escape_label(s.name)
        data.append({
            "type": "scatter", "mode": "lines", "name": name,
            "x": [local_iso(t, time_zone) for t in x], "y": y,
            "line": {"color": PALETTE[i % len(PALETTE)], "width": 2},
            "hovertemplate": f"{name}<br>%{{x}}<br>%{{y:.4~g}} {escape_label(y_unit)}<extra></extra>",
        })
    layout = base_layout(x_title="time", x_unit=time_zone, y_title=y_title, y_unit=y_unit)
    return {"data": data, "layout": layout, "meta": {"empty": False}}
