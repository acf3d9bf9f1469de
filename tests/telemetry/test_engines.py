"""Engine adapters: every fixture maps to the values printed in it; synthetic pages cover the other engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry.collectors.engines import EngineError, detect_engine, normalize

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "engines"
needs_fixtures = pytest.mark.skipif(not SHARED.exists(), reason="../shared/fixtures is not present")


def fixture(name: str) -> str:
    text = (SHARED / name).read_text()
    # The vLLM docs example keeps the maintainers' `...` elisions; they are not part of the format.
    return "\n".join(line for line in text.split("\n") if line != "...")


# file → (engine, model, expected fields) — values read from the fixture text by hand.
EXPECTED = {
    "llamacpp-server-2025-06-pr13196-comment-excerpt.prom": (
        "llamacpp", None, {"prompt_tokens": 143, "generation_tokens": 673, "requests_ok": None, "running": None}),
    "nim-llm-1.x-llama-3.1-8b-metrics.prom": (
        "nim", "meta/llama-3.1-8b-instruct",
        {"prompt_tokens": 109, "generation_tokens": 174, "requests_ok": 5, "requests_failed": 0,
         "requests_by_reason": {"length": 5}, "running": 1, "waiting": 0, "kv_cache_usage": 0.0002848191398461977,
         "ttft_sum_s": 0.6119842529296875, "ttft_count": 5, "itl_sum_s": 1.856855869293213, "itl_count": 169,
         "process_start_time_s": 1.7303128549e09}),
    "sglang-0.4-docs-llama-3.1-8b-metrics.prom": (
        "sglang", "meta-llama/Llama-3.1-8B-Instruct",
        {"prompt_tokens": 8128902, "generation_tokens": 7557572, "running": 162, "waiting": 2826,
         "kv_cache_usage": 0.28, "ttft_count": 11008, "itl_count": 7400757, "requests_ok": None}),
    "triton-core-readme-nv_inference-metrics.prom": (
        "triton", "tensorrt_llm",
        {"requests_ok": 0, "requests_failed": 0, "waiting": 0, "prompt_tokens": None, "generation_tokens": None}),
    "triton-trtllm-backend-readme-ifb-metrics.prom": (
        "triton", "tensorrt_llm", {"running": 0, "waiting": 1, "kv_cache_usage": 0.4875, "prompt_tokens": None}),
    "triton-trtllm-backend-readme-v1-metrics.prom": (
        "triton", "tensorrt_llm", {"prompt_tokens": None, "generation_tokens": None, "running": None}),
    "vllm-v1-0.8-production-stack-issue318-excerpt.prom": (
        "vllm", "Qwen/Qwen2.5-Coder-32B-Instruct",
        {"running": 0, "waiting": 0, "kv_cache_usage": 0.0, "process_start_time_s": 1.74262400557e09,
         "prompt_tokens": None}),
    "vllm-v1-docs-design-metrics-example-elided.txt": (
        "vllm", "meta-llama/Llama-3.1-8B-Instruct",
        {"generation_tokens": 27453, "requests_by_reason": {"stop": 1, "length": 131, "abort": 0},
         "requests_ok": 132, "requests_failed": 0, "running": 8, "ttft_count": 140, "prompt_tokens": None}),
}


@needs_fixtures
def test_every_engine_fixture_is_covered() -> None:
    # given / when
    files = {p.name for p in SHARED.iterdir() if p.suffix in (".prom", ".txt")}
    # then
    assert files == set(EXPECTED)


@needs_fixtures
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_to_its_printed_values(name: str) -> None:
    # given
    engine, model, fields = EXPECTED[name]
    # when
    scrape = normalize(fixture(name))
    # then
    assert scrape.engine == engine
    assert len(scrape.series) == 1
    series = scrape.series[0]
    assert series.model == model
    for field_name, value in fields.items():
        assert getattr(series, field_name) == value, field_name


def test_vllm_keeps_one_raw_series_per_engine_sums_them_for_reports_and_prefers_new_names() -> None:
    # given two engines, and both the old and the new KV-cache name
    text = "\n".join([
        'vllm:prompt_tokens_total{engine="0",model_name="m"} 10',
        'vllm:prompt_tokens_total{engine="1",model_name="m"} 5',
        'vllm:generation_tokens_total{engine="0",model_name="m"} 7',
        'vllm:generation_tokens_total{engine="1",model_name="m"} 8',
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5',
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.1',
        'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.9',
        'vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 2.5',
        'vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 100',
        'vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 99',
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 3',
        'vllm:request_success_total{engine="1",finished_reason="error",model_name="m"} 1', "",
    ])
    # when
    scrape = normalize(text)
    [series] = scrape.summed().series
    # then: one raw series per engine (deltas are per engine), summed over `engine` only for reports
    assert [(s.split_labels, s.labels, s.prompt_tokens, s.generation_tokens) for s in scrape.series] == [
        ({"engine": "0"}, {}, 10, 7), ({"engine": "1"}, {}, 5, 8)]
    assert [s.kv_cache_usage for s in scrape.series] == [0.5, 0.1]
    assert (series.prompt_tokens, series.generation_tokens) == (15, 15)
    assert series.kv_cache_usage == pytest.approx(0.3)
    assert (series.itl_sum_s, series.itl_count) == (2.5, 100)
    assert (series.requests_ok, series.requests_failed) == (3, 1)
    assert series.labels == {} and series.split_labels == {}
    assert "split_labels" not in series.as_json() and scrape.series[0].as_json()["split_labels"] == {"engine": "0"}


def test_sum_labels_are_summed_before_deltas_split_labels_are_not() -> None:
    # given TGI failures split by `err` (children of one process) and SGLang gauges per `tp_rank`
    tgi = 'tgi_request_failure{err="validation"} 1\ntgi_request_failure{err="generation"} 2\ntgi_queue_size 0\n'
    sglang = ('sglang:prompt_tokens_total{model_name="m"} 100\n'
              'sglang:num_running_reqs{model_name="m",tp_rank="0"} 3\n'
              'sglang:num_running_reqs{model_name="m",tp_rank="1"} 4\n')
    # when
    [t] = normalize(tgi).series
    s = normalize(sglang)
    # then
    assert (t.requests_failed, t.split_labels) == (3, {})
    assert [(x.split_labels, x.prompt_tokens, x.running) for x in s.series] == [
        ({}, 100, None), ({"tp_rank": "0"}, None, 3), ({"tp_rank": "1"}, None, 4)]
    [summed] = s.summed().series
    assert (summed.prompt_tokens, summed.running) == (100, 7)


def test_sglang_old_name_label_and_custom_tenant_label() -> None:
    # given
    text = ('sglang:prompt_tokens_total{name="llama",tenant_id="acme"} 100\n'
            'sglang:prompt_tokens_total{name="llama",tenant_id="zeta"} 1\n'
            'sglang:num_requests_total{name="llama",tenant_id="acme"} 10\n'
            'sglang:num_aborted_requests_total{name="llama",tenant_id="acme"} 2\n')
    # when
    series = normalize(text).series
    # then
    assert [(s.model, s.labels, s.prompt_tokens) for s in series] == [
        ("llama", {"tenant_id": "acme"}, 100), ("llama", {"tenant_id": "zeta"}, 1)]
    assert (series[0].requests_ok, series[0].requests_failed) == (8, 2)
    assert series[1].generation_tokens is None


def test_tgi_histogram_sums_without_total_suffix() -> None:
    # given
    text = ("# TYPE tgi_request_input_length histogram\ntgi_request_input_length_sum 1200\n"
            "tgi_request_input_length_count 12\ntgi_request_generated_tokens_sum 3400\n"
            "tgi_request_success 11\ntgi_request_failure{err=\"validation\"} 1\ntgi_queue_size 2\n")
    # when
    scrape = normalize(text)
    # then
    [s] = scrape.series
    assert scrape.engine == "tgi"
    assert (s.model, s.prompt_tokens, s.generation_tokens, s.requests_ok, s.requests_failed, s.waiting) == (
        None, 1200, 3400, 11, 1, 2)
    assert s.ttft_sum_s is None


def test_trtllm_serve_and_litellm_attribution_labels() -> None:
    # given
    trt = ('trtllm_prompt_tokens_total{engine_type="trtllm",model_name="llama"} 50\n'
           'trtllm_generation_tokens_total{engine_type="trtllm",model_name="llama"} 70\n'
           'trtllm_request_success_total{engine_type="trtllm",finished_reason="length",model_name="llama"} 4\n')
    lite = ('litellm_input_tokens_metric_total{api_key_alias="k1",end_user="",hashed_api_key="h",model="gpt",'
            'team="t1",team_alias="blue",user="u"} 30\n'
            'litellm_output_tokens_metric_total{api_key_alias="k1",end_user="",hashed_api_key="h",model="gpt",'
            'team="t1",team_alias="blue",user="u"} 40\n')
    # when
    [t] = normalize(trt).series
    [lt] = normalize(lite).series
    # then
    assert (t.model, t.prompt_tokens, t.generation_tokens, t.requests_ok, t.requests_by_reason) == (
        "llama", 50, 70, 4, {"length": 4})
    assert (lt.model, lt.prompt_tokens, lt.generation_tokens) == ("gpt", 30, 40)
    assert lt.labels == {"api_key_alias": "k1", "end_user": "", "team": "t1", "team_alias": "blue", "user": "u"}


def test_nim_2x_passes_vllm_names_through() -> None:
    # given a NIM 2.x page (vLLM backend names) registered as engine "nim"
    text = ('vllm:prompt_tokens_total{model_name="meta/llama"} 9\n'
            'vllm:generation_tokens_total{model_name="meta/llama"} 4\n')
    # when
    scrape = normalize(text, engine="nim")
    # then
    assert scrape.engine == "nim"
    assert (scrape.series[0].prompt_tokens, scrape.series[0].generation_tokens) == (9, 4)


@pytest.mark.parametrize("text, engine", [
    ("vllm:num_requests_running 1\n", "vllm"), ("sglang:num_running_reqs 1\n", "sglang"),
    ("tgi_queue_size 1\n", "tgi"), ("trtllm_prompt_tokens_total 1\n", "trtllm"),
    ("nv_inference_count{model=\"a\",version=\"1\"} 1\n", "triton"), ("llamacpp:prompt_tokens_total 1\n", "llamacpp"),
    ("litellm_requests_metric_total{model=\"a\"} 1\n", "litellm"),
    ('prompt_tokens_total{model_name="a"} 1\n', "nim"), ("# HELP vllm: in a comment only\nfoo 1\n", None),
])
def test_detection_from_metric_names(text: str, engine: str | None) -> None:
    # given / when / then
    assert detect_engine(text) == engine


def test_a_page_without_known_metrics_is_an_error() -> None:
    # given / when / then
    with pytest.raises(EngineError):
        normalize("up 1\n")
    with pytest.raises(EngineError):
        normalize("up 1\n", engine="vllm")
