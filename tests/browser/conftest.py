"""Real-browser harness: Debian's Chromium driven by Playwright against pytest-django's live server.

`page_for("operator")` gives a logged-in page of the cast. Every page fails its test when the browser
logs a console error or an uncaught exception, or when anything asks for a host other than 127.0.0.1 /
localhost (the request is aborted and recorded). Screenshots go to var/screenshots/ (docs/img/ with
`make screenshots`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import Client

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Test runs keep their screenshots in var/; `make screenshots` writes them to docs/img/ for the README.
DOCS_IMG = Path(os.environ.get("SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "var" / "screenshots")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop on this thread, which trips Django's async-safety check
    # for the ORM calls the tests make between page actions; nothing here runs concurrently on it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class BrowserPage:
    page: object  # playwright.sync_api.Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    requested_hosts: set[str] = field(default_factory=set)

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == 200, f"GET {path}: {response and response.status}"

    def screenshot(self, name: str, *, max_height: int = 1900) -> Path:
        """The page from the top, at most `max_height` px tall (keeps the committed PNGs ≤ ~300 KB)."""
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        path = DOCS_IMG / f"{name}.png"
        size = self.page.evaluate("() => ({w: document.documentElement.scrollWidth, "
                                  "h: document.documentElement.scrollHeight})")
        self.page.screenshot(path=str(path), full_page=True,
                             clip={"x": 0, "y": 0, "width": size["w"], "height": min(size["h"], max_height)})
        return path

    def assert_clean(self) -> None:
        assert not self.console_errors, f"console errors: {self.console_errors}"
        assert not self.blocked_requests, f"requests that left 127.0.0.1: {self.blocked_requests}"

    def assert_no_horizontal_overflow(self) -> None:
        sizes = self.page.evaluate(
            "() => ({doc: document.documentElement.scrollWidth, main: document.querySelector('main').scrollWidth,"
            " view: window.innerWidth})"
        )
        assert sizes["doc"] <= sizes["view"] and sizes["main"] <= sizes["view"], sizes


@pytest.fixture
def page_for(transactional_db, browser, live_server, world, settings) -> Iterator:
    """`page_for("viewer")` → a BrowserPage logged in as that cast member (None → anonymous)."""
    settings.DASHBOARD_REFRESH_S = 1  # live.js polls every second here, so "appears without reload" is quick
    made: list[tuple[object, BrowserPage]] = []

    def make(username: str | None, *, viewport: dict = DESKTOP) -> BrowserPage:
        context = browser.new_context(viewport=viewport, base_url=live_server.url)
        if username:
            client = Client()
            client.force_login(world.users[username], backend="django.contrib.auth.backends.ModelBackend")
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "url": live_server.url,
                                  "value": client.cookies[settings.SESSION_COOKIE_NAME].value}])
        page = context.new_page()
        bp = BrowserPage(page=page, base_url=live_server.url)
        page.on("console", lambda msg: bp.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: bp.console_errors.append(f"uncaught: {exc}"))

        def guard(route) -> None:
            url = route.request.url
            host = urlsplit(url).hostname
            if url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
                bp.requested_hosts.add(host or "")
                route.continue_()
            else:
                bp.blocked_requests.append(url)
                route.abort()

        context.route("**/*", guard)
        made.append((context, bp))
        return bp

    yield make
    # Stop the pages' polling and let the live server finish what it is answering before the database is
    # flushed: a chart request still running when TRUNCATE starts can deadlock with it and leave rows behind.
    for context, bp in made:
        bp.page.goto("about:blank")
        context.close()
    time.sleep(1.5)
    for _, bp in made:
        bp.assert_clean()


@pytest.fixture
def seeded(world) -> dict:
    """Partner A's site with a realistic inventory: two nodes, GPUs in every state, a plan half done, drift."""
    import datetime as dt
    from decimal import Decimal

    from django.utils import timezone

    from sites.buildout import milestone_plan_create
    from sites.models import SiteMilestone
    from tests import factories

    now = timezone.now()
    site = world.site_a
    site.name, site.status, site.gpu_poll_interval_s = "Oslo North", "burn_in", 300
    site.contract_date = now.date() - dt.timedelta(days=50)
    site.target_live_date = site.contract_date + dt.timedelta(days=90)
    site.power_capacity_kw = Decimal("1250")
    site.baseline_driver_version, site.baseline_cuda_version = "570.133", "12.8"
    site.baseline_engine_versions = {"vllm": "0.8.5", "sglang": "0.4.6"}
    site.save()
    milestone_plan_create(site=site)
    plan = {m.kind: m for m in SiteMilestone.objects.filter(site=site)}
    plan["power_secured"].done_date = plan["power_secured"].planned_date - dt.timedelta(days=2)
    plan["power_secured"].save()
    node_a = world.node_a
    node_a.status, node_a.last_seen_at, node_a.driver_version = "online", now, "570.133.20"
    node_a.cuda_driver_version = "12.8"
    node_a.save()
    node_2 = factories.NodeFactory(site=site, hostname="oslo-n-02", status="stale", driver_version="550.54.15",
                                   cuda_driver_version="12.4", last_seen_at=now - dt.timedelta(hours=2))
    gpus = [world.gpu_a]
    world.gpu_a.last_seen_at = now
    world.gpu_a.save()
    for i in range(1, 4):
        gpus.append(factories.GpuFactory(node=node_a, index=i, last_seen_at=now))
    for i in range(4):
        status = "lost" if i == 3 else "ok"
        gpus.append(factories.GpuFactory(node=node_2, index=i, status=status, last_seen_at=now - dt.timedelta(hours=2)))
    endpoint = world.endpoint_a
    endpoint.health, endpoint.engine_version = "healthy", "0.8.5.post1"
    endpoint.save()
    sick = factories.ServingEndpointFactory(site=site, name="sglang-oslo", engine="sglang", engine_version="0.4.3",
                                            health="unhealthy", last_error="connect timeout after 5.0 s")
    return {"site": site, "plan": plan, "gpus": gpus, "node_2": node_2, "sick_endpoint": sick}


