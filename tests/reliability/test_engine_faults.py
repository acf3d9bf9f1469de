"""Engines that misbehave, over real HTTP on 127.0.0.1: totals against the truth, limits, memory.

The truth is what each scripted engine really served after the portal's first (baseline) scrape. Figures the
tests measure are printed as `RELIABILITY <name> <json>` lines (run with `-s` to see them) and are recorded
in docs/reliability.md.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import time_machine
from django.db.models import Sum

from sites.choices import EndpointHealth
from telemetry.models.metering import UsageDelta
from telemetry.tasks.metering import endpoints_scrape_task
from tests import factories
from tests.reliability.engines import EngineFleet

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 3, 2, 9, 0, 0, tzinfo=dt.UTC)
TIMEOUT_S = 0.5


def report(name: str, figures: dict) -> None:
    print(f"RELIABILITY {name} {json.dumps(figures, sort_keys=True)}")


def poll(ids: list[int], at: dt.datetime, times: int = 2) -> float:
    """One poll of the batch at a frozen instant, run `times` times (a retried task must change nothing).
    Returns the wall time of the first run."""
    with time_machine.travel(at, tick=False):
        started = time.monotonic()
        endpoints_scrape_task.run(endpoint_ids=ids)
        elapsed = time.monotonic() - started
        for _ in range(times - 1):
            endpoints_scrape_task.run(endpoint_ids=ids)
    return elapsed


def totals(endpoint) -> tuple[int, int]:
    t = UsageDelta.objects.filter(endpoint=endpoint).aggregate(p=Sum("prompt_tokens"), g=Sum("generation_tokens"))
    return t["p"] or 0, t["g"] or 0


@pytest.fixture
def fleet():
    with EngineFleet(slow_s=3 * TIMEOUT_S) as f:
        yield f


def test_faulty_engines_lose_no_tokens_and_keep_limits_and_memory_bounded(world, fleet, settings) -> None:
    # given: one batch mixing good, restarting, flaky and always-broken engines
    settings.SCRAPE_TIMEOUT_S = TIMEOUT_S
    settings.SCRAPE_MAX_BYTES = 20 * 1024 * 1024  # the production default: a 50 MB page must be cut at 20 MB
    names = ["steady", "restarting", "flaky", "always500", "slow", "cut", "huge", "endless", "trickle"]
    engines = {n: fleet.add(n, prompt=10_000, generation=40_000) for n in names}
    for n in ("always500", "slow", "cut", "huge", "endless", "trickle"):
        engines[n].mode = {"always500": "500"}.get(n, n)
    endpoints = {n: factories.ServingEndpointFactory(site=world.site_a, name=n, metrics_url=fleet.url(n))
                 for n in names}
    ids = [e.pk for e in endpoints.values()]
    flaky_modes = ["ok", "500", "slow", "cut", "ok", "trickle", "500", "ok", "cut", "ok"]
    unobservable = 0  # tokens served between the last poll and a restart: no counter shows them any more
    round_s: list[float] = []

    # when: ten polls 15 s apart; the engines serve tokens between polls
    for i, mode in enumerate(flaky_modes):
        engines["flaky"].mode = mode
        round_s.append(poll(ids, T0 + dt.timedelta(seconds=15 * i)))
        restarting = engines["restarting"]
        if i % 3 == 2:
            # A restart right after a poll: nothing it served is lost...
            restarting.restart()
        if i == 7:
            # ...but tokens served after a poll and before a restart are gone with the old process.
            restarting.work(5, 7, billable=False)
            unobservable += 12
            restarting.restart()
        for engine in engines.values():
            engine.work(101 + i, 307 + 3 * i)
    engines["flaky"].mode = "ok"
    round_s.append(poll(ids, T0 + dt.timedelta(seconds=15 * len(flaky_modes))))

    # then: every token served after the baseline is counted once by the engines that answer
    figures = {}
    for n in ("steady", "restarting", "flaky"):
        engine = engines[n]
        # the baseline poll happened before any work: all of it after the first poll is billable
        counted = totals(endpoints[n])
        figures[n] = {"counted": counted, "truth": (engine.truth_prompt, engine.truth_generation),
                      "restarts": engine.restarts}
        assert counted == (engine.truth_prompt, engine.truth_generation), n
        endpoints[n].refresh_from_db()
        assert endpoints[n].health == EndpointHealth.HEALTHY
    resets = UsageDelta.objects.filter(endpoint=endpoints["restarting"], reset=True).count()
    assert resets == engines["restarting"].restarts
    # and the broken ones are unhealthy with the reason, having stored nothing
    # (a 50 MB or endless page hits the 20 MiB limit first on an idle machine, the deadline first on a busy one)
    oversize = ("larger than 20971520 bytes", "timed out")
    reasons = {"always500": ("HTTP 500",), "slow": ("timed out",), "cut": ("closed the connection", "timed out"),
               "huge": oversize, "endless": oversize, "trickle": ("timed out",)}
    for n, accepted in reasons.items():
        endpoints[n].refresh_from_db()
        assert endpoints[n].health == EndpointHealth.UNHEALTHY, n
        assert any(r in endpoints[n].last_error for r in accepted), (n, endpoints[n].last_error)
        assert totals(endpoints[n]) == (0, 0)
    # and the time limit held: a batch with slow, trickling and endless engines takes about one timeout
    figures.update({"round_s_max": round(max(round_s), 2),
                    "round_s_median": round(sorted(round_s)[len(round_s) // 2], 2),
                    "timeout_s": TIMEOUT_S, "unobservable_restart_tokens": unobservable, "polls": len(round_s)})
    report("engine_faults", figures)
    assert max(round_s) < TIMEOUT_S + 2.0


@pytest.fixture
def oversize_server():
    """/huge/ and /endless/ served by a separate process, so this process's RSS is the fetcher's alone."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.engines"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


