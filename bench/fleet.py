"""A cheap loopback server for many simulated engines, for the benchmarks and the load generator.

Serves the same pages as `telemetry.simulator.engines.EngineFleet` (each `EmulatedEngine` advances its counters
and renders its real engine-format page on every GET of `/<name>/metrics`), but from one asyncio event loop per
process instead of a thread per connection: at thousands of endpoints the threaded server's thread start-up and
context switches took more CPU than the scraper under test, on the same two cores. HTTP/1.1 keep-alive is kept
until the client closes (as the threaded server does), so a scraper that reuses connections can.

    python bench/fleet.py --endpoints 2000 --processes 4     # prints one URL per line, serves until killed
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telemetry.simulator.engines import SIMULATED_KINDS, EmulatedEngine  # noqa: E402

MAX_REQUEST_HEAD = 16 * 1024


def engines_for(indices: Sequence[int], *, prefix: str = "e") -> list[EmulatedEngine]:
    """Engine i: kind i mod 6 (vllm, sglang, tgi, llamacpp, nim, trtllm), one model of seven, seeded by i."""
    return [EmulatedEngine(name=f"{prefix}{i}", kind=SIMULATED_KINDS[i % len(SIMULATED_KINDS)],
                           models=[f"model-{i % 7}"], seed=i + 1) for i in indices]


class _EngineHttp(asyncio.Protocol):
    def __init__(self, engines: dict[str, EmulatedEngine], stats: dict[str, int]) -> None:
        self.engines = engines
        self.stats = stats
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stats["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_REQUEST_HEAD:
                    self.transport.close()
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            self._answer(head)

    def _answer(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        close = any(line.lower().startswith(b"connection:") and b"close" in line.lower() for line in lines[1:])
        engine = None
        if len(parts) == 3 and parts[0] == b"GET":
            path = parts[1].decode("latin-1").strip("/").split("/")
            if len(path) == 2 and path[1] == "metrics":
                engine = self.engines.get(path[0])
        if engine is None:
            status, body = b"404 Not Found", b"no such simulated engine\n"
        else:
            engine.advance()
            status, body = b"200 OK", engine.render().encode()
        self.stats["requests"] += 1
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %d\r\n%s\r\n%s"
            % (status, len(body), b"Connection: close\r\n" if close else b"", body))
        if close:
            self.transport.close()


async def serve(engines: Sequence[EmulatedEngine], *, port: int = 0, ready=None) -> None:
    """Serve the engines on 127.0.0.1:`port` until cancelled; `ready(port)` is called once listening."""
    by_name = {e.name: e for e in engines}
    stats = {"connections": 0, "requests": 0}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _EngineHttp(by_name, stats), "127.0.0.1", port, backlog=4096)
    if ready is not None:
        ready(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def serve_process(indices: list[int], ports: mp.Queue, prefix: str = "e") -> None:
    """Process entry point: serve engines `indices`, put (first index, port) on `ports`."""
    asyncio.run(serve(engines_for(indices, prefix=prefix), ready=lambda port: ports.put((indices[0], port))))


class Fleet:
    """`processes` server processes for `endpoints` simulated engines; `urls[i]` is engine i's metrics URL."""

    def __init__(self, endpoints: int, processes: int = 4, *, prefix: str = "e") -> None:
        ctx = mp.get_context("fork")
        ports: mp.Queue = ctx.Queue()
        self.chunks = [list(range(endpoints))[i::processes] for i in range(processes)]
        self.chunks = [c for c in self.chunks if c]
        self.procs = [ctx.Process(target=serve_process, args=(chunk, ports, prefix), daemon=True)
                      for chunk in self.chunks]
        for p in self.procs:
            p.start()
        port_of = dict(ports.get(timeout=60) for _ in self.procs)
        self.urls = [""] * endpoints
        for chunk in self.chunks:
            for i in chunk:
                self.urls[i] = f"http://127.0.0.1:{port_of[chunk[0]]}/{prefix}{i}/metrics"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(timeout=10)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> int:
    import argparse
    import signal

    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", type=int, default=2000)
    ap.add_argument("--processes", type=int, default=4)
    args = ap.parse_args()
    fleet = Fleet(args.endpoints, args.processes)
    print("\n".join(fleet.urls), flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