HOSTILE_LABELS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


@pytest.fixture
def seeded_telemetry(seeded) -> dict:
    """`seeded` plus telemetry: live raw readings of node A's GPUs, 24 h of per-site 1-minute and per-GPU hourly
    rollups, and metered usage on the healthy endpoint under two engine labels that are hostile HTML."""
    import datetime as dt

    from django.utils import timezone

    from tests.telemetry import dash_support as seed

    now = timezone.now()
    site = seeded["site"]
    online = [g for g in seeded["gpus"] if g.node_id == seeded["gpus"][0].node_id]
    for i, gpu in enumerate(online):
        seed.sample(gpu=gpu, ts=now - dt.timedelta(seconds=5), util_pct=60 + i, power_w=400.0, temperature_c=50 + i,
                    memory_used_bytes=30 * 2**30, sm_clock_mhz=1755, throttle_reasons=0,
                    energy_mj=None, unsupported={"energy_mj": "NVMLError_NotSupported"})
    day_start = (now - dt.timedelta(hours=24)).replace(second=0, microsecond=0)
    seed.minute_rollups(site=site, start=day_start, minutes=24 * 60 - 2, util=55.0, power_w=1600.0, gpus=4)
    hour_start = day_start.replace(minute=0)
    for i, gpu in enumerate(online):
        seed.gpu_rollups(gpu=gpu, start=hour_start, count=24, util=20.0 * (i + 1))
        seed.gpu_rollups(gpu=gpu, start=day_start, count=24 * 60 - 2, util=20.0 * (i + 1), model=seed.GpuRollup1m,
                         step=dt.timedelta(minutes=1))
    endpoint = seeded["site"].endpoints.get(health="healthy")
    for k, label in enumerate(HOSTILE_LABELS):
        for m in range(1, 30):
            seed.usage(endpoint=endpoint, model=label, labels={"tenant_id": label}, end=now - dt.timedelta(minutes=m),
                       seconds=60, prompt=600 * (k + 1), generation=1200, ttft=(0.9, 3), itl=(0.5, 20), rollup=True)
    return {**seeded, "online_gpus": online, "endpoint": endpoint}
