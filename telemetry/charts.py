"""Telemetry and metering charts: pure functions from selector output to Plotly figure dicts.

No I/O here: the JSON views in `telemetry/views.py` read the selectors (rollups, scoped with `visible_to`) and
hand the rows to these builders. Every builder puts units on its axes, caps each series at
`factory_portal.charts.MAX_POINTS` points, escapes every label that came from a user or an engine (model names,
hostnames, endpoint names can hold `<script>`), and draws times as the site's wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from factory_portal.charts import (
    MAX_POINTS,
    PALETTE,
    Series,
    base_layout,
    downsample,
    empty_figure,
    escape_label,
    local_iso,
    time_series_figure,
)

J_PER_KWH = Decimal(3_600_000)

# NVML clocks-event (throttle) reason bits, nvml.h `nvmlClocksEventReason*`.
THROTTLE_REASONS = [
    (0x1, "GPU idle"), (0x2, "applications clocks setting"), (0x4, "software power cap"),
    (0x8, "hardware slowdown"), (0x10, "sync boost"), (0x20, "software thermal slowdown"),
    (0x40, "hardware thermal slowdown"), (0x80, "hardware power brake"), (0x100, "display clock setting"),
]


def throttle_reason_names(mask: int | None) -> list[str] | None:
    """The reasons set in an NVML clocks-event mask; [] = none (clocks not held back), None = not reported."""
    if mask is None:
        return None
    names = [name for bit, name in THROTTLE_REASONS if mask & bit]
    known = sum(bit for bit, _ in THROTTLE_REASONS)
    if mask & ~known:
        names.append(f"other (0x{mask & ~known:x})")
    return names


def _y(values: Sequence, scale: float = 1.0) -> list[float | None]:
    return [None if v is None else float(v) * scale for v in values]


def _sparse_markers(fig: dict) -> dict:
    """A line of one or two points draws nothing visible: show its points as markers too."""
    for trace in fig["data"]:
        if trace.get("mode") == "lines" and sum(v is not None for v in trace["y"]) <= 2:
            trace["mode"] = "lines+markers"
    return fig


def _with_reference(fig: dict, *, value: float | None, label: str, color: str = "#cf222e") -> dict:
    """A dashed horizontal line (a capacity or a target) across the plot, named in a small label."""
    if value is None or fig["meta"].get("empty"):
        return fig
    layout = fig["layout"]
    layout.setdefault("shapes", []).append({
        "type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": value, "y1": value,
        "line": {"color": color, "dash": "dash", "width": 1.5}})
    layout.setdefault("annotations", []).append({
        "text": escape_label(label), "xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": value,
        "yanchor": "bottom", "showarrow": False, "font": {"size": 11, "color": color}})
    return fig


# --- Fleet and site ------------------------------------------------------------------------------------------------

def fleet_utilization_figure(*, sites: Sequence[tuple[str, list[dict]]], time_zone: str) -> dict:
    """Mean GPU utilization (%) per site over time, from `sites_gpu_buckets` rows."""
    series = [Series(name, [r["bucket"] for r in rows], _y([r["util_mean_pct"] for r in rows])) for name, rows in sites]
    fig = time_series_figure(series=series, y_title="GPU utilization", y_unit="%", time_zone=time_zone,
                             empty_message="No GPU readings in this range yet: start a node worker on each node.")
    if not fig["meta"]["empty"]:
        fig["layout"]["yaxis"]["range"] = [0, 100]
    return _sparse_markers(fig)


def fleet_power_figure(*, sites: Sequence[tuple[str, list[dict]]], time_zone: str) -> dict:
    """Mean GPU power drawn (kW) per site over time."""
    series = [Series(name, [r["bucket"] for r in rows], _y([r["power_mean_w"] for r in rows], 1e-3))
              for name, rows in sites]
    return _sparse_markers(time_series_figure(series=series, y_title="GPU power drawn", y_unit="kW",
                                              time_zone=time_zone,
                              empty_message="No power readings in this range yet."))


def tokens_figure(*, groups: Sequence[tuple[str, list[dict]]], time_zone: str, empty_message: str) -> dict:
    """Tokens per second (prompt + generated) per group (site, endpoint or model), from `usage_buckets` rows."""
    series = [Series(name, [r["bucket"] for r in rows],
                     [r["prompt_tokens_per_s"] + r["generation_tokens_per_s"] for r in rows]) for name, rows in groups]
    return _sparse_markers(time_series_figure(series=series, y_title="tokens", y_unit="tokens/s",
                                              time_zone=time_zone, empty_message=empty_message))


def latency_figure(*, groups: Sequence[tuple[str, list[dict]]], time_zone: str) -> dict:
    """Mean time to first token and mean inter-token latency (ms) per group."""
    series = []
    for name, rows in groups:
        x = [r["bucket"] for r in rows]
        series.append(Series(f"{name} · TTFT", x, _y([r["ttft_mean_s"] for r in rows], 1e3)))
        series.append(Series(f"{name} · ITL", x, _y([r["itl_mean_s"] for r in rows], 1e3)))
    series = [s for s in series if any(v is not None for v in s.y)]
    return _sparse_markers(time_series_figure(series=series, y_title="latency", y_unit="ms",
                                              time_zone=time_zone,
                              empty_message="No latency observed in this range: the engine exposes no TTFT/ITL "
                                            "histograms, or served no requests."))


def power_energy_figure(*, rows: list[dict], capacity_kw: float, pue: float, time_zone: str) -> dict:
    """The site's GPU power (kW, mean and minute peak) and facility estimate (× PUE) against the contracted
    capacity, with the GPU energy of each bucket (kWh) as bars on a second axis."""
    if not rows:
        return empty_figure(message="No power readings in this range yet.", x_title="time", x_unit=time_zone,
                            y_title="power", y_unit="kW")
    x_all = [r["bucket"] for r in rows]
    data = []
    lines = [
        ("GPU power (mean)", [r["power_mean_w"] for r in rows], 1e-3, PALETTE[0], "solid"),
        ("GPU power (peak bound)", [r["power_max_w"] for r in rows], 1e-3, PALETTE[5], "dot"),
        (f"facility estimate (× PUE {pue:g})", [r["power_mean_w"] for r in rows], 1e-3 * pue, PALETTE[1], "solid"),
    ]
    for name, values, scale, color, dash in lines:
        x, y = downsample(x_all, _y(values, scale))
        data.append({"type": "scatter", "mode": "lines", "name": escape_label(name),
                     "x": [local_iso(t, time_zone) for t in x], "y": y, "line": {"color": color, "width": 2,
                                                                                  "dash": dash},
                     "hovertemplate": f"{escape_label(name)}<br>%{{x}}<br>%{{y:.4~g}} kW<extra></extra>"})
    # Energy as the running total over the range (kWh): exact sums of the buckets, flat where a bucket had none.
    energy, total = [], Decimal(0)
    for r in rows:
        if r["energy_j"] is not None:
            total += Decimal(r["energy_j"])
        energy.append(float(total / J_PER_KWH))
    x, y = downsample(x_all, energy)
    estimated = any(r["energy_estimated"] for r in rows)
    name = "GPU energy since range start" + (" (partly estimated)" if estimated else "")
    data.append({"type": "scatter", "mode": "lines", "name": escape_label(name),
                 "x": [local_iso(t, time_zone) for t in x], "y": y, "yaxis": "y2",
                 "line": {"color": "#57606a", "width": 1.5, "dash": "dashdot"},
                 "hovertemplate": f"{escape_label(name)}<br>%{{x}}<br>%{{y:,.4~g}} kWh<extra></extra>"})
    layout = base_layout(x_title="time", x_unit=time_zone, y_title="power", y_unit="kW",
                         yaxis2={"title": {"text": "energy (kWh)"}, "overlaying": "y", "side": "right",
                                 "rangemode": "tozero", "showgrid": False}, margin={"r": 64})
    fig = {"data": data, "layout": layout, "meta": {"empty": False}}
    return _with_reference(fig, value=capacity_kw, label=f"contracted {capacity_kw:,g} kW")


HEATMAP_ROW_TITLES = {"gpu": "GPU", "node": "node (mean of its GPUs)", "nodes": "nodes (mean of their GPUs)"}


def heatmap_figure(*, heatmap: dict, time_zone: str, target_pct: int | None = None) -> dict:
    """GPU × time utilization (%) from `site_gpu_heatmap_binned`; empty cells (no reading) stay blank. On a big
    site a row is a node or a bin of nodes (the sample-weighted mean of their GPUs), named with its GPU count."""
    if not heatmap["gpus"] or not any(v is not None for row in heatmap["util_pct"] for v in row):
        return empty_figure(message="No GPU readings in this range yet: start a node worker on each node.",
                            x_title="time", x_unit=time_zone, y_title="GPU", y_unit="")
    step = heatmap["step"]
    kind = heatmap.get("rows", "gpu")
    x = [local_iso(c, time_zone) for c in heatmap["columns"]]
    names = [escape_label(n) for n in heatmap["gpus"]]
    z = [[None if v is None else round(v, 1) for v in row] for row in heatmap["util_pct"]]
    width = f"{int(step.total_seconds() // 60)} min" if step < dt.timedelta(hours=1) else \
        f"{int(step.total_seconds() // 3600)} h"
    what = "" if kind == "gpu" else "mean of the row's GPUs<br>"
    data = [{
        "type": "heatmap", "x": x, "y": names, "z": z, "zmin": 0, "zmax": 100, "colorscale": "Viridis",
        "hoverongaps": False, "colorbar": {"title": {"text": "util (%)"}, "thickness": 12},
        "hovertemplate": f"%{{y}}<br>%{{x}} (+{width})<br>{what}%{{z:.1f}} %<extra></extra>",
    }]
    layout = base_layout(x_title=f"time, {width} columns", x_unit=time_zone, y_title=HEATMAP_ROW_TITLES[kind],
                         y_unit="", showlegend=False,
                         yaxis={"type": "category", "autorange": "reversed", "rangemode": "normal",
                                "showticklabels": len(names) <= 64})
    notes = []
    if kind != "gpu":
        per = "node" if kind == "node" else "group of nodes"
        notes.append(f"{heatmap.get('gpu_count', 0):,} GPUs: one row per {per}")
    if target_pct:
        notes.append(f"utilization target {target_pct} %")
    if notes:
        layout["annotations"] = [{"text": escape_label(" · ".join(notes)), "xref": "paper",
                                  "yref": "paper", "x": 1, "y": 1.0, "xanchor": "right", "yanchor": "bottom",
                                  "showarrow": False, "font": {"size": 11, "color": "#57606a"}}]
    return {"data": data, "layout": layout, "meta": {"empty": False, "cells": len(names) * len(x), "rows": kind}}


# --- One GPU -------------------------------------------------------------------------------------------------------

def gpu_util_figure(*, rows: list[dict], time_zone: str) -> dict:
    x = [r["bucket"] for r in rows]
    fig = time_series_figure(
        series=[Series("mean", x, _y([r["util_mean_pct"] for r in rows])),
                Series("max", x, _y([r["util_max_pct"] for r in rows]))],
        y_title="GPU utilization", y_unit="%", time_zone=time_zone,
        empty_message="No readings of this GPU in this range (or NVML does not report its utilization).")
    if not fig["meta"]["empty"]:
        fig["layout"]["yaxis"]["range"] = [0, 100]
    return _sparse_markers(fig)


def gpu_power_figure(*, rows: list[dict], time_zone: str) -> dict:
    x = [r["bucket"] for r in rows]
    return _sparse_markers(time_series_figure(
        series=[Series("mean", x, _y([r["power_mean_w"] for r in rows])),
                Series("max", x, _y([r["power_max_w"] for r in rows]))],
        y_title="power", y_unit="W", time_zone=time_zone,
        empty_message="No power readings of this GPU in this range (or NVML does not report its power)."))


def gpu_memory_temperature_figure(*, rows: list[dict], time_zone: str) -> dict:
    """Peak memory used (GiB) and peak temperature (°C) per bucket, on two axes."""
    if not rows:
        return empty_figure(message="No readings of this GPU in this range.", x_title="time", x_unit=time_zone,
                            y_title="memory used", y_unit="GiB")
    x_all = [r["bucket"] for r in rows]
    mx, my = downsample(x_all, _y([r["memory_used_max_bytes"] for r in rows], 1 / 2**30))
    tx, ty = downsample(x_all, _y([r["temperature_max_c"] for r in rows]))
    data = [
        {"type": "scatter", "mode": "lines", "name": "memory used (peak)", "x": [local_iso(t, time_zone) for t in mx],
         "y": my, "line": {"color": PALETTE[0], "width": 2},
         "hovertemplate": "memory used<br>%{x}<br>%{y:.4~g} GiB<extra></extra>"},
        {"type": "scatter", "mode": "lines", "name": "temperature (peak)", "yaxis": "y2",
         "x": [local_iso(t, time_zone) for t in tx], "y": ty, "line": {"color": PALETTE[3], "width": 2},
         "hovertemplate": "temperature<br>%{x}<br>%{y} °C<extra></extra>"},
    ]
    layout = base_layout(x_title="time", x_unit=time_zone, y_title="memory used", y_unit="GiB",
                         yaxis2={"title": {"text": "temperature (°C)"}, "overlaying": "y", "side": "right",
                                 "rangemode": "tozero", "showgrid": False}, margin={"r": 64})
    return {"data": data, "layout": layout, "meta": {"empty": False}}


# --- One endpoint --------------------------------------------------------------------------------------------------

def model_tokens_figure(*, models: Sequence[tuple[str, list[dict]]], time_zone: str) -> dict:
    """Input (prompt) and output (generated) tokens/s per model."""
    series = []
    for name, rows in models:
        x = [r["bucket"] for r in rows]
        series.append(Series(f"{name or '(no model label)'} · in", x, [r["prompt_tokens_per_s"] for r in rows]))
        series.append(Series(f"{name or '(no model label)'} · out", x, [r["generation_tokens_per_s"] for r in rows]))
    return _sparse_markers(time_series_figure(series=series, y_title="tokens", y_unit="tokens/s", time_zone=time_zone,
                              empty_message="No tokens metered in this range: the endpoint has not been scraped "
                                            "twice yet, or served nothing."))


def requests_figure(*, rows: list[dict], time_zone: str) -> dict:
    """Requests finished OK and failed per bucket (stacked bars, count per bucket)."""
    if not rows:
        return empty_figure(message="No requests metered in this range.", x_title="time", x_unit=time_zone,
                            y_title="requests", y_unit="per bucket")
    x_all = [r["bucket"] for r in rows]
    data = []
    for name, key, color in (("ok", "requests_ok", "#1a7f37"), ("failed", "requests_failed", "#cf222e")):
        x, y = downsample(x_all, [float(r[key]) for r in rows])
        data.append({"type": "bar", "name": name, "x": [local_iso(t, time_zone) for t in x], "y": y,
                     "marker": {"color": color},
                     "hovertemplate": f"{name}<br>%{{x}}<br>%{{y:,.0f}} requests<extra></extra>"})
    seconds = rows[0]["seconds"]
    unit = ("per minute" if seconds == 60 else "per hour" if seconds == 3600 else "per day" if seconds == 86400
            else f"per {seconds // 3600} h")
    layout = base_layout(x_title="time", x_unit=time_zone, y_title="requests", y_unit=unit, barmode="stack")
    return {"data": data, "layout": layout, "meta": {"empty": False}}


def gauges_figure(*, rows: list[dict], time_zone: str) -> dict:
    """Running and waiting requests (count) and KV-cache use (%, right axis) per minute."""
    if not rows:
        return empty_figure(message="No scrapes of this endpoint in the last hour.", x_title="time", x_unit=time_zone,
                            y_title="requests", y_unit="count")
    x_all = [r["bucket"] for r in rows]
    data = []
    for name, key, scale, axis, color in (("running", "running", 1.0, "y", PALETTE[0]),
                                          ("waiting", "waiting", 1.0, "y", PALETTE[1]),
                                          ("KV cache used", "kv_cache_usage", 100.0, "y2", PALETTE[2])):
        x, y = downsample(x_all, _y([r[key] for r in rows], scale))
        if all(v is None for v in y):
            continue  # the engine does not expose it: no line, rather than a line at 0
        unit = "%" if axis == "y2" else "requests"
        data.append({"type": "scatter", "mode": "lines", "name": name, "yaxis": axis,
                     "x": [local_iso(t, time_zone) for t in x], "y": y, "line": {"color": color, "width": 2},
                     "hovertemplate": f"{name}<br>%{{x}}<br>%{{y:.4~g}} {unit}<extra></extra>"})
    if not data:
        return empty_figure(message="This engine exposes no running/waiting/KV-cache gauges.", x_title="time",
                            x_unit=time_zone, y_title="requests", y_unit="count")
    layout = base_layout(x_title="time", x_unit=time_zone, y_title="requests", y_unit="count",
                         yaxis2={"title": {"text": "KV cache used (%)"}, "overlaying": "y", "side": "right",
                                 "range": [0, 100], "showgrid": False}, margin={"r": 64})
    return {"data": data, "layout": layout, "meta": {"empty": False}}


def health_figure(*, rows: list[dict], time_zone: str, expected: float | None) -> dict:
    """Scrapes that returned counters per bucket, against the number expected at the scrape interval."""
    if not rows:
        return empty_figure(message="No successful scrape in this range.", x_title="time", x_unit=time_zone,
                            y_title="successful scrapes", y_unit="per bucket")
    x, y = downsample([r["bucket"] for r in rows], [float(r["scrapes"]) for r in rows])
    data = [{"type": "bar", "name": "successful scrapes", "x": [local_iso(t, time_zone) for t in x], "y": y,
             "marker": {"color": "#1a7f37"}, "hovertemplate": "%{x}<br>%{y:.0f} scrapes<extra></extra>"}]
    seconds = rows[0]["seconds"]
    unit = ("per minute" if seconds == 60 else "per hour" if seconds == 3600 else "per day" if seconds == 86400
            else f"per {seconds // 3600} h")
    layout = base_layout(x_title="time", x_unit=time_zone, y_title="successful scrapes", y_unit=unit,
                         showlegend=False)
    fig = {"data": data, "layout": layout, "meta": {"empty": False}}
    return _with_reference(fig, value=expected, label="expected", color="#57606a")


__all__ = [
    "MAX_POINTS", "fleet_power_figure", "fleet_utilization_figure", "gauges_figure", "gpu_memory_temperature_figure",
    "gpu_power_figure", "gpu_util_figure", "health_figure", "heatmap_figure", "latency_figure",
    "model_tokens_figure", "power_energy_figure", "requests_figure", "throttle_reason_names", "tokens_figure",
]
