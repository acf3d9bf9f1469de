"""End to end over real HTTP on loopback: pages served in sequence → snapshots → deltas → rollups.

Totals are checked against the sum of the increments the fake engines really made after the baseline.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db.models import Sum

from sites.choices import EndpointHealth
from telemetry.models.metering import CounterSnapshot, EngineSeries, UsageBucket, UsageDelta, UsageRollup
from telemetry.tasks.metering import endpoints_scrape_schedule_task, endpoints_scrape_task, usage_rollup_task
from tests import factories
from tests.telemetry.metering_server import EngineServer, vllm_page

T0 = dt.datetime(2026, 3, 2, 9, 58, 0, tzinfo=dt.UTC)


@pytest.fixture
def server():
    with EngineServer() as s:
        yield s


def poll(endpoint_ids: list[int], at: dt.datetime, times: int = 2) -> list[dict]:
    """Run the batch task `times` times at a frozen instant (a retried poll must change nothing)."""
    with time_machine.travel(at, tick=False):
        return [endpoints_scrape_task.run(endpoint_ids=endpoint_ids) for _ in range(times)]


def totals(endpoint) -> dict:
    return UsageDelta.objects.filter(endpoint=endpoint).aggregate(
        p=Sum("prompt_tokens"), g=Sum("generation_tokens"), ok=Sum("requests_ok"))


def test_vllm_two_engines_restart_missed_polls_and_retries_count_every_token_once(world, server):
    # given one vLLM endpoint with two data-parallel engines (summed over the `engine` label)
    endpoint = factories.ServingEndpointFactory(site=world.site_a, engine="auto", metrics_url=server.url("/v/metrics"))
    state = {"0": [1000, 5000], "1": [700, 2100]}
    truth = {"p": 0, "g": 0}

    def serve(start_time: float = 1.7e9) -> None:
        server.set("/v/metrics", vllm_page(engines={k: tuple(v) for k, v in state.items()}, start_time=start_time))

    def work(engine: str, p: int, g: int) -> None:
        state[engine][0] += p
        state[engine][1] += g
        truth["p"] += p
        truth["g"] += g

    serve()
    # when: the first poll is a baseline (tokens served before registration are not billed)
    poll([endpoint.pk], T0)
    work("0", 10, 40)
    work("1", 5, 9)
    serve()
    poll([endpoint.pk], T0 + dt.timedelta(seconds=15))
    work("0", 3, 1)  # this poll is missed: the next one must still see these tokens
    serve()
    work("1", 4, 4)
    serve()
    poll([endpoint.pk], T0 + dt.timedelta(seconds=45))
    # the engine restarts mid-window: new process start time, counters start again from zero
    state = {"0": [0, 0], "1": [0, 0]}
    work("0", 6, 11)
    work("1", 2, 2)
    serve(start_time=1.7e9 + 50)
    poll([endpoint.pk], T0 + dt.timedelta(seconds=60))
    work("0", 1, 1)
    serve(start_time=1.7e9 + 50)
    poll([endpoint.pk], T0 + dt.timedelta(seconds=75), times=3)

    # then
    endpoint.refresh_from_db()
    assert endpoint.health == EndpointHealth.HEALTHY and endpoint.detected_engine == "vllm"
    assert totals(endpoint)["p"] == truth["p"] == 31
    assert totals(endpoint)["g"] == truth["g"] == 68
    # one raw series per engine, five snapshots each; the process restart resets both engines
    assert [s.split_labels for s in EngineSeries.objects.filter(endpoint=endpoint).order_by("key")] in (
        [{"engine": "0"}, {"engine": "1"}], [{"engine": "1"}, {"engine": "0"}])
    assert CounterSnapshot.objects.filter(series__endpoint=endpoint).count() == 10
    assert list(UsageDelta.objects.filter(endpoint=endpoint, series__split_labels__engine="0")
                .values_list("reset", flat=True)) == [False, False, True, False]


def test_one_of_two_vllm_engines_restarting_never_counts_the_other_engine_again(world, server):
    # given one vLLM endpoint with two data-parallel engines that have served a lot before registration
    endpoint = factories.ServingEndpointFactory(site=world.site_a, engine="auto", metrics_url=server.url("/e/metrics"))
    state = {"0": [90_000, 400_000], "1": [70_000, 300_000]}
    truth = {"p": 0, "g": 0}

    def work(engine: str, p: int, g: int) -> None:
        state[engine][0] += p
        state[engine][1] += g
        truth["p"] += p
        truth["g"] += g
        server.set("/e/metrics", vllm_page(engines={k: tuple(v) for k, v in state.items()}))

    work("0", 0, 0)
    poll([endpoint.pk], T0)
    work("0", 10, 40)
    work("1", 5, 9)
    poll([endpoint.pk], T0 + dt.timedelta(seconds=15))
    # when engine 1 alone restarts (same API-server process start time) and both keep serving
    state["1"] = [0, 0]
    work("1", 4, 6)
    work("0", 2, 3)
    poll([endpoint.pk], T0 + dt.timedelta(seconds=30), times=3)
    work("1", 1, 1)
    work("0", 7, 7)
    poll([endpoint.pk], T0 + dt.timedelta(seconds=45))
    with time_machine.travel(T0 + dt.timedelta(minutes=5), tick=False):
        usage_rollup_task.run()
        usage_rollup_task.run()

    # then: exactly the real increments; only engine 1's delta is a reset
    assert totals(endpoint)["p"] == truth["p"] == 29
    assert totals(endpoint)["g"] == truth["g"] == 66
    resets = UsageDelta.objects.filter(endpoint=endpoint, reset=True)
    assert [d.series.split_labels for d in resets] == [{"engine": "1"}]
    # and reports sum over `engine`: one hourly row per model with the same totals
    hourly = UsageRollup.objects.filter(endpoint=endpoint, bucket=UsageBucket.HOUR)
    assert hourly.aggregate(p=Sum("prompt_tokens"), g=Sum("generation_tokens")) == {"p": 29, "g": 66}


def test_counter_going_back_by_one_in_the_same_process_is_jitter_not_a_reset(world, server):
    # given a counter that goes 1000 → 999 → 1005 with the same process start time
    endpoint = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/j/metrics"))
    server.set("/j/metrics", vllm_page(engines={"0": (1000, 1000)}))
    poll([endpoint.pk], T0, times=1)
    server.set("/j/metrics", vllm_page(engines={"0": (999, 1010)}))
    # when
    poll([endpoint.pk], T0 + dt.timedelta(seconds=15), times=1)
    server.set("/j/metrics", vllm_page(engines={"0": (1005, 1020)}))
    poll([endpoint.pk], T0 + dt.timedelta(seconds=30), times=1)
    # then: the dip counts nothing and the climb back is counted from the high-water mark (docs/metering.md)
    deltas = list(UsageDelta.objects.filter(endpoint=endpoint).order_by("interval_end")
                  .values_list("reset", "prompt_tokens", "generation_tokens"))
    assert deltas == [(False, 0, 10), (False, 5, 10)]


def test_counter_going_back_without_a_process_start_time_is_a_reset(world, server):
    # given an engine that prints no process start time (llama.cpp)
    endpoint = factories.ServingEndpointFactory(site=world.site_a, engine="llamacpp",
                                                metrics_url=server.url("/l/metrics"))
    page = "llamacpp:prompt_tokens_total {}\nllamacpp:tokens_predicted_total {}\n"
    server.set("/l/metrics", page.format(1000, 4000))
    poll([endpoint.pk], T0, times=1)
    server.set("/l/metrics", page.format(30, 70))
    # when
    poll([endpoint.pk], T0 + dt.timedelta(seconds=15), times=1)
    # then: the new values are the delta
    delta = UsageDelta.objects.get(endpoint=endpoint)
    assert (delta.reset, delta.prompt_tokens, delta.generation_tokens) == (True, 30, 70)


def test_triton_two_models_and_failing_endpoints_in_one_batch(world, server, settings):
    # given a Triton endpoint with two models, one endpoint answering 500, one slower than the timeout
    settings.SCRAPE_TIMEOUT_S = 0.5
    triton = factories.ServingEndpointFactory(site=world.site_a, engine="triton", metrics_url=server.url("/t"))
    broken = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/500"))
    slow = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/slow"))
    garbage = factories.ServingEndpointFactory(site=world.site_a, engine="auto", metrics_url=server.url("/html"))
    down = factories.ServingEndpointFactory(site=world.site_a, metrics_url="http://127.0.0.1:9/metrics")

    def triton_page(a: tuple[int, int], b: tuple[int, int]) -> str:
        lines = ["# TYPE nv_llm_input_token_len histogram", "# TYPE nv_llm_output_token_len histogram"]
        for model, (p, g) in (("llama", a), ("mistral", b)):
            lines += [f'nv_llm_input_token_len_sum{{model="{model}",version="1"}} {p}',
                      f'nv_llm_input_token_len_count{{model="{model}",version="1"}} 4',
                      f'nv_llm_output_token_len_sum{{model="{model}",version="1"}} {g}',
                      f'nv_inference_request_success{{model="{model}",version="1"}} 4']
        return "\n".join(lines) + "\n"

    server.set("/t", triton_page((100, 200), (10, 20)))
    server.set("/500", "boom", status=500)
    server.set("/slow", vllm_page(engines={"0": (1, 1)}), delay_s=2)
    server.set("/html", "<html><body>login</body></html>")
    ids = [triton.pk, broken.pk, slow.pk, garbage.pk, down.pk]
    poll(ids, T0, times=1)
    server.set("/t", triton_page((150, 260), (11, 29)))
    # when
    poll(ids, T0 + dt.timedelta(seconds=15), times=1)
    # then: the Triton models are two series with exact deltas; the others are unhealthy with the reason
    rows = dict(UsageDelta.objects.filter(endpoint=triton).values_list("series__model", "generation_tokens"))
    assert rows == {"llama": 60, "mistral": 9}
    assert [s.labels for s in EngineSeries.objects.filter(endpoint=triton)] == [{"version": "1"}] * 2
    for endpoint, reason in ((broken, "HTTP 500"), (slow, "timed out"), (garbage, "no metrics of a known"),
                             (down, "connection refused")):
        endpoint.refresh_from_db()
        assert endpoint.health == EndpointHealth.UNHEALTHY
        assert reason in endpoint.last_error
    triton.refresh_from_db()
    assert triton.health == EndpointHealth.HEALTHY and triton.last_error == ""


def test_nan_and_escaped_labels_keep_totals_exact(world, server):
    # given an SGLang page with a custom tenant label holding escapes, and a NaN counter in the middle poll
    endpoint = factories.ServingEndpointFactory(site=world.site_a, engine="sglang", metrics_url=server.url("/s"))
    tenant = 'acme \\"blue\\" \\\\ team\\nx'

    def page(prompt: str, generation: int) -> str:
        return (
            "# TYPE sglang:prompt_tokens_total counter\n"
            f'sglang:prompt_tokens_total{{model_name="m",tenant_id="{tenant}"}} {prompt}\n'
            "# TYPE sglang:generation_tokens_total counter\n"
            f'sglang:generation_tokens_total{{model_name="m",tenant_id="{tenant}"}} {generation}\n'
        )

    server.set("/s", page("100", 50))
    poll([endpoint.pk], T0, times=1)
    server.set("/s", page("NaN", 70))
    poll([endpoint.pk], T0 + dt.timedelta(seconds=15), times=1)
    server.set("/s", page("130", 75))
    # when
    poll([endpoint.pk], T0 + dt.timedelta(seconds=30), times=1)
    # then: the NaN reading is unknown (carried), never a reset; the label value is unescaped exactly
    series = EngineSeries.objects.get(endpoint=endpoint)
    assert series.labels == {"tenant_id": 'acme "blue" \\ team\nx'}
    assert totals(endpoint)["p"] == 30 and totals(endpoint)["g"] == 25
    assert not UsageDelta.objects.filter(endpoint=endpoint, reset=True).exists()


def test_rollups_sum_deltas_are_idempotent_and_catch_up(world, server):
    # given deltas spread over two hours and a day boundary-free window
    endpoint = factories.ServingEndpointFactory(site=world.site_a, metrics_url=server.url("/r"))
    p = g = 0
    for minute in range(0, 150, 15):
        server.set("/r", vllm_page(engines={"0": (p, g)}))
        poll([endpoint.pk], T0 + dt.timedelta(minutes=minute), times=1)
        p, g = p + 7, g + 11
    # when: the rollup runs late (catch-up) and twice
    with time_machine.travel(T0 + dt.timedelta(hours=5), tick=False):
        usage_rollup_task.run()
        usage_rollup_task.run()
    # then: hourly and daily rollups both equal the deltas exactly
    delta_total = totals(endpoint)
    hourly = UsageRollup.objects.filter(endpoint=endpoint, bucket=UsageBucket.HOUR)
    daily = UsageRollup.objects.filter(endpoint=endpoint, bucket=UsageBucket.DAY)
    assert hourly.aggregate(s=Sum("prompt_tokens"))["s"] == delta_total["p"] == 63
    assert daily.aggregate(s=Sum("generation_tokens"))["s"] == delta_total["g"] == 99
    assert hourly.count() == 3 and daily.count() == 1


def test_scheduler_fans_out_batches(world, server, settings):
    # given three more endpoints (five with the world's two) and batches of two
    server.set("/f", vllm_page(engines={"0": (5, 5)}))
    eps = [factories.ServingEndpointFactory(site=world.site_b, metrics_url=server.url("/f")) for _ in range(3)]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # when (eager: the batch tasks run in-process)
    from telemetry import metering_services

    with time_machine.travel(T0, tick=False):
        batches = metering_services.endpoints_scrape_schedule(batch_size=2)
        endpoints_scrape_schedule_task.run()
    # then
    assert batches == 3
    for e in eps:
        e.refresh_from_db()
        assert e.health == EndpointHealth.HEALTHY
