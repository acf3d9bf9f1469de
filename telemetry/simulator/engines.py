"""SIMULATED serving engines for the demo and benchmarks: small HTTP servers on loopback that serve real
engine-format `/metrics` pages whose counters grow with a daily load curve and occasionally restart.

The portal's real scraper polls them over HTTP, so the demo exercises the real path end to end. Nothing here
is imported by the portal itself.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIMULATED_KINDS = ("vllm", "sglang", "tgi", "llamacpp", "nim", "trtllm")


def daily_load(now: float, *, peak_hour_utc: float = 14.0) -> float:
    """Share of peak load (0.25…1.0) at `now`: a smooth daily curve peaking at `peak_hour_utc`."""
    hour = (now % 86400) / 3600
    return 0.25 + 0.75 * (0.5 + 0.5 * math.cos((hour - peak_hour_utc) / 24 * 2 * math.pi))


@dataclass
class SeriesCounters:
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests_stop: int = 0
    requests_length: int = 0
    requests_failed: int = 0
    ttft_sum_s: float = 0.0
    itl_sum_s: float = 0.0
    itl_count: int = 0
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0

    @property
    def requests_ok(self) -> int:
        return self.requests_stop + self.requests_length


@dataclass
class EmulatedEngine:
    """One simulated engine process. `series` keys are label tuples, e.g. (("model_name", "m"), ("tenant_id", "a"))."""

    name: str
    kind: str
    models: list[str]
    extra_labels: list[dict[str, str]] = field(default_factory=lambda: [{}])
    peak_tokens_per_s: float = 4000.0
    restart_every_s: float | None = None
    seed: int = 0
    clock: callable = time.time

    def __post_init__(self) -> None:
        if self.kind not in SIMULATED_KINDS:
            raise ValueError(f"unknown simulated engine kind {self.kind!r}")
        self._rng = random.Random(self.seed or hash(self.name))
        self._lock = threading.Lock()
        self.restarts = 0
        self._start(self.clock())

    def _start(self, now: float) -> None:
        self.process_start_time = now
        self.last_advance = now
        self.series = {
            tuple(sorted({"model": m, **labels}.items())): SeriesCounters()
            for m in self.models for labels in self.extra_labels
        }

    def advance(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        with self._lock:
            if self.restart_every_s and now - self.process_start_time >= self.restart_every_s:
                self.restarts += 1
                self._start(now)
                return
            elapsed = max(0.0, now - self.last_advance)
            self.last_advance = now
            load = daily_load(now)
            share = 1 / max(1, len(self.series))
            for counters in self.series.values():
                jitter = self._rng.uniform(0.8, 1.2)
                generated = int(self.peak_tokens_per_s * load * share * jitter * elapsed)
                prompt = int(generated * self._rng.uniform(1.5, 3.0))
                requests = max(0, generated // 350)
                failed = requests // 97
                counters.generation_tokens += generated
                counters.prompt_tokens += prompt
                counters.requests_length += requests // 9
                counters.requests_stop += requests - requests // 9 - failed
                counters.requests_failed += failed
                counters.ttft_sum_s += requests * self._rng.uniform(0.08, 0.25) * (0.6 + load)
                counters.itl_sum_s += generated * self._rng.uniform(0.012, 0.03)
                counters.itl_count += generated
                counters.running = int(40 * load * jitter)
                counters.waiting = max(0, int(30 * (load - 0.7) * jitter)) if load > 0.7 else 0
                counters.kv_cache_usage = round(min(0.98, 0.2 + 0.7 * load * jitter), 4)

    def render(self) -> str:
        with self._lock:
            return RENDERERS[self.kind](self)


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _process_lines(engine: EmulatedEngine) -> list[str]:
    return [
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {engine.process_start_time:.2f}",
    ]


def _series_labels(key: tuple, model_label: str | None) -> dict[str, str]:
    labels = dict(key)
    model = labels.pop("model")
    return ({model_label: model} if model_label else {}) | labels


def _render_prefixed(engine: EmulatedEngine, prefix: str, model_label: str, *, v1_names: bool) -> str:
    lines = _process_lines(engine)
    families: dict[str, list[str]] = {}

    def add(name: str, kind: str, labels: dict, value: float) -> None:
        if name not in families:
            families[name] = [f"# TYPE {name} {kind}"]
        families[name].append(f"{name}{_labels(labels)} {value}")

    for key, c in engine.series.items():
        labels = _series_labels(key, model_label)
        add(f"{prefix}num_requests_running" if v1_names else f"{prefix}num_running_reqs", "gauge", labels, c.running)
        add(f"{prefix}num_requests_waiting" if v1_names else f"{prefix}num_queue_reqs", "gauge", labels, c.waiting)
        usage = f"{prefix}gpu_cache_usage_perc" if v1_names else f"{prefix}token_usage"
        add(usage, "gauge", labels, c.kv_cache_usage)
        add(f"{prefix}prompt_tokens_total", "counter", labels, float(c.prompt_tokens))
        add(f"{prefix}generation_tokens_total", "counter", labels, float(c.generation_tokens))
        if v1_names:
            for reason, count in (("stop", c.requests_stop), ("length", c.requests_length),
                                  ("abort", c.requests_failed)):
                add(f"{prefix}request_success_total", "counter", {**labels, "finished_reason": reason}, float(count))
        ttft = f"{prefix}time_to_first_token_seconds"
        add(f"{ttft}_sum", "histogram", labels, round(c.ttft_sum_s, 4))
        add(f"{ttft}_count", "histogram", labels, float(c.requests_ok + c.requests_failed))
        itl = f"{prefix}time_per_output_token_seconds" if v1_names else f"{prefix}inter_token_latency_seconds"
        add(f"{itl}_sum", "histogram", labels, round(c.itl_sum_s, 4))
        add(f"{itl}_count", "histogram", labels, float(c.itl_count))
    for family in families.values():
        # histogram TYPE lines name the base family once
        if family[0].startswith("# TYPE") and family[0].endswith("histogram"):
            base = family[0].split()[2].rsplit("_", 1)[0]
            family[0] = f"# TYPE {base} histogram"
        lines += family
    return "\n".join(_dedupe_type_lines(lines)) + "\n"


def _dedupe_type_lines(lines: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for line in lines:
        if line.startswith("# TYPE"):
            if line in seen:
                continue
            seen.add(line)
        out.append(line)
    return out


def _render_vllm(engine: EmulatedEngine) -> str:
    return _render_prefixed(engine, "vllm:", "model_name", v1_names=True)


def _render_sglang(engine: EmulatedEngine) -> str:
    return _render_prefixed(engine, "sglang:", "model_name", v1_names=False)


def _render_nim(engine: EmulatedEngine) -> str:
    return _render_prefixed(engine, "", "model_name", v1_names=True)


def _render_trtllm(engine: EmulatedEngine) -> str:
    return _render_prefixed(engine, "trtllm_", "model_name", v1_names=True)


def _render_tgi(engine: EmulatedEngine) -> str:
    # TGI serves one model and has no model label; token counts are histogram sums without `_total`.
    c = sum_counters(engine)
    requests = c.requests_ok + c.requests_failed
    return "\n".join(_process_lines(engine) + [
        "# TYPE tgi_request_count counter", f"tgi_request_count {float(requests)}",
        "# TYPE tgi_request_success counter", f"tgi_request_success {float(c.requests_ok)}",
        "# TYPE tgi_request_failure counter", f'tgi_request_failure{{err="generation"}} {float(c.requests_failed)}',
        "# TYPE tgi_request_input_length histogram",
        f"tgi_request_input_length_sum {float(c.prompt_tokens)}", f"tgi_request_input_length_count {float(requests)}",
        "# TYPE tgi_request_generated_tokens histogram",
        f"tgi_request_generated_tokens_sum {float(c.generation_tokens)}",
        f"tgi_request_generated_tokens_count {float(c.requests_ok)}",
        "# TYPE tgi_queue_size gauge", f"tgi_queue_size {float(c.waiting)}",
        "# TYPE tgi_batch_current_size gauge", f"tgi_batch_current_size {float(c.running)}",
    ]) + "\n"


def _render_llamacpp(engine: EmulatedEngine) -> str:
    c = sum_counters(engine)
    return "\n".join([
        "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.",
        "# TYPE llamacpp:prompt_tokens_total counter", f"llamacpp:prompt_tokens_total {c.prompt_tokens}",
        "# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.",
        "# TYPE llamacpp:tokens_predicted_total counter", f"llamacpp:tokens_predicted_total {c.generation_tokens}",
        "# TYPE llamacpp:requests_processing gauge", f"llamacpp:requests_processing {c.running}",
        "# TYPE llamacpp:requests_deferred gauge", f"llamacpp:requests_deferred {c.waiting}",
    ]) + "\n"


def sum_counters(engine: EmulatedEngine) -> SeriesCounters:
    total = SeriesCounters()
    for c in engine.series.values():
        for name in ("prompt_tokens", "generation_tokens", "requests_stop", "requests_length", "requests_failed",
                     "ttft_sum_s", "itl_sum_s", "itl_count", "running", "waiting"):
            setattr(total, name, getattr(total, name) + getattr(c, name))
        total.kv_cache_usage = max(total.kv_cache_usage, c.kv_cache_usage)
    return total


RENDERERS = {
    "vllm": _render_vllm, "sglang": _render_sglang, "tgi": _render_tgi, "llamacpp": _render_llamacpp,
    "nim": _render_nim, "trtllm": _render_trtllm,
}


class EngineFleet:
    """Serves many emulated engines on one loopback port at `/<engine name>/metrics`."""

    def __init__(self, engines: list[EmulatedEngine], *, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the engine emulator only listens on loopback")
        self.engines = {e.name: e for e in engines}
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                parts = self.path.strip("/").split("/")
                engine = fleet.engines.get(parts[0]) if len(parts) == 2 and parts[1] == "metrics" else None
                if engine is None:
                    self._send(404, b"no such simulated engine\n")
                    return
                engine.advance()
                self._send(200, engine.render().encode())

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}/metrics"

    def start(self) -> EngineFleet:
        self._thread = threading.Thread(target=self.server.serve_forever, name="engine-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
