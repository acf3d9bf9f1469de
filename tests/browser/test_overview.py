"""The partner overview `/` in real Chromium: cards, chart, alerts, live refresh, phone width, escaping."""

from __future__ import annotations

import pytest

from sites.models import Gpu

pytestmark = pytest.mark.browser


def test_overview_renders_cards_chart_and_alerts(page_for, seeded, world) -> None:
    # given
    bp = page_for("operator")
    # when
    bp.goto("/")
    bp.page.wait_for_selector(".chart[data-state=drawn]")
    # then
    page = bp.page
    site = seeded["site"]
    assert page.locator(f"[data-site-id='{site.pk}']").count() == 1
    assert page.locator(f"[data-site-id='{world.site_b.pk}']").count() == 0
    assert world.site_b.name not in page.content()
    assert page.text_content(f"[data-live='site-{site.pk}-gpus_online']") == "4"
    assert page.text_content(f"[data-live='site-{site.pk}-gpus_lost']") == "1"
    assert page.text_content(f"[data-live='site-{site.pk}-power_kw']") == "1,250 kW"
    alerts = page.text_content("[data-live-alerts]")
    assert "Endpoint sglang-oslo is unhealthy: connect timeout" in alerts
    assert "Node oslo-n-02 is stale" in alerts
    assert "behind plan" in alerts
    assert "1 GPU(s) lost" in alerts
    # Figures that need telemetry say so instead of showing a number.
    assert page.locator("text=no telemetry yet").count() >= 5
    # Economics comes from the tenants app's provider: nothing metered today at this site, so nothing earned.
    assert page.text_content(f"[data-live='site-{site.pk}-cost_per_mtok']") == "no tokens yet"
    # The chart names its axes with units, and Plotly came from our own static files.
    assert "GPUs (count)" in page.text_content(".chart .g-ytitle")
    assert bp.requested_hosts <= {"127.0.0.1", "localhost"}
    bp.screenshot("overview-inventory")
    bp.assert_clean()


def test_overview_value_changed_in_database_appears_without_reload(page_for, seeded) -> None:
    # given
    bp = page_for("operator")
    bp.goto("/")
    bp.page.wait_for_selector(".chart[data-state=drawn]")
    bp.page.evaluate("() => { window.__sameDocument = true; }")
    site = seeded["site"]
    # when
    Gpu.objects.filter(pk=seeded["gpus"][0].pk).update(status="lost")
    # then
    bp.page.wait_for_function(
        f"() => document.querySelector(\"[data-live='site-{site.pk}-gpus_lost']\").textContent === '2'",
        timeout=10_000)
    assert bp.page.text_content(f"[data-live='site-{site.pk}-gpus_online']") == "3"
    assert "2 GPU(s) lost" in bp.page.text_content("[data-live-alerts]")
    assert bp.page.evaluate("() => window.__sameDocument") is True  # updated in place, not reloaded
    bp.assert_clean()


def test_overview_stamp_and_stale_when_server_unreachable(page_for, seeded) -> None:
    # given
    bp = page_for("operator")
    bp.goto("/")
    bp.page.wait_for_function("() => Number(document.querySelector('.live').dataset.refreshes || 0) >= 1")
    assert bp.page.text_content("[data-live-stamp]").startswith("Updated ")
    # when: the live JSON stops answering (the route is cut in the browser, not on the server)
    bp.page.route("**/sites/overview.json", lambda route: route.abort())
    # then
    bp.page.wait_for_selector(".live.is-stale", timeout=10_000)
    assert "Not updated since" in bp.page.text_content("[data-live-stamp]")
    # A failed fetch is reported by the browser itself as a console error; that one is expected here.
    bp.console_errors[:] = [e for e in bp.console_errors if "ERR_FAILED" not in e]
    bp.assert_clean()


def test_overview_fits_a_phone(page_for, seeded) -> None:
    # given
    bp = page_for("viewer", viewport={"width": 390, "height": 844})
    # when
    bp.goto("/")
    bp.page.wait_for_selector(".chart[data-state=drawn]")
    # then
    bp.assert_no_horizontal_overflow()
    assert bp.page.locator("text=Register a site").count() == 0  # viewers cannot create sites
    bp.screenshot("overview-phone")
    bp.assert_clean()


def test_chart_labels_are_escaped(page_for, world) -> None:
    # given: a site name that Plotly would otherwise render as markup
    world.site_a.name = "<b>Bold</b> & Co"
    world.site_a.save()
    bp = page_for("operator")
    # when
    bp.goto("/")
    bp.page.wait_for_selector(".chart[data-state=drawn]")
    # then
    ticks = bp.page.locator(".chart .xtick text").all_text_contents()
    assert "<b>Bold</b> & Co" in ticks
    assert bp.page.locator(".chart .xtick text b, .chart .xtick tspan[style*='bold']").count() == 0
    bp.assert_clean()


def test_new_partner_sees_what_to_do_next(page_for, world) -> None:
    # given
    from sites.choices import PartnerRole
    from tests import factories

    user = factories.UserFactory(username="newcomer")
    factories.MembershipFactory(user=user, partner=factories.PartnerFactory(name="New Capital"),
                                role=PartnerRole.OWNER)
    world.users["newcomer"] = user
    bp = page_for("newcomer")
    # when
    bp.goto("/")
    # then
    assert "No sites yet" in bp.page.text_content("main")
    assert bp.page.locator("a", has_text="registering your first site").count() == 1
    bp.assert_clean()
