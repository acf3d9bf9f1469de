"""A real HTTP server on 127.0.0.1 that serves engine pages the test sets, for metering and fetch tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    # Sent as an endless chunked stream (for size and time limits).
    endless: bool = False


class EngineServer:
    """`server.set("/a/metrics", text)`; `server.url("/a/metrics")`; `server.requests` records (path, headers)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                with outer._lock:
                    outer.requests.append((self.path, dict(self.headers.items())))
                    route = outer.routes.get(self.path)
                if route is None:
                    route = Route(body=b"not found", status=404)
                if route.delay_s:
                    time.sleep(route.delay_s)
                try:
                    self.send_response(route.status)
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    if route.endless:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        chunk = b"# padding " + b"x" * 65000 + b"\n"
                        for _ in range(100000):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        return
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EngineServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def set(self, path: str, text: str = "", **route) -> None:
        with self._lock:
            self.routes[path] = Route(body=text.encode(), **route)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def vllm_page(*, engines: dict[str, tuple[int, int]], model: str = "meta-llama/Llama-3.1-8B-Instruct",
              start_time: float = 1.7e9, new_names: bool = True, reasons: dict[str, int] | None = None) -> str:
    """A vLLM v1 page with one `engine` label value per data-parallel engine: engine → (prompt, generation)."""
    lines = [
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {start_time}",
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
    ]
    lines += [f'vllm:prompt_tokens_total{{engine="{e}",model_name="{model}"}} {p}.0' for e, (p, _) in engines.items()]
    lines += [f'vllm:prompt_tokens_created{{engine="{e}",model_name="{model}"}} {start_time + 3}' for e in engines]
    lines += ["# HELP vllm:generation_tokens_total Number of generation tokens processed.",
              "# TYPE vllm:generation_tokens_total counter"]
    lines += [f'vllm:generation_tokens_total{{engine="{e}",model_name="{model}"}} {g}.0'
              for e, (_, g) in engines.items()]
    kv = "vllm:kv_cache_usage_perc" if new_names else "vllm:gpu_cache_usage_perc"
    lines += [f"# TYPE {kv} gauge"] + [f'{kv}{{engine="{e}",model_name="{model}"}} 0.25' for e in engines]
    lines += ["# TYPE vllm:num_requests_running gauge"]
    lines += [f'vllm:num_requests_running{{engine="{e}",model_name="{model}"}} 3.0' for e in engines]
    if reasons:
        lines += ["# TYPE vllm:request_success_total counter"]
        lines += [f'vllm:request_success_total{{engine="0",finished_reason="{r}",model_name="{model}"}} {n}.0'
                  for r, n in reasons.items()]
    return "\n".join(lines) + "\n"
