"""Telemetry chart builders as pure functions: units on every axis, the point cap, escaping, absent ≠ zero."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from factory_portal.charts import MAX_POINTS
from telemetry import charts
from telemetry.gpu_selectors import HEATMAP_MAX_COLUMNS, heatmap_plan

T0 = dt.datetime(2026, 5, 1, 0, 0, tzinfo=dt.UTC)
HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']


def _usage_rows(n: int, *, step=dt.timedelta(minutes=1), seconds: int = 60) -> list[dict]:
    return [{"bucket": T0 + i * step, "seconds": seconds, "prompt_tokens": 600, "generation_tokens": 1200,
             "requests_ok": 3, "requests_failed": 1, "prompt_tokens_per_s": 10.0, "generation_tokens_per_s": 20.0,
             "ttft_mean_s": 0.25, "itl_mean_s": None if i % 2 else 0.02} for i in range(n)]


def test_throttle_reasons_decode_bits_and_keep_absent_apart_from_none() -> None:
    # given / when / then
    assert charts.throttle_reason_names(None) is None  # not reported
    assert charts.throttle_reason_names(0) == []  # reported: nothing holds the clocks back
    assert charts.throttle_reason_names(0x4 | 0x40) == ["software power cap", "hardware thermal slowdown"]
    assert charts.throttle_reason_names(0x1000) == ["other (0x1000)"]


def test_heatmap_escapes_gpu_names_keeps_gaps_and_names_units() -> None:
    # given: two GPUs, one with a hostile hostname and one column without a reading
    heatmap = {"gpus": [f"{HOSTILE[0]}/gpu0", f"{HOSTILE[1]}/gpu1"], "gpu_ids": [1, 2],
               "columns": [T0, T0 + dt.timedelta(hours=1)], "step": dt.timedelta(hours=1),
               "util_pct": [[55.55, None], [0.0, 100.0]]}
    # when
    fig = charts.heatmap_figure(heatmap=heatmap, time_zone="Europe/Oslo", target_pct=70)
    # then
    trace = fig["data"][0]
    assert trace["y"][0] == "&lt;script&gt;alert(1)&lt;/script&gt;/gpu0"
    assert "<img" not in trace["y"][1]
    assert trace["z"] == [[55.5, None], [0.0, 100.0]]  # a gap stays None; a real 0 % stays 0
    assert trace["x"][0] == "2026-05-01T02:00:00"  # site wall clock
    assert fig["layout"]["xaxis"]["title"]["text"] == "time, 1 h columns (Europe/Oslo)"
    assert trace["colorbar"]["title"]["text"] == "util (%)"


def test_heatmap_without_readings_says_what_to_do() -> None:
    # given
    heatmap = {"gpus": ["n/gpu0"], "gpu_ids": [1], "columns": [T0], "step": dt.timedelta(hours=1),
               "util_pct": [[None]]}
    # when
    fig = charts.heatmap_figure(heatmap=heatmap, time_zone="UTC")
    # then
    assert fig["meta"]["empty"] and "start a node worker" in fig["layout"]["annotations"][0]["text"]


def test_heatmap_plan_caps_columns_and_aligns_to_days() -> None:
    # given / when / then
    assert heatmap_plan(start=T0, end=T0 + dt.timedelta(hours=1)) == ("1m", dt.timedelta(minutes=1))
    assert heatmap_plan(start=T0, end=T0 + dt.timedelta(hours=24)) == ("1h", dt.timedelta(hours=1))
    assert heatmap_plan(start=T0, end=T0 + dt.timedelta(days=7)) == ("1h", dt.timedelta(hours=1))
    resolution, step = heatmap_plan(start=T0, end=T0 + dt.timedelta(days=30))
    assert step == dt.timedelta(hours=4) and 30 * 24 / 4 <= HEATMAP_MAX_COLUMNS
    _, step = heatmap_plan(start=T0, end=T0 + dt.timedelta(days=400))
    assert step % dt.timedelta(days=1) == dt.timedelta(0) and 400 / step.days <= HEATMAP_MAX_COLUMNS
    # a 1,000-GPU site: ≤ HEATMAP_MAX_CELLS cells (36 columns) → 24 h columns for 30 days, 6 h for 7 days
    # ... read from the 1-day and 6-hour utilization blocks, not aggregated from hourly rollups
    assert heatmap_plan(start=T0, end=T0 + dt.timedelta(days=30), gpus=1000) == ("1d", dt.timedelta(hours=24))
    assert heatmap_plan(start=T0, end=T0 + dt.timedelta(days=7), gpus=1000) == ("6h", dt.timedelta(hours=6))
    assert heatmap_plan(start=T0, end=T0 + dt.timedelta(hours=24), gpus=1000) == ("1h", dt.timedelta(hours=1))


def test_power_energy_figure_converts_units_and_draws_the_capacity() -> None:
    # given: 2 minutes at 500 kW of GPUs, 30 MJ (= 8.333 kWh) each; PUE 1.2
    rows = [{"bucket": T0 + dt.timedelta(minutes=i), "power_mean_w": 500_000.0, "power_max_w": 550_000.0,
             "energy_j": Decimal("30000000"), "energy_estimated": i == 1} for i in range(2)]
    # when
    fig = charts.power_energy_figure(rows=rows, capacity_kw=1250.0, pue=1.2, time_zone="UTC")
    # then
    mean, peak, facility, energy = fig["data"]
    assert mean["y"] == [500.0, 500.0] and peak["y"] == [550.0, 550.0]
    assert facility["y"] == [600.0, 600.0]
    assert energy["yaxis"] == "y2" and [round(v, 3) for v in energy["y"]] == [8.333, 16.667]  # running total
    assert energy["name"] == "GPU energy since range start (partly estimated)"
    assert fig["layout"]["yaxis"]["title"]["text"] == "power (kW)"
    assert fig["layout"]["yaxis2"]["title"]["text"] == "energy (kWh)"
    assert fig["layout"]["shapes"][0]["y0"] == 1250.0
    assert "contracted 1,250 kW" in fig["layout"]["annotations"][0]["text"]


def test_power_figure_keeps_unknown_power_as_a_gap() -> None:
    # given
    rows = [{"bucket": T0, "power_mean_w": None, "power_max_w": None, "energy_j": None, "energy_estimated": False}]
    # when
    fig = charts.power_energy_figure(rows=rows, capacity_kw=10.0, pue=1.3, time_zone="UTC")
    # then: no power line point (a gap, not 0); energy stays at its running total, 0 so far
    assert [t["y"] for t in fig["data"][:3]] == [[None]] * 3
    assert fig["data"][3]["y"] == [0.0]


def test_model_tokens_figure_escapes_engine_labels_and_caps_points() -> None:
    # given: 5,000 buckets of a model whose name is hostile
    rows = _usage_rows(5_000)
    # when
    fig = charts.model_tokens_figure(models=[(HOSTILE[1], rows), ("", rows[:3])], time_zone="UTC")
    # then
    names = [t["name"] for t in fig["data"]]
    assert names[0] == '"&gt;&lt;img src=x onerror=alert(1)&gt; · in'
    assert names[2] == "(no model label) · in"
    assert all(len(t["x"]) <= MAX_POINTS for t in fig["data"])
    assert len(fig["data"][0]["x"]) == MAX_POINTS
    assert fig["data"][1]["y"][0] == 20.0
    assert fig["layout"]["yaxis"]["title"]["text"] == "tokens (tokens/s)"


def test_latency_figure_in_ms_and_drops_unobserved_series() -> None:
    # given: TTFT observed, ITL observed every other bucket; a second group observed nothing
    rows = _usage_rows(4)
    silent = [{**r, "ttft_mean_s": None, "itl_mean_s": None} for r in rows]
    # when
    fig = charts.latency_figure(groups=[("ep<1>", rows), ("quiet", silent)], time_zone="UTC")
    # then
    assert [t["name"] for t in fig["data"]] == ["ep&lt;1&gt; · TTFT", "ep&lt;1&gt; · ITL"]
    assert fig["data"][0]["y"] == [250.0] * 4
    assert fig["data"][1]["y"] == [20.0, None, 20.0, None]
    assert fig["layout"]["yaxis"]["title"]["text"] == "latency (ms)"


def test_requests_figure_stacks_ok_and_failed_per_bucket() -> None:
    # given
    rows = _usage_rows(3, step=dt.timedelta(hours=1), seconds=3600)
    # when
    fig = charts.requests_figure(rows=rows, time_zone="UTC")
    # then
    assert [t["name"] for t in fig["data"]] == ["ok", "failed"]
    assert fig["data"][0]["y"] == [3.0] * 3 and fig["data"][1]["y"] == [1.0] * 3
    assert fig["layout"]["barmode"] == "stack"
    assert fig["layout"]["yaxis"]["title"]["text"] == "requests (per hour)"


def test_gauges_figure_leaves_out_what_the_engine_does_not_expose() -> None:
    # given: TGI-like: running only, no waiting, no KV cache
    rows = [{"bucket": T0, "running": 4.0, "waiting": None, "kv_cache_usage": None}]
    # when
    fig = charts.gauges_figure(rows=rows, time_zone="UTC")
    # then
    assert [t["name"] for t in fig["data"]] == ["running"]
    # when: nothing exposed at all
    fig = charts.gauges_figure(rows=[{**rows[0], "running": None}], time_zone="UTC")
    # then
    assert fig["meta"]["empty"] and "exposes no" in fig["layout"]["annotations"][0]["text"]


def test_kv_cache_shown_in_percent_on_its_own_axis() -> None:
    # given
    rows = [{"bucket": T0, "running": 1.0, "waiting": 0.0, "kv_cache_usage": 0.375}]
    # when
    fig = charts.gauges_figure(rows=rows, time_zone="UTC")
    # then
    kv = fig["data"][2]
    assert kv["yaxis"] == "y2" and kv["y"] == [37.5]
    assert fig["layout"]["yaxis2"]["title"]["text"] == "KV cache used (%)"


def test_health_figure_draws_expected_scrapes() -> None:
    # given: one scrape every 15 s → 240 expected per hour, 200 seen
    rows = [{"bucket": T0, "seconds": 3600, "scrapes": 200}]
    # when
    fig = charts.health_figure(rows=rows, time_zone="UTC", expected=240.0)
    # then
    assert fig["data"][0]["y"] == [200.0]
    assert fig["layout"]["shapes"][0]["y0"] == 240.0
    assert fig["layout"]["yaxis"]["title"]["text"] == "successful scrapes (per hour)"


def test_fleet_figures_units_and_empty_states() -> None:
    # given
    rows = [{"bucket": T0, "util_mean_pct": 42.0, "power_mean_w": 250_000.0}]
    # when
    util = charts.fleet_utilization_figure(sites=[("<b>Oslo</b>", rows)], time_zone="UTC")
    power = charts.fleet_power_figure(sites=[("Oslo", rows)], time_zone="UTC")
    empty = charts.fleet_utilization_figure(sites=[("Oslo", [])], time_zone="UTC")
    # then
    assert util["data"][0]["name"] == "&lt;b&gt;Oslo&lt;/b&gt;" and util["layout"]["yaxis"]["range"] == [0, 100]
    assert power["data"][0]["y"] == [250.0] and power["layout"]["yaxis"]["title"]["text"] == "GPU power drawn (kW)"
    assert empty["meta"]["empty"] is True
