"""SIMULATED GPUs for the demo: a stand-in at the `pynvml` boundary, read by the real `NvmlReader`.

Every reading this module produces is labelled: the `NodeReading.source` is `sim` (stored on each raw sample),
and GPUs created from such a report are flagged `Gpu.simulated`, which the UI and the API show as "simulated".

The physics is a pure function of time, so any number of worker processes polling the same simulated node
agree on every value (a counter that two processes kept separately would run backwards between polls):

* utilization u(t) = share × `daily_load(t)` (the curve the simulated engines follow) + a few slow sine wobbles,
  with amplitudes chosen so that u stays inside [0, 1] without clamping;
* power P(t) = idle + (limit − idle) × u(t), so it always lies between the board's idle draw and its limit;
* the energy counter is the closed-form integral of P from the (simulated) driver load time, in whole mJ, so
  counter(t2) − counter(t1) = ∫ P dt over [t1, t2] up to the 1 mJ rounding of each reading;
* the temperature follows power through a first-order lag (time constant `THERMAL_TAU_S`), applied per sine
  component in closed form;
* fields a real board does not offer raise the real `pynvml.NVMLError_NotSupported` (H100: retired pages;
  L40S: MIG mode and retired pages), and about one poll in a hundred utilization raises `NVMLError_NoData`
  for one GPU, as boards occasionally do; the reader stores both as NULL with the reason, never as 0.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import pynvml

from telemetry.collectors.nvml import SOURCE_SIMULATED, GpuReading, NodeReading, NvmlReader

DAY_S = 86400.0
# daily_load(t) = 0.625 + 0.375 cos(2π t / day − 2π × 14 / 24): its peak hour, written as a phase.
_DAILY_OMEGA = 2 * math.pi / DAY_S
_DAILY_PHASE = -2 * math.pi * 14.0 / 24
THERMAL_TAU_S = 90.0
# One utilization read in this many comes back NoData (per GPU, per 10-second slot).
NO_DATA_ONE_IN = 100
# Counters count from the (simulated) driver load: the same instant for every demo node.
DRIVER_LOADED_AT = dt.datetime(2025, 1, 6, 3, 12, tzinfo=dt.UTC).timestamp()
_UUID_NAMESPACE = uuidlib.UUID("6f0c2c2e-3d1b-4c55-9a7e-5d3f1e0b51a7")

# NVML clock-event reason bits (nvmlClocksEventReason*).
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4


@dataclass(frozen=True)
class Board:
    """What a GPU model draws and offers. `unsupported`: NVML functions this board answers NotSupported."""

    name: str
    idle_w: float
    limit_w: float
    memory_total_bytes: int
    sm_clock_idle_mhz: int
    sm_clock_max_mhz: int
    mem_clock_mhz: int
    ambient_c: float
    c_per_w: float
    unsupported: frozenset[str] = frozenset()


BOARDS: dict[str, Board] = {
    # H100 SXM5: ~70 W idle, 700 W board limit; Hopper has row remapping, not page retirement.
    "h100-sxm": Board(
        name="NVIDIA H100 80GB HBM3", idle_w=70.0, limit_w=700.0, memory_total_bytes=85_520_809_984,
        sm_clock_idle_mhz=345, sm_clock_max_mhz=1980, mem_clock_mhz=2619, ambient_c=27.0, c_per_w=0.062,
        unsupported=frozenset({"nvmlDeviceGetRetiredPagesPendingStatus"}),
    ),
    # L40S (Ada, PCIe): ~35 W idle, 350 W limit, no MIG.
    "l40s": Board(
        name="NVIDIA L40S", idle_w=35.0, limit_w=350.0, memory_total_bytes=48_305_799_168,
        sm_clock_idle_mhz=210, sm_clock_max_mhz=2520, mem_clock_mhz=9001, ambient_c=30.0, c_per_w=0.12,
        unsupported=frozenset({"nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetMigMode"}),
    ),
}


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (stable across processes, unlike hash())."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_gpu_uuid(hostname: str, index: int) -> str:
    return f"GPU-{uuidlib.uuid5(_UUID_NAMESPACE, f'{hostname}/{index}')}"


@dataclass(frozen=True)
class Wave:
    """One component `amplitude × cos(omega × t + phase)` of a signal."""

    amplitude: float
    omega: float
    phase: float


@dataclass(frozen=True)
class GpuPhysics:
    """The closed-form signals of one simulated GPU. `t` is a Unix time in seconds."""

    board: Board
    util_mean: float
    util_waves: tuple[Wave, ...]

    def util(self, t: float) -> float:
        return self.util_mean + sum(w.amplitude * math.cos(w.omega * t + w.phase) for w in self.util_waves)

    def power_w(self, t: float) -> float:
        span = self.board.limit_w - self.board.idle_w
        return self.board.idle_w + span * self.util(t)

    def energy_j(self, t: float) -> float:
        """∫ power over [DRIVER_LOADED_AT, t], exactly (the antiderivative of each cosine is a sine)."""
        span = self.board.limit_w - self.board.idle_w
        t0 = DRIVER_LOADED_AT
        total = (self.board.idle_w + span * self.util_mean) * (t - t0)
        for w in self.util_waves:
            total += span * w.amplitude / w.omega * (math.sin(w.omega * t + w.phase) - math.sin(w.omega * t0 + w.phase))
        return total

    def lagged_power_w(self, t: float) -> float:
        """Power seen through a first-order lag of time constant THERMAL_TAU_S (each cosine is attenuated
        by 1/√(1 + (ωτ)²) and delayed by atan(ωτ))."""
        span = self.board.limit_w - self.board.idle_w
        value = self.board.idle_w + span * self.util_mean
        for w in self.util_waves:
            wt = w.omega * THERMAL_TAU_S
            value += span * w.amplitude / math.sqrt(1 + wt * wt) * math.cos(w.omega * t + w.phase - math.atan(wt))
        return value

    def temperature_c(self, t: float) -> float:
        return self.board.ambient_c + self.board.c_per_w * self.lagged_power_w(t)


def gpu_physics(*, board: Board, hostname: str, index: int, share: float, follows_daily_load: bool = True) -> (
        GpuPhysics):
    """A GPU whose utilization is `share × daily_load(t)` plus wobbles (or flat at `share` for burn-in).

    Wobble amplitudes sum to at most 0.06 and share ≤ 0.92, so u(t) stays within [0, 0.98]."""
    if not 0.0 <= share <= 0.92:
        raise ValueError("share must be within 0..0.92 so utilization stays below 100%")
    waves: list[Wave] = []
    if follows_daily_load:
        # share × daily_load(t) = share × 0.625 + share × 0.375 × cos(ω_day t + φ_day)
        mean = share * 0.625
        waves.append(Wave(share * 0.375, _DAILY_OMEGA, _DAILY_PHASE))
    else:
        mean = share
    wobble_room = min(0.06, mean - (waves[0].amplitude if waves else 0.0))
    for k, period_s in enumerate((97.0, 331.0, 1453.0)):
        amplitude = wobble_room * (0.45, 0.35, 0.2)[k]
        phase = 2 * math.pi * _unit(hostname, index, "phase", k)
        waves.append(Wave(amplitude, 2 * math.pi / period_s, phase))
    return GpuPhysics(board=board, util_mean=mean, util_waves=tuple(waves))


@dataclass(frozen=True)
class SimulatedGpuSpec:
    hostname: str
    index: int
    board_key: str
    share: float
    follows_daily_load: bool = True

    @property
    def board(self) -> Board:
        return BOARDS[self.board_key]

    @property
    def uuid(self) -> str:
        return simulated_gpu_uuid(self.hostname, self.index)

    @property
    def physics(self) -> GpuPhysics:
        return gpu_physics(board=self.board, hostname=self.hostname, index=self.index, share=self.share,
                           follows_daily_load=self.follows_daily_load)


@dataclass(frozen=True)
class GpuState:
    """Every value of one simulated GPU at one instant, as NVML would give it (ints where NVML gives ints)."""

    util_pct: int | None
    memory_util_pct: int | None
    memory_used_bytes: int
    power_mw: int
    energy_mj: int
    temperature_c: int
    sm_clock_mhz: int
    throttle_reasons: int
    unsupported: dict[str, str] = field(default_factory=dict)


def _no_data(uuid: str, t: float) -> bool:
    return _unit(uuid, "nodata", int(t // 10)) < 1 / NO_DATA_ONE_IN


class SimulatedGpu:
    """One simulated board: `state(t)` is everything NVML would report at time t."""

    def __init__(self, spec: SimulatedGpuSpec) -> None:
        self.spec = spec
        self.uuid = spec.uuid
        self.physics = spec.physics
        self.board = spec.board
        self.serial = f"165{int(_unit(self.uuid, 'serial') * 1e10):010d}"
        self.bus_id = f"00000000:{0x18 + 0x10 * spec.index:02X}:00.0"

    def state(self, t: float) -> GpuState:
        board, physics = self.board, self.physics
        u = physics.util(t)
        power_mw = round(physics.power_w(t) * 1000)
        model_fraction = 0.1 + 0.6 * min(1.0, self.spec.share * 1.1)  # weights resident while serving
        memory_used = int(board.memory_total_bytes * min(0.97, model_fraction + 0.2 * u))
        util_pct = max(0, min(100, round(100 * u)))
        no_data = _no_data(self.uuid, t)
        reasons = REASON_GPU_IDLE if u < 0.05 else 0
        if power_mw >= 0.97 * board.limit_w * 1000:
            reasons |= REASON_SW_POWER_CAP
        return GpuState(
            util_pct=None if no_data else util_pct,
            memory_util_pct=None if no_data else max(0, min(100, round(62 * u))),
            memory_used_bytes=memory_used,
            power_mw=power_mw,
            energy_mj=math.floor(physics.energy_j(t) * 1000),
            temperature_c=round(physics.temperature_c(t)),
            sm_clock_mhz=round(board.sm_clock_idle_mhz + (board.sm_clock_max_mhz - board.sm_clock_idle_mhz)
                               * min(1.0, u * 2.5)),
            throttle_reasons=reasons,
            unsupported={"util_pct": "NVMLError_NoData: No data"} if no_data else {},
        )

    def reading(self, t: float, ts: dt.datetime) -> GpuReading:
        """The GpuReading the real NvmlReader makes of this board at t (used to back-fill history quickly)."""
        s = self.state(t)
        absent = dict(s.unsupported)
        if "util_pct" in absent:
            absent["memory_util_pct"] = absent["util_pct"]
        for fn, fields in _UNSUPPORTED_FIELDS.items():
            if fn in self.board.unsupported:
                for name in fields:
                    absent[name] = "NVMLError_NotSupported: Not Supported"
        mig_supported = "nvmlDeviceGetMigMode" not in self.board.unsupported
        return GpuReading(
            uuid=self.uuid, index=self.spec.index, ts=ts, name=self.board.name, serial=self.serial,
            pci_bus_id=self.bus_id, util_pct=s.util_pct, memory_util_pct=s.memory_util_pct,
            memory_used_bytes=s.memory_used_bytes, memory_total_bytes=self.board.memory_total_bytes,
            power_w=s.power_mw / 1000.0, energy_mj=s.energy_mj, temperature_c=s.temperature_c,
            sm_clock_mhz=s.sm_clock_mhz, mem_clock_mhz=self.board.mem_clock_mhz, throttle_reasons=s.throttle_reasons,
            ecc_uncorrected_errors=0,
            retired_pages_pending=None if "nvmlDeviceGetRetiredPagesPendingStatus" in self.board.unsupported else False,
            remapped_rows_correctable=0, remapped_rows_uncorrectable=0, row_remap_failure=False,
            mig_mode=False if mig_supported else None, unsupported=tuple(sorted(absent.items())),
        )


# Which reading fields an unsupported NVML function leaves empty (as NvmlReader records them).
_UNSUPPORTED_FIELDS: dict[str, tuple[str, ...]] = {
    "nvmlDeviceGetRetiredPagesPendingStatus": ("retired_pages_pending",),
    "nvmlDeviceGetMigMode": ("mig_mode",),
}


class SimulatedNvml:
    """Stands in for the `pynvml` module for one simulated node. Constants and error classes are the real ones.
    `now` is the instant every getter reports (set once per collection cycle by `SimulatedGpuReader`)."""

    def __init__(self, gpus: Sequence[SimulatedGpu], *, driver_version: str = "570.133.20",
                 cuda_version: int = 12080) -> None:
        self.gpus = list(gpus)
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.now = time.time()
        self.initialized = False
        self._states: dict[str, GpuState] = {}
        self._states_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("NVML"):
            return getattr(pynvml, name)
        raise AttributeError(name)

    def _state(self, gpu: SimulatedGpu) -> GpuState:
        if self._states_at != self.now:
            self._states, self._states_at = {}, self.now
        state = self._states.get(gpu.uuid)
        if state is None:
            state = self._states[gpu.uuid] = gpu.state(self.now)
        return state

    def _supported(self, gpu: SimulatedGpu, fn: str) -> None:
        if not self.initialized:
            raise pynvml.NVMLError_Uninitialized()
        if fn in gpu.board.unsupported:
            raise pynvml.NVMLError_NotSupported()

    # -- pynvml API (names are pynvml's) ------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802
        self.initialized = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        return self.cuda_version

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        if not self.initialized:
            raise pynvml.NVMLError_Uninitialized()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimulatedGpu:  # noqa: N802
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, gpu: SimulatedGpu) -> str:  # noqa: N802
        return gpu.uuid

    def nvmlDeviceGetIndex(self, gpu: SimulatedGpu) -> int:  # noqa: N802
        return gpu.spec.index

    def nvmlDeviceGetName(self, gpu: SimulatedGpu) -> str:  # noqa: N802
        return gpu.board.name

    def nvmlDeviceGetSerial(self, gpu: SimulatedGpu) -> str:  # noqa: N802
        return gpu.serial

    def nvmlDeviceGetPciInfo(self, gpu: SimulatedGpu) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(busId=gpu.bus_id.encode())

    def nvmlDeviceGetUtilizationRates(self, gpu: SimulatedGpu) -> SimpleNamespace:  # noqa: N802
        state = self._state(gpu)
        if state.util_pct is None:
            raise pynvml.NVMLError_NoData()
        return SimpleNamespace(gpu=state.util_pct, memory=state.memory_util_pct)

    def nvmlDeviceGetMemoryInfo(self, gpu: SimulatedGpu) -> SimpleNamespace:  # noqa: N802
        used = self._state(gpu).memory_used_bytes
        total = gpu.board.memory_total_bytes
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetPowerUsage(self, gpu: SimulatedGpu) -> int:  # noqa: N802
        return self._state(gpu).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: SimulatedGpu) -> int:  # noqa: N802
        return self._state(gpu).energy_mj

    def nvmlDeviceGetTemperature(self, gpu: SimulatedGpu, sensor: int) -> int:  # noqa: N802
        return self._state(gpu).temperature_c

    def nvmlDeviceGetClockInfo(self, gpu: SimulatedGpu, clock: int) -> int:  # noqa: N802
        if clock == pynvml.NVML_CLOCK_MEM:
            return gpu.board.mem_clock_mhz
        return self._state(gpu).sm_clock_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: SimulatedGpu) -> int:  # noqa: N802
        return self._state(gpu).throttle_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, gpu: SimulatedGpu) -> int:  # noqa: N802
        return self._state(gpu).throttle_reasons

    def nvmlDeviceGetTotalEccErrors(self, gpu: SimulatedGpu, error_type: int, counter_type: int) -> int:  # noqa: N802
        return 0

    def nvmlDeviceGetRetiredPagesPendingStatus(self, gpu: SimulatedGpu) -> int:  # noqa: N802
        self._supported(gpu, "nvmlDeviceGetRetiredPagesPendingStatus")
        return 0

    def nvmlDeviceGetRemappedRows(self, gpu: SimulatedGpu) -> tuple[int, int, int, int]:  # noqa: N802
        return (0, 0, 0, 0)

    def nvmlDeviceGetMigMode(self, gpu: SimulatedGpu) -> list[int]:  # noqa: N802
        self._supported(gpu, "nvmlDeviceGetMigMode")
        return [pynvml.NVML_DEVICE_MIG_DISABLE, pynvml.NVML_DEVICE_MIG_DISABLE]


class SimulatedGpuReader:
    """A `GpuReader` for one simulated node: the real `NvmlReader` over `SimulatedNvml`, its report labelled
    `source="sim"`. Each cycle reads every GPU at one instant."""

    def __init__(self, hostname: str, gpus: Sequence[SimulatedGpuSpec], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.hostname = hostname
        self.clock = clock
        self.nvml = SimulatedNvml([SimulatedGpu(spec) for spec in gpus])
        self._ts = dt.datetime.now(dt.UTC)
        self.reader = NvmlReader(self.nvml, hostname=hostname, clock=lambda: self._ts)

    def read(self) -> NodeReading:
        t = self.clock()
        self.nvml.now = t
        self._ts = dt.datetime.fromtimestamp(t, tz=dt.UTC)
        return replace(self.reader.read(), source=SOURCE_SIMULATED)


_readers: dict[str, SimulatedGpuReader] = {}


def simulated_reader(hostname: str) -> SimulatedGpuReader | None:
    """The reader of a demo node (its GPUs come from the demo fleet, telemetry/simulator/demo.py), or None when
    no simulated node has this hostname."""
    from telemetry.simulator.demo import gpu_specs_of

    reader = _readers.get(hostname)
    if reader is None:
        specs = gpu_specs_of(hostname)
        if not specs:
            return None
        reader = _readers[hostname] = SimulatedGpuReader(hostname, specs)
    return reader
