"""Telemetry on the overview, site, GPU and endpoint pages in real Chromium: charts drawn from seeded rollups,
values injected into the database appear without reload, hostile engine labels stay text, nothing leaves 127.0.0.1."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.browser.conftest import HOSTILE_LABELS
from tests.telemetry import dash_support as seed

pytestmark = pytest.mark.browser

ALL_ANSWERED = ("() => document.querySelectorAll('.chart').length > 0 && "
                "document.querySelectorAll('.chart:not([data-state])').length === 0")


def _open(bp, path: str) -> None:
    dialogs: list[str] = []
    bp.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    bp.dialogs = dialogs
    bp.goto(path)
    bp.page.wait_for_function(ALL_ANSWERED, timeout=15_000)
    assert bp.page.locator(".chart[data-state=error]").count() == 0
    bp.page.evaluate("() => { window.__sameDocument = true; }")


def _wait_text(bp, selector: str, text: str) -> None:
    bp.page.wait_for_function(
        "([s, t]) => { const el = document.querySelector(s); return el && el.textContent.includes(t); }",
        arg=[selector, text], timeout=10_000)
    assert bp.page.evaluate("() => window.__sameDocument") is True  # updated in place, not reloaded


def _assert_no_injection(bp) -> None:
    assert bp.dialogs == []
    assert bp.page.locator("img[src=x]").count() == 0
    assert bp.page.evaluate("() => Array.from(document.scripts).filter(s => s.textContent.includes('alert(1)')).length"
                            ) == 0


def test_overview_draws_fleet_charts_and_live_figures(page_for, seeded_telemetry) -> None:
    # given
    bp = page_for("operator")
    site = seeded_telemetry["site"]
    # when
    _open(bp, "/")
    # then: utilization, power and tokens charts drawn with units; live figures on the card
    assert bp.page.locator(".chart[data-state=drawn]").count() == 4
    titles = " ".join(bp.page.locator(".chart .g-ytitle").all_text_contents())
    assert "GPU utilization (%)" in titles and "GPU power drawn (kW)" in titles and "tokens (tokens/s)" in titles
    card = f"[data-site-id='{site.pk}']"
    assert bp.page.text_content(f"{card} [data-live='site-{site.pk}-util']") == "62 %"  # 60..63 over 4 GPUs
    assert bp.page.text_content(f"{card} [data-live='site-{site.pk}-power_drawn']") == "1.6 kW"
    assert "tokens/s" in bp.page.text_content(f"{card} [data-live='site-{site.pk}-tokens_per_s']")
    assert "below its 70 % target" in bp.page.text_content("[data-live-alerts]")
    bp.screenshot("overview")
    # when: a new reading lands in the database
    for gpu in seeded_telemetry["online_gpus"]:
        seed.sample(gpu=gpu, ts=timezone.now(), util_pct=100, power_w=400.0)
    # then
    _wait_text(bp, f"[data-live='site-{site.pk}-util']", "100 %")  # each GPU's latest reading: 100 %
    _assert_no_injection(bp)
    bp.assert_clean()


def test_site_page_heatmap_power_tokens_latency(page_for, seeded_telemetry) -> None:
    # given
    bp = page_for("viewer")
    site = seeded_telemetry["site"]
    endpoint = seeded_telemetry["endpoint"]
    # when
    _open(bp, f"/sites/{site.slug}/")
    # then
    assert bp.page.locator(".chart .hm, .chart .heatmaplayer").count() >= 1  # the heatmap trace rendered
    drawn = bp.page.locator(".chart[data-state=drawn]").count()
    assert drawn == 6, drawn  # GPU states, heatmap, power, tokens, latency, build-out
    titles = " ".join(bp.page.locator(".chart .g-ytitle, .chart .g-y2title").all_text_contents())
    assert "power (kW)" in titles and "energy (kWh)" in titles and "latency (ms)" in titles
    assert bp.page.locator(".chart .annotation-text", has_text="contracted 1,250 kW").count() == 1
    assert "tokens/s" in bp.page.text_content(f"[data-live='endpoint-{endpoint.pk}-tokens']")
    assert "ms" in bp.page.text_content(f"[data-live='endpoint-{endpoint.pk}-ttft']")
    node_2 = seeded_telemetry["node_2"]
    assert "h ago" in bp.page.text_content(f"[data-live='node-{node_2.pk}-age']")
    assert "is-stale" in bp.page.get_attribute(f"[data-live='node-{node_2.pk}-age']", "class")
    legend = " ".join(bp.page.locator(".chart .legendtext").all_text_contents())
    assert HOSTILE_LABELS[0] not in legend  # endpoint names, not labels, on the site charts
    bp.screenshot("site")
    # when: the endpoint's health changes in the database
    type(endpoint).objects.filter(pk=endpoint.pk).update(health="unhealthy", last_error="HTTP 503")
    # then
    _wait_text(bp, f"[data-live='endpoint-{endpoint.pk}-health']", "Unhealthy")
    _assert_no_injection(bp)
    bp.assert_clean()


def test_gpu_page_readings_charts_and_live_update(page_for, seeded_telemetry) -> None:
    # given
    bp = page_for("operator")
    site = seeded_telemetry["site"]
    gpu = seeded_telemetry["online_gpus"][1]
    # when
    _open(bp, f"/sites/{site.slug}/gpus/{gpu.pk}/")
    # then
    assert bp.page.locator(".chart[data-state=drawn]").count() == 3
    assert bp.page.text_content("[data-live='gpu-util']") == "61 %"
    assert bp.page.text_content("[data-live='gpu-energy_counter']") == "not supported (NVMLError_NotSupported)"
    assert bp.page.text_content("[data-live='gpu-mem_clock']") == "not reported"
    assert bp.page.text_content("[data-live='gpu-throttle']") == "nothing (full clocks)"
    titles = " ".join(bp.page.locator(".chart .g-ytitle, .chart .g-y2title").all_text_contents())
    assert "GPU utilization (%)" in titles and "power (W)" in titles and "temperature (°C)" in titles
    bp.screenshot("gpu")
    # when
    seed.sample(gpu=gpu, ts=timezone.now(), util_pct=97, temperature_c=83, throttle_reasons=0x40)
    # then
    _wait_text(bp, "[data-live='gpu-temperature']", "83 °C")
    assert bp.page.text_content("[data-live='gpu-throttle']") == "hardware thermal slowdown"
    bp.assert_clean()


def test_endpoint_page_shows_hostile_labels_as_text(page_for, seeded_telemetry) -> None:
    # given
    bp = page_for("operator")
    site = seeded_telemetry["site"]
    endpoint = seeded_telemetry["endpoint"]
    # when
    _open(bp, f"/sites/{site.slug}/endpoints/{endpoint.pk}/?range=1h")
    # then: the labels read as text in the tables and the chart legend, and nothing ran or got injected
    tables = bp.page.text_content("section[aria-labelledby=ep-models]")
    for label in HOSTILE_LABELS:
        assert label in tables
    legend = " ".join(bp.page.locator(".chart .legendtext").all_text_contents())
    assert f"{HOSTILE_LABELS[0]} · in" in legend and f"{HOSTILE_LABELS[1]} · out" in legend
    assert bp.page.locator(".chart[data-state=drawn]").count() >= 4  # tokens, requests, latency, health
    titles = " ".join(bp.page.locator(".chart .g-ytitle").all_text_contents())
    assert "tokens (tokens/s)" in titles and "requests (per minute)" in titles and "latency (ms)" in titles
    _assert_no_injection(bp)
    bp.screenshot("endpoint")
    # when: a new delta is metered
    seed.usage(endpoint=endpoint, model="fresh-model", end=timezone.now(), seconds=1, prompt=50_000, generation=0)
    # then
    _wait_text(bp, "[data-live='endpoint-tokens']", ",")  # thousands of tokens/s now
    _assert_no_injection(bp)
    bp.assert_clean()


def test_other_partner_gets_404_for_gpu_and_endpoint_pages(page_for, seeded_telemetry, world) -> None:
    # given
    bp = page_for("outsider")
    site = seeded_telemetry["site"]
    # when
    gpu = bp.page.goto(f"{bp.base_url}/sites/{site.slug}/gpus/{seeded_telemetry['online_gpus'][0].pk}/")
    ep = bp.page.goto(f"{bp.base_url}/sites/{site.slug}/endpoints/{seeded_telemetry['endpoint'].pk}/")
    # then
    assert gpu.status == 404 and ep.status == 404
    bp.console_errors.clear()  # the browser logs the 404 document itself
    bp.assert_clean()


def test_stale_gpu_page_greys_out_readings(page_for, seeded) -> None:
    # given: a GPU whose last reading is older than the live window
    bp = page_for("operator")
    gpu = seeded["gpus"][-2]  # on the stale node
    seed.sample(gpu=gpu, ts=timezone.now() - dt.timedelta(hours=2), util_pct=10)
    # when
    _open(bp, f"/sites/{seeded['site'].slug}/gpus/{gpu.pk}/")
    # then
    assert bp.page.text_content("[data-live='gpu-util']") == "no reading in the last 10 min"
    assert "is-stale" in bp.page.get_attribute("[data-live='gpu-util']", "class")
    assert bp.page.locator(".chart[data-state=empty]").count() == 3
    bp.assert_clean()
