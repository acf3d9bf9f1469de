"""The simulated GPUs' physics, and that the real NvmlReader reads them like a board (no database)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random

import pytest

from telemetry.collectors.nvml import SOURCE_SIMULATED
from telemetry.simulator.demo import NODES, gpu_specs_of
from telemetry.simulator.engines import daily_load
from telemetry.simulator.gpus import (
    BOARDS,
    THERMAL_TAU_S,
    SimulatedGpu,
    SimulatedGpuReader,
    SimulatedGpuSpec,
    simulated_reader,
)

T0 = dt.datetime(2025, 6, 3, 9, 0, tzinfo=dt.UTC).timestamp()
ALL_SPECS = [spec for node in NODES for spec in gpu_specs_of(node.hostname)]


def _simpson(f, a: float, b: float, steps: int) -> float:
    h = (b - a) / steps
    total = f(a) + f(b)
    for i in range(1, steps):
        total += (4 if i % 2 else 2) * f(a + i * h)
    return total * h / 3


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("spec", [ALL_SPECS[0], ALL_SPECS[6], ALL_SPECS[8]], ids=["h100-busy", "h100-idle", "l40s"])
def test_energy_counter_is_the_exact_integral_of_power(spec):
    # given: the node's reader (the real NvmlReader over the simulated board) at two instants an hour apart
    clock = Clock(T0)
    reader = SimulatedGpuReader(spec.hostname, [spec], clock=clock)
    physics = spec.physics
    # when
    first = reader.read().gpus[0]
    clock.now = T0 + 3600.0
    second = reader.read().gpus[0]
    integral_j = _simpson(physics.power_w, T0, T0 + 3600.0, 7200)
    # then: the counter difference (whole mJ) is the integral of the power, up to the 1 mJ rounding per reading
    counter_j = (second.energy_mj - first.energy_mj) / 1000
    assert counter_j == pytest.approx(integral_j, abs=0.002)
    assert integral_j > spec.board.idle_w * 3600 * 0.99


def test_power_stays_between_idle_and_the_board_limit_and_follows_utilization():
    # given
    rng = random.Random(7)
    instants = [T0 + rng.uniform(0, 365 * 86400) for _ in range(400)]
    # when / then
    for spec in ALL_SPECS:
        physics, board = spec.physics, spec.board
        for t in instants:
            u, p = physics.util(t), physics.power_w(t)
            assert 0.0 <= u <= 1.0
            assert board.idle_w <= p <= board.limit_w
            assert p == pytest.approx(board.idle_w + (board.limit_w - board.idle_w) * u)


def test_serving_gpus_follow_the_engines_daily_load_curve():
    # given: a serving H100 (not a burn-in board) and the engines' curve
    spec = ALL_SPECS[0]
    assert spec.follows_daily_load
    # when / then: the utilization is share × daily_load(t) up to the small wobbles (amplitudes ≤ 0.06)
    for hour in range(0, 48):
        t = T0 + hour * 3600.0
        assert abs(spec.physics.util(t) - spec.share * daily_load(t)) <= 0.06 + 1e-9
    busy = spec.physics.util(dt.datetime(2025, 6, 3, 14, tzinfo=dt.UTC).timestamp())
    quiet = spec.physics.util(dt.datetime(2025, 6, 3, 2, tzinfo=dt.UTC).timestamp())
    assert busy > quiet + 0.4


def test_temperature_lags_power_like_a_first_order_thermal_mass():
    # given: the lag filter integrated numerically, dT/dt = (P − T)/τ, from the closed form's own value
    physics = ALL_SPECS[1].physics
    t, y, h = T0, physics.lagged_power_w(T0), 0.05
    # when: 10 minutes of Euler steps
    for _ in range(int(600 / h)):
        y += h * (physics.power_w(t) - y) / THERMAL_TAU_S
        t += h
    # then: the closed form is that filter's output, and it trails the power (the 97 s wobble peaks later)
    assert y == pytest.approx(physics.lagged_power_w(t), abs=0.5)
    fast = physics.util_waves[1]
    peak_power_t = (2 * math.pi * 10_000_000 - fast.phase) / fast.omega  # a crest of the 97 s component
    delay = math.atan(fast.omega * THERMAL_TAU_S) / fast.omega
    assert 0 < delay < 97 / 4
    assert physics.lagged_power_w(peak_power_t + delay) - physics.lagged_power_w(peak_power_t) > -1e-6
    temperature = SimulatedGpu(ALL_SPECS[1]).state(T0).temperature_c
    assert 30 <= temperature <= 85


def test_unsupported_fields_are_null_with_the_nvml_reason_never_zero():
    # given: an L40S (no MIG, no page retirement) and an H100 (no page retirement) read by the real reader
    reader = SimulatedGpuReader("demo-aus-l40s-01", gpu_specs_of("demo-aus-l40s-01")[:1], clock=Clock(T0))
    h100 = SimulatedGpuReader("demo-osl-h100-01", gpu_specs_of("demo-osl-h100-01")[:1], clock=Clock(T0))
    # when
    l40s_gpu, h100_gpu = reader.read().gpus[0], h100.read().gpus[0]
    # then
    assert l40s_gpu.mig_mode is None and l40s_gpu.retired_pages_pending is None
    assert l40s_gpu.absent["mig_mode"].startswith("NVMLError_NotSupported")
    assert h100_gpu.mig_mode is False and h100_gpu.retired_pages_pending is None
    assert h100_gpu.absent["retired_pages_pending"].startswith("NVMLError_NotSupported")
    assert h100_gpu.power_w is not None and h100_gpu.energy_mj is not None


def test_utilization_is_occasionally_no_data_like_real_boards():
    # given: one GPU read once per 10-second slot for a day
    spec = ALL_SPECS[0]
    clock = Clock(T0)
    reader = SimulatedGpuReader(spec.hostname, [spec], clock=clock)
    # when
    readings = []
    for slot in range(8640):
        clock.now = T0 + slot * 10
        readings.append(reader.read().gpus[0])
    # then: about 1% of reads lack utilization, recorded as NULL with NVML's reason
    missing = [r for r in readings if r.util_pct is None]
    assert 0.003 * len(readings) < len(missing) < 0.03 * len(readings)
    assert all(r.absent["util_pct"].startswith("NVMLError_NoData") for r in missing)
    assert all(r.power_w is not None for r in missing)


def test_backfill_readings_equal_what_the_nvml_reader_reads():
    # given: the fast back-fill path and the live path (NvmlReader over SimulatedNvml) at the same instant
    specs = gpu_specs_of("demo-aus-l40s-01")
    reader = SimulatedGpuReader("demo-aus-l40s-01", specs, clock=Clock(T0))
    ts = dt.datetime.fromtimestamp(T0, tz=dt.UTC)
    # when
    live = reader.read()
    backfill = [SimulatedGpu(spec).reading(T0, ts) for spec in specs]
    # then
    assert live.source == SOURCE_SIMULATED and live.error is None
    assert [dataclasses.asdict(g) for g in live.gpus] == [dataclasses.asdict(g) for g in backfill]


def test_every_process_reads_the_same_counters_at_the_same_instant():
    # given: two independent readers of one node (two worker processes)
    specs = gpu_specs_of("demo-osl-h100-02")
    a = SimulatedGpuReader("demo-osl-h100-02", specs, clock=Clock(T0 + 10))
    b = SimulatedGpuReader("demo-osl-h100-02", specs, clock=Clock(T0 + 10))
    # when / then: stateless physics, so a poll in either process continues the same counter
    assert [g.energy_mj for g in a.read().gpus] == [g.energy_mj for g in b.read().gpus]


def test_only_demo_hostnames_have_simulated_gpus():
    # given / when / then
    assert simulated_reader("gpu-node-17.example") is None
    assert simulated_reader("demo-osl-h100-01") is not None
    assert sum(len(gpu_specs_of(n.hostname)) for n in NODES) >= 8
    with pytest.raises(ValueError):
        _ = SimulatedGpuSpec("x", 0, "h100-sxm", share=0.99).physics
    assert set(BOARDS) == {"h100-sxm", "l40s"}
