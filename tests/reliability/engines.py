"""Scripted engines on 127.0.0.1 for the reliability tests: each path misbehaves in its own way.

Unlike tests/telemetry/metering_server.py (one fixed answer per path), an engine here keeps real cumulative
counters that the test advances (`work`), can restart (counters back to 0, new process start time), and is told
how to answer the next request: normally, a 500, slower than the scrape timeout, closing the connection
half-way through the body, a 50 MB page, an endless stream at full speed, or an endless trickle.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass
class Engine:
    """One vLLM-format engine process: cumulative counters, a start time, and how to answer next."""

    prompt: int = 0
    generation: int = 0
    start_time: float = 1.7e9
    mode: str = "ok"  # ok | 500 | slow | cut | huge | endless | trickle | page
    page: str = ""  # served verbatim when mode == "page"
    model: str = MODEL
    extra_labels: str = ""  # e.g. ',tenant_id="acme"' appended to every label set
    truth_prompt: int = 0  # tokens served after the portal's baseline (what must be billed)
    truth_generation: int = 0
    served: int = 0
    restarts: int = 0
    history: list[str] = field(default_factory=list)

    def work(self, prompt: int, generation: int, *, billable: bool = True) -> None:
        self.prompt += prompt
        self.generation += generation
        if billable:
            self.truth_prompt += prompt
            self.truth_generation += generation

    def restart(self) -> None:
        self.prompt = self.generation = 0
        self.start_time += 60
        self.restarts += 1

    def text(self) -> str:
        labels = f'engine="0",model_name="{self.model}"{self.extra_labels}'
        return (
            "# TYPE process_start_time_seconds gauge\n"
            f"process_start_time_seconds {self.start_time}\n"
            "# TYPE vllm:prompt_tokens_total counter\n"
            f"vllm:prompt_tokens_total{{{labels}}} {self.prompt}.0\n"
            "# TYPE vllm:generation_tokens_total counter\n"
            f"vllm:generation_tokens_total{{{labels}}} {self.generation}.0\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{{{labels}}} 2.0\n"
        )


class EngineFleet:
    """`fleet.add("restarting")` → an Engine served at `fleet.url("restarting")`. A context manager."""

    def __init__(self, *, slow_s: float = 3.0) -> None:
        self.engines: dict[str, Engine] = {}
        self.slow_s = slow_s
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                name = self.path.strip("/").split("/")[0]
                with outer._lock:
                    engine = outer.engines.get(name)
                    if engine is not None:
                        engine.served += 1
                        engine.history.append(engine.mode)
                        mode, body = engine.mode, (engine.page if engine.mode == "page" else engine.text()).encode()
                if engine is None:
                    self.send_error(404)
                    return
                try:
                    outer._answer(self, mode, body)
                except (TimeoutError, BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _answer(self, h: BaseHTTPRequestHandler, mode: str, body: bytes) -> None:
        if mode == "500":
            h.send_response(500)
            h.send_header("Content-Length", "5")
            h.end_headers()
            h.wfile.write(b"boom\n")
            return
        if mode == "slow":
            time.sleep(self.slow_s)
        if mode == "cut":
            # Promise the whole page, send half of it, then drop the connection.
            h.send_response(200)
            h.send_header("Content-Type", "text/plain; version=0.0.4")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return
        if mode in ("huge", "endless", "trickle"):
            # No Content-Length: the fetcher cannot refuse early, only its streaming limits can stop it.
            h.send_response(200)
            h.send_header("Content-Type", "text/plain; version=0.0.4")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            line = b"# padding " + b"x" * 1013 + b"\n"  # 1 KiB of valid comment lines
            chunk = line * 64
            if mode == "huge":
                total = 0
                while total < 50 * 1024 * 1024:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    total += len(chunk)
                h.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
                h.wfile.write(b"0\r\n\r\n")
            elif mode == "endless":
                deadline = time.monotonic() + 30  # the fetcher must give up long before; this only bounds the test
                while time.monotonic() < deadline:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    h.wfile.write(b"1\r\n#\r\n")
                    h.wfile.flush()
                    time.sleep(0.05)
            h.close_connection = True
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/plain; version=0.0.4")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def __enter__(self) -> EngineFleet:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, name: str, **kwargs) -> Engine:
        with self._lock:
            engine = self.engines[name] = Engine(**kwargs)
        return engine

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}/metrics"


def peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) so the next reading covers only what follows (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_kib(field_name: str = "VmHWM") -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


if __name__ == "__main__":
    # `python -m tests.reliability.engines`: serve /huge/ and /endless/ from a separate process (so a memory
    # measurement of the fetching process does not include the server's own buffers); prints the port.
    import sys

    with EngineFleet() as fleet:
        fleet.add("huge", mode="huge")
        fleet.add("endless", mode="endless")
        print(fleet.port, flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin
