"""The site page in real Chromium: live cards, charts, build-out tracker, compliance, range selector."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from sites.models import SiteMilestone

pytestmark = pytest.mark.browser


def _open(bp, site, query: str = "") -> None:
    bp.goto(f"/sites/{site.slug}/{query}")
    # Every chart answered: drawn, or an empty state that says why (no telemetry seeded in these tests).
    bp.page.wait_for_function("() => document.querySelectorAll('.chart').length > 0 && "
                              "document.querySelectorAll('.chart:not([data-state])').length === 0")
    assert bp.page.locator(".chart[data-state=error]").count() == 0


def test_site_page_renders_tracker_compliance_and_charts(page_for, seeded) -> None:
    # given
    bp = page_for("operator")
    site = seeded["site"]
    # when
    _open(bp, site)
    # then
    page = bp.page
    assert page.text_content(f"[data-live='site-{site.pk}-gpus_online']") == "4"
    tracker = page.text_content("#buildout-title + p, section[aria-labelledby=buildout-title]")
    assert "Behind plan by 15 d" in tracker
    assert "Hardware delivered" in tracker
    assert page.locator("section[aria-labelledby=buildout-title] a", has_text="Edit").count() == 6
    compliance = page.text_content("section[aria-labelledby=compliance-title]")
    assert "oslo-n-02" in compliance and "550.54.15" in compliance
    assert "sglang-oslo" in compliance and "0.4.3" in compliance
    assert page.text_content(f"[data-live='site-{site.pk}-compliance_drift']") == "2"
    # Axes carry units; the build-out chart's "today" line is drawn.
    titles = " ".join(page.locator(".chart .g-xtitle, .chart .g-ytitle").all_text_contents())
    assert "GPUs (count)" in titles and "date (site calendar)" in titles
    # Without readings the live figures say so (never 0), and the telemetry charts say what to do next.
    assert page.locator("text=no telemetry yet").count() >= 3
    assert page.locator(".chart[data-state=empty]").count() == 4
    bp.screenshot("site-inventory")
    bp.assert_clean()


def test_site_page_milestone_done_in_database_appears_without_reload(page_for, seeded) -> None:
    # given
    bp = page_for("viewer")
    site = seeded["site"]
    _open(bp, site)
    assert bp.page.locator("section[aria-labelledby=buildout-title] a", has_text="Edit").count() == 0  # read-only
    bp.page.evaluate("() => { window.__sameDocument = true; }")
    hardware = seeded["plan"]["hardware_delivered"]
    # when
    SiteMilestone.objects.filter(pk=hardware.pk).update(done_date=timezone.now().date() - dt.timedelta(days=1))
    # then
    bp.page.wait_for_function(
        f"() => document.querySelector(\"[data-live='milestone-{hardware.pk}-state']\").textContent === 'done late'",
        timeout=10_000)
    assert bp.page.text_content(f"section[aria-labelledby=buildout-title] [data-live='site-{site.pk}-buildout']") \
        == "2/6 · On plan"
    assert bp.page.evaluate("() => window.__sameDocument") is True
    bp.assert_clean()


def test_operator_completes_a_milestone_and_a_future_date_is_refused(page_for, seeded) -> None:
    # given
    bp = page_for("operator")
    site = seeded["site"]
    hardware = seeded["plan"]["hardware_delivered"]
    bp.goto(f"/sites/{site.slug}/milestones/{hardware.pk}/edit/")
    tomorrow = timezone.now().date() + dt.timedelta(days=2)
    # when: a done date that has not come yet
    bp.page.fill("#id_done_date", tomorrow.isoformat())
    bp.page.click("form.grid-form button[type=submit]")
    # then
    assert "cannot be in the future" in bp.page.text_content(".field.has-error")
    # when: a real one
    bp.page.fill("#id_done_date", (timezone.now().date() - dt.timedelta(days=3)).isoformat())
    bp.page.click("form.grid-form button[type=submit]")
    bp.page.wait_for_url(f"**/sites/{site.slug}/")
    # then
    assert bp.page.text_content(f"[data-live='milestone-{hardware.pk}-state']") == "done late"
    bp.assert_clean()


def test_range_selector_keeps_the_range_in_the_query_string(page_for, seeded) -> None:
    # given
    bp = page_for("operator")
    site = seeded["site"]
    _open(bp, site)
    # when
    with bp.page.expect_navigation():
        bp.page.select_option("[data-range-select]", "7d")
    # then
    assert bp.page.url.endswith("?range=7d&start=&end=")
    assert "over last 7 days" in bp.page.text_content("section[aria-labelledby=site-charts-title]")
    # when: custom reveals its inputs
    bp.page.select_option("[data-range-select]", "custom")
    # then
    assert bp.page.is_visible("[data-custom-range] input[name=start]")
    # when: a malformed range is a message, not an error page
    _open(bp, site, "?range=custom&start=yesterday&end=now")
    # then
    assert "must be a date and time" in bp.page.text_content(".range .error")
    bp.assert_clean()


def test_site_page_fits_a_phone(page_for, seeded) -> None:
    # given
    bp = page_for("operator", viewport={"width": 390, "height": 844})
    # when
    _open(bp, seeded["site"])
    # then
    bp.assert_no_horizontal_overflow()
    bp.screenshot("site-phone")
    bp.assert_clean()
