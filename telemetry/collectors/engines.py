"""Serving-engine adapters: one Prometheus page in, normalized series out (DESIGN.md §7). I/O-free, no ORM.

Every engine names the same facts differently. An adapter says, for each normalized field, which sample
names carry it (newest name first; the first name present on the page wins, so a page that exposes both an
old and a new name is not counted twice), which label names the model, which labels are summed away
(`engine` of vLLM's data-parallel engines, `finished_reason`, ...) and which labels are kept for attribution
(SGLang custom labels such as `tenant_id`, LiteLLM's `team` / `api_key_alias` / `end_user`).

Absent is not zero: a field whose metric is not on the page is `None`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from telemetry.parsing import Sample, parse

__all__ = ["ADAPTERS", "EngineError", "EngineScrape", "EngineSeries", "detect_engine", "normalize"]

COUNTER_FIELDS = ("prompt_tokens", "generation_tokens", "requests_ok", "requests_failed")
LATENCY_FIELDS = ("ttft_sum_s", "ttft_count", "itl_sum_s", "itl_count")
GAUGE_FIELDS = ("running", "waiting", "kv_cache_usage")
# Finish reasons that are not a successful completion: the client went away, or the engine failed.
FAILED_REASONS = frozenset({"abort", "error"})


class EngineError(ValueError):
    """The page holds no metrics of the expected (or any known) engine."""


@dataclass(frozen=True)
class EngineSeries:
    """One normalized series: a model plus its attribution labels, with cumulative counters and gauges.

    Counters (tokens, requests, latency sums/counts) are cumulative since `process_start_time_s`;
    `kv_cache_usage` is a fraction 0..1; `running` / `waiting` are request counts now.
    """

    model: str | None
    labels: dict[str, str]
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    requests_ok: float | None = None
    requests_failed: float | None = None
    requests_by_reason: dict[str, float] | None = None
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    ttft_sum_s: float | None = None
    ttft_count: float | None = None
    itl_sum_s: float | None = None
    itl_count: float | None = None
    process_start_time_s: float | None = None
    # Labels that tell counting processes apart (vLLM `engine`): part of the raw series' identity, not attribution.
    split_labels: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        data = asdict(self)
        if not self.split_labels:
            del data["split_labels"]
        for key, value in data.items():
            if isinstance(value, float) and value.is_integer():
                data[key] = int(value)
        if self.requests_by_reason is not None:
            data["requests_by_reason"] = {
                k: int(v) if float(v).is_integer() else v for k, v in self.requests_by_reason.items()
            }
        return data


_SUMMED_FIELDS = ("prompt_tokens", "generation_tokens", "requests_ok", "requests_failed", "running", "waiting",
                  "ttft_sum_s", "ttft_count", "itl_sum_s", "itl_count")


def _sum_series(parts: list[EngineSeries]) -> EngineSeries:
    """One (model, attribution labels) series summed over its split labels: for reports, never for deltas.

    A field is the sum of the parts that print it (None when none does); KV-cache use is their mean, the process
    start time the latest.
    """
    if len(parts) == 1 and not parts[0].split_labels:
        return parts[0]
    values: dict = {}
    for name in _SUMMED_FIELDS:
        present = [getattr(p, name) for p in parts if getattr(p, name) is not None]
        values[name] = sum(present) if present else None
    kv = [p.kv_cache_usage for p in parts if p.kv_cache_usage is not None]
    values["kv_cache_usage"] = sum(kv) / len(kv) if kv else None
    starts = [p.process_start_time_s for p in parts if p.process_start_time_s is not None]
    values["process_start_time_s"] = max(starts) if starts else None
    reasons: dict[str, float] | None = None
    for p in parts:
        if p.requests_by_reason is not None:
            reasons = reasons or {}
            for reason, count in p.requests_by_reason.items():
                reasons[reason] = reasons.get(reason, 0.0) + count
    return EngineSeries(model=parts[0].model, labels=parts[0].labels, requests_by_reason=reasons, **values)


@dataclass(frozen=True)
class EngineScrape:
    engine: str
    # Raw series: one per (model, attribution labels, split labels), the unit of snapshots and deltas.
    series: list[EngineSeries]

    def summed(self) -> EngineScrape:
        """The same scrape with series summed over split labels (vLLM: over `engine`), as reports show it."""
        groups: dict[tuple, list[EngineSeries]] = {}
        for s in self.series:
            groups.setdefault((s.model, tuple(sorted(s.labels.items()))), []).append(s)
        return EngineScrape(engine=self.engine, series=[_sum_series(parts) for parts in groups.values()])

    def as_json(self) -> dict:
        return {"engine": self.engine, "series": [s.as_json() for s in self.series]}


# A source: (sample name, {label: value} the sample must carry). The selector labels are not attribution.
Source = tuple[str, dict[str, str]]


def _src(*names: str, **selector: str) -> tuple[Source, ...]:
    return tuple((name, dict(selector)) for name in names)


@dataclass(frozen=True)
class Adapter:
    engine: str
    # Substrings that identify the engine at the start of a line (auto-detection), most specific first.
    markers: tuple[str, ...]
    model_labels: tuple[str, ...]
    # field → alternatives; each alternative is a tuple of sources summed together. The first alternative
    # with at least one sample on the page wins.
    fields: dict[str, tuple[tuple[Source, ...], ...]]
    # Counter with a `finished_reason` label: gives requests_by_reason (and ok/failed when not given directly).
    by_reason: tuple[tuple[Source, ...], ...] = ()
    reason_label: str = "finished_reason"
    # Labels naming a separate counting process: kept in the raw series' identity (see the module docstring).
    split_labels: frozenset[str] = frozenset()
    # Labels of lazily created children of one process's counter: summed before deltas.
    sum_labels: frozenset[str] = frozenset()
    # None: keep every other label for attribution; a set: keep only these.
    keep_labels: frozenset[str] | None = None
    # requests_ok is given as a total that includes the failed ones (SGLang's num_requests_total).
    ok_includes_failed: bool = False
    # Metrics that map to no field but show a model is served (so the series exists, its fields absent).
    presence: tuple[str, ...] = ()
    names: frozenset[str] = field(default=frozenset(), init=False)

    def __post_init__(self) -> None:
        names = {"process_start_time_seconds"}
        for alternatives in (*self.fields.values(), self.by_reason):
            for alternative in alternatives:
                names.update(name for name, _ in alternative)
        names.update(self.presence)
        object.__setattr__(self, "names", frozenset(names))


def _latency(prefix_names: Iterable[str], kind: str) -> dict:
    """ttft/itl sum and count fields from histogram bases (first present wins)."""
    bases = tuple(prefix_names)
    return {
        f"{kind}_sum_s": tuple(_src(f"{b}_sum") for b in bases),
        f"{kind}_count": tuple(_src(f"{b}_count") for b in bases),
    }


def _alts(*names: str) -> tuple[tuple[Source, ...], ...]:
    return tuple(_src(name) for name in names)


VLLM = Adapter(
    engine="vllm",
    markers=("vllm:",),
    model_labels=("model_name",),
    fields={
        "prompt_tokens": _alts("vllm:prompt_tokens_total"),
        "generation_tokens": _alts("vllm:generation_tokens_total"),
        "running": _alts("vllm:num_requests_running"),
        "waiting": _alts("vllm:num_requests_waiting"),
        # 0.10+ renamed gpu_cache_usage_perc; both are fractions 0..1 despite the name.
        "kv_cache_usage": _alts("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        **_latency(["vllm:time_to_first_token_seconds"], "ttft"),
        **_latency(["vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"], "itl"),
    },
    by_reason=_alts("vllm:request_success_total"),
    split_labels=frozenset({"engine"}),
)

SGLANG = Adapter(
    engine="sglang",
    markers=("sglang:",),
    model_labels=("model_name", "name"),
    fields={
        "prompt_tokens": _alts("sglang:prompt_tokens_total"),
        "generation_tokens": _alts("sglang:generation_tokens_total"),
        "requests_ok": _alts("sglang:num_requests_total"),
        "requests_failed": _alts("sglang:num_aborted_requests_total"),
        "running": _alts("sglang:num_running_reqs"),
        "waiting": _alts("sglang:num_queue_reqs"),
        "kv_cache_usage": _alts("sglang:token_usage"),
        **_latency(["sglang:time_to_first_token_seconds"], "ttft"),
        **_latency(["sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"], "itl"),
    },
    # Parallel ranks are separate processes (scheduler gauges carry them; tokenizer counters usually do not);
    # anything else but `is_streaming` (custom labels from a request header) is kept for attribution.
    split_labels=frozenset({"engine_type", "tp_rank", "pp_rank", "dp_rank", "moe_ep_rank"}),
    sum_labels=frozenset({"is_streaming"}),
    ok_includes_failed=True,
)

TGI = Adapter(
    engine="tgi",
    markers=("tgi_",),
    model_labels=(),
    fields={
        # Histograms without `_total`; the input length is recorded at validation, so failed requests count.
        "prompt_tokens": _alts("tgi_request_input_length_sum"),
        "generation_tokens": _alts("tgi_request_generated_tokens_sum"),
        "requests_ok": _alts("tgi_request_success"),
        "requests_failed": _alts("tgi_request_failure"),
        "running": _alts("tgi_batch_current_size"),
        "waiting": _alts("tgi_queue_size"),
        **_latency(["tgi_request_mean_time_per_token_duration"], "itl"),
    },
    # One process; `err` / `method` children appear on first use.
    sum_labels=frozenset({"err", "method"}),
)

TRTLLM = Adapter(
    engine="trtllm",
    markers=("trtllm_", "trtllm:"),
    model_labels=("model_name",),
    fields={
        "prompt_tokens": _alts("trtllm_prompt_tokens_total", "trtllm:prompt_tokens_total"),
        "generation_tokens": _alts("trtllm_generation_tokens_total", "trtllm:generation_tokens_total"),
        "running": _alts("trtllm_num_requests_running", "trtllm:num_requests_running"),
        "waiting": _alts("trtllm_num_requests_waiting", "trtllm:num_requests_waiting"),
        "kv_cache_usage": _alts("trtllm_kv_cache_utilization", "trtllm:kv_cache_utilization"),
        **_latency(["trtllm_time_to_first_token_seconds", "trtllm:time_to_first_token_seconds"], "ttft"),
        **_latency(["trtllm_time_per_output_token_seconds", "trtllm:time_per_output_token_seconds"], "itl"),
    },
    by_reason=_alts("trtllm_request_success_total", "trtllm:request_success_total"),
    split_labels=frozenset({"engine_type"}),
)

TRITON = Adapter(
    engine="triton",
    markers=("nv_llm_", "nv_trt_llm_", "nv_inference_"),
    model_labels=("model",),
    fields={
        "prompt_tokens": _alts("nv_llm_input_token_len_sum"),
        "generation_tokens": _alts("nv_llm_output_token_len_sum"),
        # Triton counters carry no `_total` suffix.
        "requests_ok": _alts("nv_inference_request_success"),
        "requests_failed": _alts("nv_inference_request_failure"),
        "running": (_src("nv_trt_llm_request_metrics", request_type="active"),),
        "waiting": (
            _src("nv_trt_llm_request_metrics", request_type="waiting"),
            _src("nv_inference_pending_request_count"),
        ),
        "kv_cache_usage": (_src("nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="fraction"),),
    },
    # Per-iteration gauges (not cumulative token counters): they only prove the model is loaded.
    presence=("nv_trt_llm_v1_metrics", "nv_trt_llm_inflight_batcher_metrics", "nv_inference_count"),
    keep_labels=frozenset({"version"}),
)

NIM = Adapter(
    engine="nim",
    markers=(),  # NIM 1.x uses un-prefixed names; detected by detect_engine's fallback rule.
    model_labels=("model_name", "name"),
    fields={
        # NIM 1.x: un-prefixed vLLM v0 names; NIM 2.x+: the backend's vllm:/sglang: names passed through.
        "prompt_tokens": _alts("prompt_tokens_total", "vllm:prompt_tokens_total", "sglang:prompt_tokens_total"),
        "generation_tokens": _alts(
            "generation_tokens_total", "vllm:generation_tokens_total", "sglang:generation_tokens_total"
        ),
        "requests_ok": _alts("request_success_total"),
        "requests_failed": _alts("request_failure_total"),
        "running": _alts("num_requests_running", "vllm:num_requests_running", "sglang:num_running_reqs"),
        "waiting": _alts("num_requests_waiting", "vllm:num_requests_waiting", "sglang:num_queue_reqs"),
        "kv_cache_usage": _alts(
            "gpu_cache_usage_perc", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"
        ),
        **_latency(
            ["time_to_first_token_seconds", "vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds"],
            "ttft",
        ),
        **_latency(
            [
                "time_per_output_token_seconds", "vllm:inter_token_latency_seconds",
                "vllm:time_per_output_token_seconds", "sglang:inter_token_latency_seconds",
            ],
            "itl",
        ),
    },
    by_reason=_alts("request_finish_total", "vllm:request_success_total"),
    split_labels=frozenset({"engine", "engine_type", "tp_rank", "pp_rank", "dp_rank"}),
)

LLAMACPP = Adapter(
    engine="llamacpp",
    markers=("llamacpp:",),
    model_labels=(),
    fields={
        "prompt_tokens": _alts("llamacpp:prompt_tokens_total"),
        "generation_tokens": _alts("llamacpp:tokens_predicted_total"),
        "running": _alts("llamacpp:requests_processing"),
        "waiting": _alts("llamacpp:requests_deferred"),
        "kv_cache_usage": _alts("llamacpp:kv_cache_usage_ratio"),
    },
)

LITELLM = Adapter(
    engine="litellm",
    markers=("litellm_",),
    model_labels=("model",),
    fields={
        # prometheus_client appends `_total` to counters; older gateways printed the bare name.
        "prompt_tokens": _alts("litellm_input_tokens_metric_total", "litellm_input_tokens_metric"),
        "generation_tokens": _alts("litellm_output_tokens_metric_total", "litellm_output_tokens_metric"),
        "requests_ok": _alts("litellm_requests_metric_total", "litellm_requests_metric"),
        "requests_failed": _alts(
            "litellm_llm_api_failed_requests_metric_total", "litellm_llm_api_failed_requests_metric"
        ),
        **_latency(["litellm_llm_api_time_to_first_token_metric"], "ttft"),
    },
    keep_labels=frozenset({"team", "team_alias", "api_key_alias", "end_user", "user"}),
)

ADAPTERS: dict[str, Adapter] = {
    a.engine: a for a in (VLLM, SGLANG, TGI, TRTLLM, TRITON, NIM, LLAMACPP, LITELLM)
}
# Un-prefixed vLLM-v0 names at the start of a line: NIM 1.x.
_NIM_MARKERS = ("prompt_tokens_total{", "generation_tokens_total{", "num_requests_running{")


_DETECT_ORDER = (VLLM, SGLANG, LLAMACPP, LITELLM, TRTLLM, TRITON, TGI)
_MARKER_RE = re.compile(
    "\n(" + "|".join(re.escape(m) for a in _DETECT_ORDER for m in a.markers) + "|"
    + "|".join(re.escape(m) for m in _NIM_MARKERS) + ")"
)


def detect_engine(text: str) -> str | None:
    """The engine whose metric names start a line of the page (most specific first), or None."""
    # One scan of the page for every marker at a line start, then the most specific engine wins.
    found = set(_MARKER_RE.findall("\n" + text))
    if not found:
        return None
    for adapter in _DETECT_ORDER:
        if any(marker in found for marker in adapter.markers):
            return adapter.engine
    return NIM.engine


def _finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


class _Acc:
    """Per-series accumulation: sums, and counts for fields that are averaged."""

    __slots__ = ("values", "counts", "reasons", "bad")

    def __init__(self) -> None:
        self.bad: set[str] = set()
        self.values: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.reasons: dict[str, float] | None = None


def normalize(text: str, *, engine: str = "auto") -> EngineScrape:
    """Parse a page and map it to normalized series. Raises EngineError / ParseError on a page we cannot use."""
    if engine in ("", "auto"):
        detected = detect_engine(text)
        if detected is None:
            raise EngineError("no metrics of a known serving engine on the page")
        engine = detected
    adapter = ADAPTERS.get(engine)
    if adapter is None:
        raise EngineError(f"unknown engine {engine!r}")
    samples = parse(text, names=adapter.names)
    by_name: dict[str, list[Sample]] = {}
    seen: set[tuple] = set()
    for sample in samples:
        # A series printed twice is an invalid exposition (Prometheus rejects such a scrape too): summing the
        # copies would double the counter, so the page is refused and the next good page catches up.
        identity = (sample.name, tuple(sorted(sample.labels.items())))
        if identity in seen:
            raise EngineError(f"duplicate series {sample.name}{dict(sample.labels)} on the page")
        seen.add(identity)
        by_name.setdefault(sample.name, []).append(sample)

    model_labels = adapter.model_labels
    split = adapter.split_labels
    drop = adapter.sum_labels | {adapter.reason_label, "le", "quantile"} | set(model_labels)
    keep = adapter.keep_labels

    def key_of(labels: dict[str, str], selector: dict[str, str]) -> tuple:
        model = next((labels[name] for name in model_labels if name in labels), None)
        rest: list[tuple[str, str]] = []
        parts: list[tuple[str, str]] = []
        for k, v in labels.items():
            if k in split:
                parts.append((k, v))
            elif k not in drop and k not in selector and (keep is None or k in keep):
                rest.append((k, v))
        return model, tuple(sorted(rest)), tuple(sorted(parts))

    series: dict[tuple, _Acc] = {}

    def pick(alternatives: tuple[tuple[Source, ...], ...]) -> tuple[Source, ...] | None:
        for alternative in alternatives:
            if any(name in by_name for name, _ in alternative):
                return alternative
        return None

    for field_name, alternatives in adapter.fields.items():
        chosen = pick(alternatives)
        if chosen is None:
            continue
        for name, selector in chosen:
            for sample in by_name.get(name, ()):
                labels = sample.labels
                if any(labels.get(k) != v for k, v in selector.items()):
                    continue
                acc = series.setdefault(key_of(labels, selector), _Acc())
                if not _finite(sample.value):
                    # NaN / ±Inf: the whole field is unknown (a partial sum would look like a counter reset).
                    acc.bad.add(field_name)
                    continue
                acc.values[field_name] = acc.values.get(field_name, 0.0) + sample.value
                acc.counts[field_name] = acc.counts.get(field_name, 0) + 1

    for name in adapter.presence:
        for sample in by_name.get(name, ()):
            series.setdefault(key_of(sample.labels, {}), _Acc())

    chosen = pick(adapter.by_reason)
    if chosen is not None:
        for name, _selector in chosen:
            for sample in by_name.get(name, ()):
                acc = series.setdefault(key_of(sample.labels, {}), _Acc())
                reason = sample.labels.get(adapter.reason_label, "")
                if not _finite(sample.value):
                    acc.bad.add(f"reason:{reason}")
                    continue
                if acc.reasons is None:
                    acc.reasons = {}
                acc.reasons[reason] = acc.reasons.get(reason, 0.0) + sample.value

    start_times = [s.value for s in by_name.get("process_start_time_seconds", ()) if _finite(s.value)]
    process_start = max(start_times) if start_times else None

    out: list[EngineSeries] = []
    for (model, rest, parts), acc in sorted(series.items(),
                                            key=lambda item: (item[0][0] or "", item[0][1], item[0][2])):
        values = {k: v for k, v in acc.values.items() if k not in acc.bad}
        if acc.reasons is not None:
            acc.reasons = {r: v for r, v in acc.reasons.items() if f"reason:{r}" not in acc.bad}
        if "kv_cache_usage" in values:
            # A fraction per engine: the endpoint's usage is the mean, not the sum.
            values["kv_cache_usage"] = values["kv_cache_usage"] / acc.counts["kv_cache_usage"]
        if adapter.ok_includes_failed and "requests_ok" in values:
            values["requests_ok"] -= values.get("requests_failed", 0.0)
        if acc.reasons is not None:
            ok = sum(v for r, v in acc.reasons.items() if r not in FAILED_REASONS)
            failed = sum(v for r, v in acc.reasons.items() if r in FAILED_REASONS)
            if "requests_ok" not in values:
                values["requests_ok"] = ok
            if "requests_failed" not in values and any(r in FAILED_REASONS for r in acc.reasons):
                values["requests_failed"] = failed
        out.append(EngineSeries(
            model=model, labels=dict(rest), requests_by_reason=acc.reasons,
            process_start_time_s=process_start, split_labels=dict(parts), **values,
        ))
    if not out:
        raise EngineError(f"no {adapter.engine} metrics on the page")
    return EngineScrape(engine=adapter.engine, series=out)
