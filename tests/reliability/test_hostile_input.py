"""Hostile input: stored XSS through tenant signup and through a scraped engine page, opened in real Chromium;
secrets (endpoint bearer tokens, tenant API keys, node tokens) never rendered back, logged or stored in clear.

SSRF is covered in tests/telemetry/test_fetch.py (metadata refused before connecting, redirects refused) and by
test_redirect_to_another_host_is_refused_and_not_followed below, over real HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import time_machine
from django.db import connection

from sites.models import ServingEndpoint
from telemetry.collectors.fetch import FetchPolicy, FetchTarget, fetch_many
from telemetry.models.metering import EngineSeries
from telemetry.tasks.metering import endpoints_scrape_task
from tenants.models import Tenant
from tests import factories
from tests.reliability.engines import EngineFleet
from tests.telemetry.metering_server import EngineServer

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
T0 = dt.datetime(2026, 3, 2, 9, 0, 0, tzinfo=dt.UTC)


def _prom_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _injected(bp) -> dict:
    """What the payloads would have created, had they been parsed as markup."""
    return bp.page.evaluate("""() => ({
        imgs: document.querySelectorAll('img[src="x"], img[onerror]').length,
        scripts: [...document.scripts].filter(s => s.textContent.includes('alert(1)')).length,
        handlers: document.querySelectorAll('[onerror]').length,
    })""")


def _scrape_in_thread(ids: list[int], at: dt.datetime) -> None:
    """Playwright's sync API keeps an asyncio loop on the test's thread; the scraper runs its own elsewhere."""

    def scrape() -> None:
        try:
            with time_machine.travel(at, tick=False):
                endpoints_scrape_task.run(endpoint_ids=ids)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(scrape).result()


@pytest.mark.browser
def test_payloads_from_signup_and_scraped_labels_render_as_text(page_for, world, settings) -> None:
    # given: two organizations sign up in the browser with the payloads as their names
    for i, (org, name) in enumerate(((SCRIPT, IMG), (IMG, SCRIPT))):
        bp = page_for(None)
        bp.goto("/signup/partner-a/")
        bp.page.fill("#id_org_name", org)
        bp.page.fill("#id_full_name", name)
        bp.page.fill("#id_email", f"x{i}@hostile.example.test")
        bp.page.fill("#id_password1", "correct-horse-battery-9")
        bp.page.fill("#id_password2", "correct-horse-battery-9")
        bp.page.click("form button[type=submit]")
        bp.page.wait_for_url("**/tenant/")
    tenants = {t.name: t for t in Tenant.objects.filter(name__in=[SCRIPT, IMG])}
    assert set(tenants) == {SCRIPT, IMG}
    # and a scraped engine whose model_name and custom label carry them, and one whose garbled page quotes them
    with EngineFleet() as fleet:
        engine = fleet.add("labels", model=SCRIPT, extra_labels=f',tenant_id="{_prom_escape(IMG)}"')
        fleet.add("garbled", mode="page", page=f'vllm:prompt_tokens_total{{model_name="{SCRIPT}"}} {IMG}\n')
        labelled = factories.ServingEndpointFactory(site=world.site_a, name=IMG, engine="sglang",
                                                    metrics_url=fleet.url("labels"))
        labelled.engine = "vllm"
        labelled.save()
        garbled = factories.ServingEndpointFactory(site=world.site_a, metrics_url=fleet.url("garbled"))
        for i in range(2):
            engine.work(10, 20)
            _scrape_in_thread([labelled.pk, garbled.pk], T0 + dt.timedelta(seconds=15 * i))
    series = EngineSeries.objects.get(endpoint=labelled)
    assert series.model == SCRIPT and series.labels == {"tenant_id": IMG}
    garbled.refresh_from_db()
    assert "alert(1)" in garbled.last_error  # the parser quotes the bad line: it reaches the site page

    # when: the partner's staff open every page that shows them
    bp = page_for("operator")
    dialogs: list[str] = []
    bp.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pages = ["/", f"/sites/{world.site_a.slug}/", "/partner/tenants/", "/partner/audit/",
             "/partner/attribution-rules/"] + [f"/partner/tenants/{t.slug}/" for t in tenants.values()]
    shown: dict[str, list[str]] = {}
    for path in pages:
        bp.goto(path)
        bp.page.wait_for_load_state("networkidle")
        bp.page.wait_for_timeout(300)  # let live.js fetch and draw once
        # then: no dialog, no injected element; the payloads are visible as text where the page shows them
        assert dialogs == [], (path, dialogs)
        assert _injected(bp) == {"imgs": 0, "scripts": 0, "handlers": 0}, path
        text = bp.page.inner_text("body")
        shown[path] = [p for p in (SCRIPT, IMG) if p in text]
    assert shown["/partner/tenants/"] == [SCRIPT, IMG]
    for t in tenants.values():
        assert t.name in shown[f"/partner/tenants/{t.slug}/"]
    assert IMG in shown[f"/sites/{world.site_a.slug}/"]  # the endpoint's name and the engine's quoted line
    bp.assert_clean()


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured_logs():
    """Every record of every logger at DEBUG while the test runs (independent of pytest's logging plugin)."""
    handler, root = _Capture(), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("httpx", "httpcore", "django", "django.request", "telemetry")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(previous)
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def test_secrets_are_never_logged_rendered_or_stored_in_clear(world, client_for, captured_logs) -> None:
    # given: an endpoint with a bearer token (one engine accepts it, one answers 401), a tenant API key,
    # a node agent token
    bearer = "sk-live-bearer-0123456789abcdef"
    with EngineServer() as server:
        from tests.telemetry.metering_server import vllm_page

        server.set("/ok", vllm_page(engines={"0": (1, 1)}))
        server.set("/denied", "unauthorized: token sk-live-bearer-0123456789abcdef rejected", status=401)
        good = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/ok"))
        bad = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/denied"))
        for endpoint in (good, bad):
            endpoint.bearer_token = bearer
            endpoint.save()
        # when: a scrape sends it
        with time_machine.travel(T0, tick=False):
            endpoints_scrape_task.run(endpoint_ids=[good.pk, bad.pk])
        sent = [h.get("Authorization") for _, h in server.requests]
    api_key = world.api_key_raw_a
    api = client_for(None)
    usage = api.get("/api/v1/usage/", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    wrong = api.get("/api/v1/usage/", HTTP_AUTHORIZATION=f"Bearer {api_key}x")
    from sites.services import node_issue_agent_token

    node_token = node_issue_agent_token(node=world.node_a)
    push = api.post("/api/v1/ingest/gpu-readings/", data="{}", content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {node_token}")
    operator = client_for("operator")
    html = "".join(operator.get(p).content.decode() for p in (
        f"/sites/{world.site_a.slug}/", f"/sites/{world.site_a.slug}/endpoints/{good.pk}/edit/"))
    api_json = client_for(None)
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=world.users["operator"])
    endpoint_json = api_json.get(f"/api/v1/endpoints/{good.pk}/", HTTP_AUTHORIZATION=f"Token {token.key}")

    # then: the token went to the engine, and nowhere else (though httpx/httpcore logged at DEBUG)
    assert len(captured_logs) > 10
    assert sent == [f"Bearer {bearer}"] * 2
    assert usage.status_code == 200 and wrong.status_code == 401 and push.status_code == 400
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in captured_logs)
    for secret in (bearer, api_key, node_token):
        assert secret not in logged
        assert secret not in html
        assert secret not in endpoint_json.content.decode()
    bad.refresh_from_db()
    assert bearer not in bad.last_error and bad.last_error == "HTTP 401 from the engine"
    with connection.cursor() as c:
        c.execute("SELECT bearer_token_encrypted FROM sites_servingendpoint WHERE id = %s", [good.pk])
        stored = c.fetchone()[0]
        c.execute("SELECT count(*) FROM tenants_apikey WHERE key_hash = %s OR prefix = %s", [api_key, api_key])
        raw_keys = c.fetchone()[0]
        c.execute("SELECT agent_token_hash FROM sites_node WHERE id = %s", [world.node_a.pk])
        node_hash = c.fetchone()[0]
    assert stored and bearer not in stored and raw_keys == 0 and node_hash and node_token not in node_hash
    assert ServingEndpoint.objects.get(pk=good.pk).bearer_token == bearer  # decrypts for the scraper only


def test_redirect_to_another_host_is_refused_and_not_followed() -> None:
    # given: an engine that redirects to another host (a metadata address) and to itself under another name
    policy = FetchPolicy(timeout_s=2, max_bytes=1_000_000, allow_private=True, allow_loopback=True)
    with EngineServer() as server:
        server.set("/meta", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        server.set("/other", status=301, headers={"Location": "http://example.com/metrics"})
        server.set("/same", status=307, headers={"Location": server.url("/ok")})
        targets = [FetchTarget(key=p, url=server.url(p)) for p in ("/meta", "/other", "/same")]
        # when
        with ThreadPoolExecutor(max_workers=1) as pool:  # the module's browser keeps a loop on this thread
            results = pool.submit(asyncio.run, fetch_many(targets, policy)).result()
        # then: none is followed, not even to the same host (the rule is simply: no redirects)
        assert [r.error for r in results] == [f"HTTP {s}: redirects are not followed" for s in (302, 301, 307)]
        # (fetched concurrently: each path once, in any order, and nothing else — no /ok, no other host)
        assert sorted(p for p, _ in server.requests) == ["/meta", "/other", "/same"]