@pytest.mark.parametrize("concurrent", [1, 4])
def test_oversized_pages_cost_about_the_page_limit_each_in_memory(oversize_server, concurrent) -> None:
    # given: `concurrent` endpoints serving a 50 MB page or an endless stream, a 20 MiB page limit, and a
    # fresh process fetching them (a warmed-up process reuses freed memory and would hide the growth)
    limit = 20 * 1024 * 1024
    # when
    out = subprocess.run([sys.executable, "-m", "tests.reliability.rss_fetch", str(oversize_server), str(concurrent),
                          str(limit)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    # then: every one is refused at the limit, and the peak grows by about one limit per oversized page
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    report(f"oversize_x{concurrent}", {**figures, "limit_mib": 20})
    assert figures["errors"] == [f"page larger than {limit} bytes"]
    assert 0 < figures["peak_rss_growth_mib"] < concurrent * 20 * 1.5 + 16
    assert figures["elapsed_s"] < 5


def _page(series: list[tuple[str, str, str]], start: float = 1.7e9) -> str:
    """A vLLM page from (metric, labels, value) lines."""
    lines = ["# TYPE process_start_time_seconds gauge", f"process_start_time_seconds {start}",
             "# TYPE vllm:prompt_tokens_total counter", "# TYPE vllm:generation_tokens_total counter"]
    lines += [f"vllm:{m}_tokens_total{{{labels}}} {v}" for m, labels, v in series]
    return "\n".join(lines) + "\n"


M = 'engine="0",model_name="m"'


def _run_pages(world, fleet, pages: list[str]) -> tuple:
    engine = fleet.add("jitter", mode="page")
    endpoint = factories.ServingEndpointFactory(site=world.site_a, metrics_url=fleet.url("jitter"))
    for i, page in enumerate(pages):
        engine.page = page
        poll([endpoint.pk], T0 + dt.timedelta(seconds=15 * i), times=1)
    endpoint.refresh_from_db()
    resets = UsageDelta.objects.filter(endpoint=endpoint, reset=True).count()
    return endpoint, totals(endpoint), resets


def test_nan_and_inf_readings_are_unknown_not_resets(world, fleet) -> None:
    # given: 1000 → NaN → +Inf → 1300 prompt tokens; generation 500 → 600 → 700 → 800 (truth: +300, +300)
    pages = [
        _page([("prompt", M, "1000"), ("generation", M, "500")]),
        _page([("prompt", M, "NaN"), ("generation", M, "600")]),
        _page([("prompt", M, "+Inf"), ("generation", M, "700")]),
        _page([("prompt", M, "1300"), ("generation", M, "800")]),
    ]
    # when
    endpoint, counted, resets = _run_pages(world, fleet, pages)
    # then
    report("nan_inf", {"counted": counted, "truth": [300, 300], "resets": resets})
    assert endpoint.health == EndpointHealth.HEALTHY
    assert counted == (300, 300) and resets == 0


def test_counter_back_by_one_is_jitter_within_the_same_process(world, fleet) -> None:
    # given: the engine's counter goes 1000 → 999 (jitter, same process start time), then on to 1010
    pages = [
        _page([("prompt", M, "1000"), ("generation", M, "5000")]),
        _page([("prompt", M, "999"), ("generation", M, "5010")]),
        _page([("prompt", M, "1010"), ("generation", M, "5020")]),
    ]
    # when
    endpoint, counted, resets = _run_pages(world, fleet, pages)
    # then: docs/metering.md — a small dip within the same known process counts nothing and the high-water mark
    # is kept, so exactly the real increments are counted: +10 prompt, +20 generation.
    report("back_by_one", {"counted": counted, "truth": [10, 20], "resets": resets,
                           "overcount": [counted[0] - 10, counted[1] - 20]})
    assert resets == 0
    assert counted == (10, 20)


def test_a_duplicated_series_line_does_not_change_the_totals(world, fleet) -> None:
    # given: 1000 → 1100 printed twice → 1200 (truth +200 prompt, +20 generation)
    pages = [
        _page([("prompt", M, "1000"), ("generation", M, "100")]),
        _page([("prompt", M, "1100"), ("prompt", M, "1100"), ("generation", M, "110")]),
        _page([("prompt", M, "1200"), ("generation", M, "120")]),
    ]
    # when
    endpoint, counted, resets = _run_pages(world, fleet, pages)
    # then: either the duplicate page is refused (endpoint unhealthy for that poll) or one sample is kept
    report("duplicate_series", {"counted": counted, "truth": [200, 20], "resets": resets})
    assert counted == (200, 20) and resets == 0
