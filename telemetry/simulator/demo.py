"""The demo AI factory's layout, as plain data: the SIMULATED nodes, their GPUs and the simulated engines.

One definition serves three processes that share no database access: `seed_demo` registers this inventory,
the node polls of the Celery worker read the GPUs of a node by its hostname (`gpu_specs_of`), and
`run_simulator` serves the engines (`demo_engines`). Nothing here touches the ORM.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from telemetry.simulator.engines import EmulatedEngine, EngineFleet
from telemetry.simulator.gpus import SimulatedGpuSpec

DEFAULT_ENGINE_PORT = 9400


def engine_port() -> int:
    return int(os.environ.get("DEMO_ENGINE_PORT") or DEFAULT_ENGINE_PORT)


@dataclass(frozen=True)
class DemoNode:
    site_key: str
    hostname: str
    board_key: str
    shares: tuple[float, ...]  # per GPU: its share of the daily load curve (or flat load during burn-in)
    burn_in: bool = False
    # Days of history the node has (a node racked last week has no month of readings).
    history_days: int = 30


@dataclass(frozen=True)
class DemoEngine:
    site_key: str
    node_hostname: str
    name: str
    kind: str
    models: tuple[str, ...]
    tenant_labels: tuple[str, ...] = ()  # SGLang `tenant_id` values; empty: no attribution label
    peak_tokens_per_s: float = 4000.0
    restart_every_s: float | None = None


# Hostnames carry a "demo-" prefix: a real node is never given one of these names by accident.
NODES: tuple[DemoNode, ...] = (
    DemoNode("osl", "demo-osl-h100-01", "h100-sxm", (0.88, 0.9, 0.86, 0.92)),
    # Two GPUs of node 02 are not allocated to any tenant: they idle, which the utilization charts show.
    DemoNode("osl", "demo-osl-h100-02", "h100-sxm", (0.85, 0.8, 0.05, 0.04)),
    DemoNode("aus", "demo-aus-l40s-01", "l40s", (0.92, 0.9, 0.91, 0.92), burn_in=True, history_days=6),
)

ENGINES: tuple[DemoEngine, ...] = (
    DemoEngine("osl", "demo-osl-h100-01", "acme-llama-70b", "vllm", ("meta-llama/Llama-3.1-70B-Instruct",),
               peak_tokens_per_s=9000.0),
    DemoEngine("osl", "demo-osl-h100-02", "shared-qwen-32b", "sglang", ("Qwen/Qwen2.5-32B-Instruct",),
               tenant_labels=("acme", "globex"), peak_tokens_per_s=7000.0),
    # TGI restarts every 6 hours: its counters drop to zero, which metering must count as a reset.
    DemoEngine("osl", "demo-osl-h100-02", "globex-mistral-7b", "tgi", ("mistralai/Mistral-7B-Instruct-v0.3",),
               peak_tokens_per_s=5000.0, restart_every_s=6 * 3600.0),
)


def gpu_specs_of(hostname: str) -> list[SimulatedGpuSpec]:
    """The simulated GPUs of a demo node; empty for any other hostname."""
    for node in NODES:
        if node.hostname == hostname:
            return [SimulatedGpuSpec(hostname=hostname, index=i, board_key=node.board_key, share=share,
                                     follows_daily_load=not node.burn_in) for i, share in enumerate(node.shares)]
    return []


def demo_engines(*, clock=None) -> list[EmulatedEngine]:
    """Fresh emulated engines (counters at zero, started now, or at the clock's time)."""
    engines = []
    for e in ENGINES:
        extra = [{"tenant_id": t} for t in e.tenant_labels] or [{}]
        kwargs = {"clock": clock} if clock is not None else {}
        engines.append(EmulatedEngine(e.name, e.kind, list(e.models), extra_labels=extra,
                                      peak_tokens_per_s=e.peak_tokens_per_s, restart_every_s=e.restart_every_s,
                                      seed=sum(map(ord, e.name)), **kwargs))
    return engines


def demo_fleet(*, port: int | None = None) -> EngineFleet:
    return EngineFleet(demo_engines(), host="127.0.0.1", port=engine_port() if port is None else port)


def engine_url(name: str, *, port: int | None = None) -> str:
    return f"http://127.0.0.1:{engine_port() if port is None else port}/{name}/metrics"
