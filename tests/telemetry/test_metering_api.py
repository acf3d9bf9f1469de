"""`GET /api/v1/usage/`, `scrape_engine` and `poll_endpoints` over real loopback HTTP."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse

from telemetry.models.metering import UsageRollup
from telemetry.tasks.metering import usage_rollup_task
from tests.telemetry.metering_server import EngineServer, vllm_page

ROOT = Path(__file__).resolve().parents[2]
SGLANG = ROOT.parent / "shared" / "fixtures" / "engines" / "sglang-0.4-docs-llama-3.1-8b-metrics.prom"
T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def server():
    with EngineServer() as s:
        yield s


@pytest.fixture
def usage(world, server):
    """Two polls of endpoint_a (two vLLM engines: 12/30 + 3/1 tokens) and endpoint_b (5/6 tokens), rolled up."""
    world.endpoint_a.metrics_url = server.url("/a")
    world.endpoint_a.save()
    world.endpoint_b.metrics_url = server.url("/b")
    world.endpoint_b.save()
    for minute, (a, a1, b) in enumerate([((100, 100), (50, 60), (1, 1)), ((112, 130), (53, 61), (6, 7))]):
        server.set("/a", vllm_page(engines={"0": a, "1": a1}, model="llama"))
        server.set("/b", vllm_page(engines={"0": b}, model="qwen"))
        with time_machine.travel(T0 + dt.timedelta(minutes=minute), tick=False):
            call_command("poll_endpoints", "--once", stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        usage_rollup_task.run()
    return world


def test_usage_api_rows_are_scoped_and_exact(usage, api_client_for) -> None:
    # given
    url = reverse("usage-list")
    # when
    mine = api_client_for("viewer").get(url, {"bucket": "hour"}).json()
    theirs = api_client_for("outsider").get(url, {"bucket": "day"}).json()
    # then
    # (endpoint_a's two engines are two raw series, summed into one row per model)
    assert [(r["model"], r["prompt_tokens"], r["generation_tokens"]) for r in mine["results"]] == [("llama", 15, 31)]
    assert mine["results"][0]["bucket_start"] == "2026-03-02T10:00:00Z"
    assert mine["results"][0]["endpoint"] == usage.endpoint_a.pk
    assert [(r["model"], r["prompt_tokens"], r["generation_tokens"]) for r in theirs["results"]] == [("qwen", 5, 6)]
    assert "llama" not in json.dumps(theirs)


def test_usage_api_filters(usage, api_client_for) -> None:
    # given
    client = api_client_for("operator")
    url = reverse("usage-list")
    # when
    by_model = client.get(url, {"model": "nope"}).json()
    by_site = client.get(url, {"site": usage.site_a.slug, "start": "2026-03-02T10:00:00Z",
                               "end": "2026-03-02T11:00:00Z"}).json()
    other_endpoint = client.get(url, {"endpoint": usage.endpoint_b.pk}).json()
    # then
    assert by_model["count"] == 0
    assert by_site["count"] == 1
    assert other_endpoint["count"] == 0


@pytest.mark.parametrize("query, field", [
    ({"bucket": "week"}, "bucket"), ({"start": "yesterday"}, "start"), ({"endpoint": "abc"}, "endpoint"),
    ({"start": "2026-03-02T11:00:00Z", "end": "2026-03-02T10:00:00Z"}, "end"), ({"tenant": "acme"}, "tenant"),
])
def test_usage_api_bad_filters_are_400_with_a_message(world, api_client_for, query: dict, field: str) -> None:
    # given / when
    response = api_client_for("operator").get(reverse("usage-list"), query)
    # then
    assert response.status_code == 400
    assert field in response.json()


def test_poll_endpoints_once_marks_unreachable_endpoints_unhealthy(usage) -> None:
    # given / when (the usage fixture polled twice)
    usage.endpoint_a.refresh_from_db()
    # then
    assert usage.endpoint_a.health == "healthy" and usage.endpoint_a.detected_engine == "vllm"
    assert sorted(UsageRollup.objects.filter(endpoint=usage.endpoint_a, bucket="day")
                  .values_list("prompt_tokens", flat=True)) == [3, 12]


@pytest.mark.skipif(not SGLANG.exists(), reason="../shared/fixtures is not present")
def test_scrape_engine_json_prints_the_normalized_series(server, capsys) -> None:
    # given
    server.set("/metrics", SGLANG.read_text())
    # when
    call_command("scrape_engine", server.url("/metrics"), "--json")
    # then
    data = json.loads(capsys.readouterr().out)
    assert data["engine"] == "sglang"
    [series] = data["series"]
    assert series["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert (series["prompt_tokens"], series["generation_tokens"]) == (8128902, 7557572)
    assert series["requests_ok"] is None and series["requests_failed"] is None and series["labels"] == {}


def test_scrape_engine_json_sums_over_the_engine_label(server, capsys) -> None:
    # given a vLLM page with two data-parallel engines
    server.set("/v", vllm_page(engines={"0": (10, 20), "1": (5, 7)}, model="m",
                               reasons={"stop": 3, "length": 1}))
    # when
    call_command("scrape_engine", server.url("/v"), "--json")
    # then: one series per model, as the issue specifies; no split labels in the output
    [series] = json.loads(capsys.readouterr().out)["series"]
    assert (series["model"], series["prompt_tokens"], series["generation_tokens"]) == ("m", 15, 27)
    assert (series["running"], series["kv_cache_usage"], series["requests_ok"]) == (6, 0.25, 4)
    assert "split_labels" not in series and series["labels"] == {}


def test_scrape_engine_unreachable_exits_non_zero_with_one_line(server) -> None:
    # given a real manage.py process
    server.set("/html", "<html>nope</html>")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "factory_portal.settings_test"}
    # when
    down = subprocess.run([sys.executable, "manage.py", "scrape_engine", "http://127.0.0.1:9/metrics", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    garbage = subprocess.run([sys.executable, "manage.py", "scrape_engine", server.url("/html")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    # then
    for proc in (down, garbage):
        assert proc.returncode != 0
        assert proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "connection refused" in down.stderr
    assert "no metrics of a known serving engine" in garbage.stderr
