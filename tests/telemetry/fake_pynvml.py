"""A fake at the `pynvml` boundary: the same function names, raising the real `pynvml.NVMLError_*` classes.

Profiles: `h100()` (energy counter), `p100()` (pre-Volta: no energy counter, no remapped rows),
`a100_mig()` (MIG enabled: utilization NotSupported on the parent, two MIG devices). A `FakeNvml` holds
GPUs and the driver state; tests drive it with `advance(seconds)`, `lose(index)`, `unload_driver()`,
`load_driver()` (a driver reload resets every energy counter to 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml


@dataclass
class FakeMig:
    uuid: str
    slices: int
    memory_mb: int
    gi: int
    ci: int = 0
    memory_used: int = 0


@dataclass
class FakeGpu:
    uuid: str
    index: int
    name: str
    serial: str | None = "1650000000001"
    bus_id: str = "00000000:18:00.0"
    memory_total: int = 85520809984
    memory_used: int = 1_000_000_000
    util: int | None = 50
    power_mw: int = 400_000
    energy_mj: int | None = 1_000_000
    temperature: int = 40
    sm_clock: int = 1980
    mem_clock: int = 2619
    throttle: int = 0
    ecc_uncorrected: int | None = 0
    retired_pending: int | None = None
    remapped_rows: tuple[int, int, int, int] | None = (0, 0, 0, 0)
    mig_mode: int | None = 0
    migs: list[FakeMig] = field(default_factory=list)
    lost: bool = False


def h100(index: int = 0, uuid: str | None = None) -> FakeGpu:
    return FakeGpu(uuid=uuid or f"GPU-h100-0000-0000-0000-00000000000{index}", index=index,
                   name="NVIDIA H100 80GB HBM3", bus_id=f"00000000:{0x18 + index:02X}:00.0")


def p100(index: int = 0, uuid: str | None = None) -> FakeGpu:
    return FakeGpu(uuid=uuid or f"GPU-p100-0000-0000-0000-00000000000{index}", index=index,
                   name="Tesla P100-PCIE-16GB", memory_total=17071734784, power_mw=250_000, energy_mj=None,
                   ecc_uncorrected=0, retired_pending=0, remapped_rows=None, mig_mode=None, sm_clock=1328)


def a100_mig(index: int = 0, uuid: str | None = None) -> FakeGpu:
    base = uuid or f"GPU-a100-0000-0000-0000-00000000000{index}"
    return FakeGpu(uuid=base, index=index, name="NVIDIA A100-SXM4-80GB", util=None, mig_mode=1,
                   power_mw=300_000, migs=[FakeMig(uuid=f"MIG-{base[4:]}-a", slices=3, memory_mb=40960, gi=1),
                                           FakeMig(uuid=f"MIG-{base[4:]}-b", slices=4, memory_mb=40960, gi=2)])


def _err(cls: type[pynvml.NVMLError]) -> pynvml.NVMLError:
    return cls()


class FakeNvml:
    """Stands in for the `pynvml` module. Constants and error classes come from the real module."""

    def __init__(self, gpus: list[FakeGpu], *, driver_version: str = "570.133.20", cuda: int = 12080,
                 no_library: bool = False) -> None:
        self.gpus = gpus
        self.driver_version = driver_version
        self.cuda = cuda
        self.no_library = no_library
        self.driver_loaded = True
        self.session = 0  # bumps on every init; a reload invalidates the old one
        self.live_session: int | None = None
        self.init_calls = 0
        self.event_reasons_supported = True

    def __getattr__(self, name: str) -> Any:
        # NVML_* constants and NVMLError* classes are the real ones.
        if name.startswith("NVML"):
            return getattr(pynvml, name)
        raise AttributeError(name)

    # -- scenario controls -------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Time passes: every live GPU's energy counter grows by power × time (mW × s = mJ)."""
        for gpu in self.gpus:
            if gpu.energy_mj is not None and not gpu.lost:
                gpu.energy_mj += int(gpu.power_mw * seconds)

    def lose(self, index: int) -> None:
        self.gpus[index].lost = True

    def unload_driver(self) -> None:
        self.driver_loaded = False
        self.live_session = None

    def load_driver(self) -> None:
        """The driver comes back: counters restart from 0 (they count since driver load)."""
        self.driver_loaded = True
        for gpu in self.gpus:
            gpu.lost = False
            if gpu.energy_mj is not None:
                gpu.energy_mj = 0

    # -- pynvml API --------------------------------------------------------------------------------
    def _check(self) -> None:
        if not self.driver_loaded:
            raise _err(pynvml.NVMLError_DriverNotLoaded)
        if self.live_session is None:
            raise _err(pynvml.NVMLError_Uninitialized)

    def _dev(self, handle: Any) -> Any:
        self._check()
        if isinstance(handle, FakeGpu) and handle.lost:
            raise _err(pynvml.NVMLError_GpuIsLost)
        return handle

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.init_calls += 1
        if self.no_library:
            raise _err(pynvml.NVMLError_LibraryNotFound)
        if not self.driver_loaded:
            raise _err(pynvml.NVMLError_DriverNotLoaded)
        self.session += 1
        self.live_session = self.session

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._check()
        self.live_session = None

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        self._check()
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        self._check()
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._check()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:  # noqa: N802
        self._check()
        gpu = self.gpus[index]
        if gpu.lost:
            raise _err(pynvml.NVMLError_GpuIsLost)
        return gpu

    def nvmlDeviceGetUUID(self, handle: Any) -> str:  # noqa: N802
        return self._dev(handle).uuid

    def nvmlDeviceGetIndex(self, handle: FakeGpu) -> int:  # noqa: N802
        return self._dev(handle).index

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:  # noqa: N802
        return self._dev(handle).name

    def nvmlDeviceGetSerial(self, handle: FakeGpu) -> str:  # noqa: N802
        gpu = self._dev(handle)
        if gpu.serial is None:
            raise _err(pynvml.NVMLError_NotSupported)
        return gpu.serial

    def nvmlDeviceGetPciInfo(self, handle: FakeGpu) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(busId=self._dev(handle).bus_id.encode())

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> SimpleNamespace:  # noqa: N802
        gpu = self._dev(handle)
        if gpu.util is None:
            raise _err(pynvml.NVMLError_NotSupported)
        return SimpleNamespace(gpu=gpu.util, memory=gpu.util // 2)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> SimpleNamespace:  # noqa: N802
        dev = self._dev(handle)
        if isinstance(dev, FakeMig):
            total = dev.memory_mb * 1024 * 1024
            return SimpleNamespace(total=total, used=dev.memory_used, free=total - dev.memory_used)
        return SimpleNamespace(total=dev.memory_total, used=dev.memory_used, free=dev.memory_total - dev.memory_used)

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:  # noqa: N802
        return self._dev(handle).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:  # noqa: N802
        gpu = self._dev(handle)
        if gpu.energy_mj is None:
            raise _err(pynvml.NVMLError_NotSupported)
        return gpu.energy_mj

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:  # noqa: N802
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._dev(handle).temperature

    def nvmlDeviceGetClockInfo(self, handle: FakeGpu, clock: int) -> int:  # noqa: N802
        gpu = self._dev(handle)
        return {pynvml.NVML_CLOCK_SM: gpu.sm_clock, pynvml.NVML_CLOCK_MEM: gpu.mem_clock}[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeGpu) -> int:  # noqa: N802
        gpu = self._dev(handle)
        if not self.event_reasons_supported:
            raise _err(pynvml.NVMLError_FunctionNotFound)
        return gpu.throttle

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeGpu) -> int:  # noqa: N802
        return self._dev(handle).throttle

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeGpu, error_type: int, counter_type: int) -> int:  # noqa: N802
        gpu = self._dev(handle)
        if gpu.ecc_uncorrected is None:
            raise _err(pynvml.NVMLError_NotSupported)
        return gpu.ecc_uncorrected

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: FakeGpu) -> int:  # noqa: N802
        gpu = self._dev(handle)
        if gpu.retired_pending is None:
            raise _err(pynvml.NVMLError_NotSupported)
        return gpu.retired_pending

    def nvmlDeviceGetRemappedRows(self, handle: FakeGpu) -> tuple[int, int, int, int]:  # noqa: N802
        gpu = self._dev(handle)
        if gpu.remapped_rows is None:
            raise _err(pynvml.NVMLError_NotSupported)
        return gpu.remapped_rows

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:  # noqa: N802
        gpu = self._dev(handle)
        if gpu.mig_mode is None:
            raise _err(pynvml.NVMLError_NotSupported)
        return [gpu.mig_mode, gpu.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGpu) -> int:  # noqa: N802
        self._dev(handle)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeGpu, index: int) -> FakeMig:  # noqa: N802
        gpu = self._dev(handle)
        if index >= len(gpu.migs):
            raise _err(pynvml.NVMLError_NotFound)
        return gpu.migs[index]

    def nvmlDeviceGetAttributes(self, handle: FakeMig) -> SimpleNamespace:  # noqa: N802
        mig = self._dev(handle)
        return SimpleNamespace(gpuInstanceSliceCount=mig.slices, memorySizeMB=mig.memory_mb)

    def nvmlDeviceGetGpuInstanceId(self, handle: FakeMig) -> int:  # noqa: N802
        return self._dev(handle).gi

    def nvmlDeviceGetComputeInstanceId(self, handle: FakeMig) -> int:  # noqa: N802
        return self._dev(handle).ci


def demo_reader() -> Any:
    """`GPU_READER_FACTORY=tests.telemetry.fake_pynvml:demo_reader` for the end-to-end worker test."""
    import os

    from telemetry.collectors.nvml import NvmlReader

    return NvmlReader(FakeNvml([h100(0), h100(1)]), hostname=os.environ.get("FAKE_NVML_HOSTNAME", "node-a"))
