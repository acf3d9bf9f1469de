"""NVML reader: pynvml in, frozen dataclasses out. No ORM, no Django models.

One `NvmlReader` per worker process (`get_reader()`): NVML is initialised lazily on the first read,
never at import time, so a forking Celery parent does not hand an initialised handle to its children
(`reset_reader()` runs on `worker_process_init`).

Field-level errors (`NVMLError_NotSupported`, `FunctionNotFound`, ...) make that field None and record
the reason in `unsupported`; a value is never invented as 0. Lifecycle errors (GPU lost, driver not
loaded, ...) turn the GPU into a `GpuFault`, and the reader shuts NVML down and re-initialises it on the
next cycle.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol

import pynvml

SOURCE_NVML = "nvml"
SOURCE_DCGM = "dcgm"
SOURCE_AGENT = "agent"
SOURCE_SIMULATED = "sim"  # the demo's simulated GPUs (telemetry/simulator/gpus.py)
SOURCES = (SOURCE_NVML, SOURCE_DCGM, SOURCE_AGENT, SOURCE_SIMULATED)

# Errors that mean "this device does not offer this field", not "something is wrong".
ABSENT_ERRORS: tuple[type[Exception], ...] = (
    pynvml.NVMLError_NotSupported,
    pynvml.NVMLError_FunctionNotFound,
    pynvml.NVMLError_NoPermission,
    pynvml.NVMLError_NoData,
)
# Errors after which the NVML session cannot be trusted: shut down and init again next cycle.
LIFECYCLE_ERRORS: tuple[type[Exception], ...] = (
    pynvml.NVMLError_GpuIsLost,
    pynvml.NVMLError_DriverNotLoaded,
    pynvml.NVMLError_Uninitialized,
    pynvml.NVMLError_LibraryNotFound,
    pynvml.NVMLError_ResetRequired,
    pynvml.NVMLError_LibRmVersionMismatch,
    pynvml.NVMLError_GpuNotFound,
    pynvml.NVMLError_Unknown,
)
LOST_ERRORS: tuple[type[Exception], ...] = (pynvml.NVMLError_GpuIsLost, pynvml.NVMLError_GpuNotFound)

MIB = 1024 * 1024


def reason_of(exc: BaseException) -> str:
    """`NVMLError_NotSupported: Not Supported` — the class tells the kind, the text the detail."""
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class MigReading:
    """One MIG device (a slice of a GPU). `compute_slices` is out of 7 on A100/H100."""

    uuid: str
    profile: str
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    compute_slices: int | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one instant. None means NVML did not give the field; `unsupported` says why.

    `energy_mj` is NVML's total-energy counter: millijoules since the driver was loaded (Volta+).
    """

    uuid: str
    index: int
    ts: dt.datetime
    name: str = ""
    serial: str | None = None
    pci_bus_id: str | None = None
    util_pct: int | None = None
    memory_util_pct: int | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_w: float | None = None
    energy_mj: int | None = None
    temperature_c: int | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    throttle_reasons: int | None = None
    ecc_uncorrected_errors: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    row_remap_failure: bool | None = None
    mig_mode: bool | None = None
    mig_devices: tuple[MigReading, ...] = ()
    unsupported: tuple[tuple[str, str], ...] = ()

    @property
    def absent(self) -> dict[str, str]:
        """field → reason, for every field NVML did not give."""
        return dict(self.unsupported)


@dataclass(frozen=True)
class GpuFault:
    """A GPU that could not be read this cycle. `uuid` is None when even the handle failed."""

    index: int
    reason: str
    uuid: str | None = None
    lost: bool = False


@dataclass(frozen=True)
class NodeReading:
    """One collection cycle of one node. `error` set means nothing could be read (NVML unavailable)."""

    hostname: str
    ts: dt.datetime
    source: str = SOURCE_NVML
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: tuple[GpuReading, ...] = ()
    faults: tuple[GpuFault, ...] = ()
    error: str | None = None
    # True when gpus + faults cover every GPU the node has, so a missing known GPU is really gone.
    complete: bool = True


class GpuReader(Protocol):
    """What a poller needs: one cycle in, one NodeReading out. Fakes and the demo simulator fit it."""

    def read(self) -> NodeReading: ...


class NvmlUnavailable(Exception):
    """NVML cannot be initialised here (no driver, no library)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cuda_version_text(value: int) -> str:
    """NVML gives the CUDA driver version as 12040 → "12.4"."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlReader:
    """The real reader over `pynvml` (or any object with the same functions, e.g. a test fake)."""

    def __init__(self, nvml: Any = pynvml, *, hostname: str | None = None,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.nvml = nvml
        self.hostname = hostname or socket.gethostname()
        self.clock = clock
        self.initialized = False
        self.needs_reinit = False
        self.init_count = 0
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------
    def _ensure_init(self) -> None:
        if self.initialized and self.needs_reinit:
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError:
                pass  # the session is already broken; init below decides whether NVML is back
            self.initialized = False
        if not self.initialized:
            self.nvml.nvmlInit()
            self.initialized = True
            self.needs_reinit = False
            self.init_count += 1

    def shutdown(self) -> None:
        with self._lock:
            if self.initialized:
                try:
                    self.nvml.nvmlShutdown()
                except self.nvml.NVMLError:
                    pass
                self.initialized = False

    # -- one cycle -------------------------------------------------------------------------------
    def read(self) -> NodeReading:
        with self._lock:
            return self._read()

    def _read(self) -> NodeReading:
        now = self.clock()
        try:
            self._ensure_init()
        except self.nvml.NVMLError as exc:
            self.initialized = False
            return NodeReading(hostname=self.hostname, ts=now, error=f"NVML unavailable: {reason_of(exc)}",
                               complete=False)
        try:
            driver = self._optional(self.nvml.nvmlSystemGetDriverVersion, {}, "driver_version")
            cuda = self._optional(self.nvml.nvmlSystemGetCudaDriverVersion, {}, "cuda_driver_version")
            count = self.nvml.nvmlDeviceGetCount()
        except self.nvml.NVMLError as exc:
            # The session broke under us (driver unloaded, GPU fell off the bus): nothing readable this cycle.
            self.needs_reinit = True
            return NodeReading(hostname=self.hostname, ts=now, error=f"NVML failed: {reason_of(exc)}",
                               complete=False)
        gpus: list[GpuReading] = []
        faults: list[GpuFault] = []
        for index in range(count):
            uuid = None
            try:
                handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(self.nvml.nvmlDeviceGetUUID(handle))
                gpus.append(self._read_gpu(handle, index, uuid, now))
            except self.nvml.NVMLError as exc:
                if isinstance(exc, LIFECYCLE_ERRORS):
                    self.needs_reinit = True
                faults.append(GpuFault(index=index, uuid=uuid, reason=reason_of(exc),
                                       lost=isinstance(exc, LOST_ERRORS)))
        return NodeReading(
            hostname=self.hostname, ts=now, driver_version=_text(driver) if driver is not None else None,
            cuda_driver_version=cuda_version_text(cuda) if cuda is not None else None,
            gpus=tuple(gpus), faults=tuple(faults),
        )

    def _optional(self, fn: Callable[..., Any], absent: dict[str, str], name: str, *args: Any) -> Any:
        """Call an NVML getter; a field the device does not offer becomes None with its reason."""
        try:
            return fn(*args)
        except ABSENT_ERRORS as exc:
            absent[name] = reason_of(exc)
            return None

    def _read_gpu(self, handle: Any, index: int, uuid: str, now: dt.datetime) -> GpuReading:
        nv = self.nvml
        absent: dict[str, str] = {}
        get = self._optional
        values: dict[str, Any] = {}
        values["index"] = get(nv.nvmlDeviceGetIndex, absent, "index", handle)
        values["name"] = _text(get(nv.nvmlDeviceGetName, absent, "name", handle) or "")
        serial = get(nv.nvmlDeviceGetSerial, absent, "serial", handle)
        values["serial"] = _text(serial) if serial is not None else None
        pci = get(nv.nvmlDeviceGetPciInfo, absent, "pci_bus_id", handle)
        values["pci_bus_id"] = _text(pci.busId) if pci is not None else None

        util = get(nv.nvmlDeviceGetUtilizationRates, absent, "util_pct", handle)
        if util is None:
            absent["memory_util_pct"] = absent["util_pct"]
        values["util_pct"] = int(util.gpu) if util is not None else None
        values["memory_util_pct"] = int(util.memory) if util is not None else None
        memory = get(nv.nvmlDeviceGetMemoryInfo, absent, "memory_used_bytes", handle)
        if memory is None:
            absent["memory_total_bytes"] = absent["memory_used_bytes"]
        values["memory_used_bytes"] = int(memory.used) if memory is not None else None
        values["memory_total_bytes"] = int(memory.total) if memory is not None else None
        power_mw = get(nv.nvmlDeviceGetPowerUsage, absent, "power_w", handle)
        values["power_w"] = power_mw / 1000.0 if power_mw is not None else None
        energy = get(nv.nvmlDeviceGetTotalEnergyConsumption, absent, "energy_mj", handle)
        values["energy_mj"] = int(energy) if energy is not None else None
        values["temperature_c"] = get(nv.nvmlDeviceGetTemperature, absent, "temperature_c", handle,
                                      nv.NVML_TEMPERATURE_GPU)
        values["sm_clock_mhz"] = get(nv.nvmlDeviceGetClockInfo, absent, "sm_clock_mhz", handle, nv.NVML_CLOCK_SM)
        values["mem_clock_mhz"] = get(nv.nvmlDeviceGetClockInfo, absent, "mem_clock_mhz", handle, nv.NVML_CLOCK_MEM)
        values["throttle_reasons"] = self._throttle_reasons(handle, absent)
        values["ecc_uncorrected_errors"] = get(
            nv.nvmlDeviceGetTotalEccErrors, absent, "ecc_uncorrected_errors", handle,
            nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
        pending = get(nv.nvmlDeviceGetRetiredPagesPendingStatus, absent, "retired_pages_pending", handle)
        values["retired_pages_pending"] = bool(pending) if pending is not None else None
        rows = get(nv.nvmlDeviceGetRemappedRows, absent, "remapped_rows_uncorrectable", handle)
        if rows is None:
            absent["remapped_rows_correctable"] = absent["row_remap_failure"] = absent["remapped_rows_uncorrectable"]
            values.update(remapped_rows_correctable=None, remapped_rows_uncorrectable=None, row_remap_failure=None)
        else:
            values.update(remapped_rows_correctable=int(rows[0]), remapped_rows_uncorrectable=int(rows[1]),
                          row_remap_failure=bool(rows[3]))
        mig = get(nv.nvmlDeviceGetMigMode, absent, "mig_mode", handle)
        values["mig_mode"] = bool(mig[0] == nv.NVML_DEVICE_MIG_ENABLE) if mig is not None else None
        values["mig_devices"] = self._mig_devices(handle) if values["mig_mode"] else ()
        if values["index"] is None:
            values["index"] = index
        return GpuReading(uuid=uuid, ts=now, unsupported=tuple(sorted(absent.items())), **values)

    def _throttle_reasons(self, handle: Any, absent: dict[str, str]) -> int | None:
        # "Clocks event reasons" is the new name (driver 535+); older drivers only have the throttle one.
        try:
            return int(self.nvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
        except (pynvml.NVMLError_FunctionNotFound, AttributeError):
            return self._optional(self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons, absent, "throttle_reasons",
                                  handle)
        except ABSENT_ERRORS as exc:
            absent["throttle_reasons"] = reason_of(exc)
            return None

    def _mig_devices(self, handle: Any) -> tuple[MigReading, ...]:
        nv = self.nvml
        devices: list[MigReading] = []
        count = self._optional(nv.nvmlDeviceGetMaxMigDeviceCount, {}, "mig", handle) or 0
        for slot in range(count):
            try:
                mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except pynvml.NVMLError_NotFound:
                continue  # an empty slot
            except ABSENT_ERRORS:
                continue
            scratch: dict[str, str] = {}
            attrs = self._optional(nv.nvmlDeviceGetAttributes, scratch, "attrs", mig)
            memory = self._optional(nv.nvmlDeviceGetMemoryInfo, scratch, "memory", mig)
            slices = int(attrs.gpuInstanceSliceCount) if attrs is not None else None
            memory_mb = int(attrs.memorySizeMB) if attrs is not None else None
            profile = f"{slices}g.{round(memory_mb / 1024)}gb" if slices and memory_mb else "unknown"
            devices.append(MigReading(
                uuid=_text(nv.nvmlDeviceGetUUID(mig)),
                profile=profile,
                gpu_instance_id=self._optional(nv.nvmlDeviceGetGpuInstanceId, scratch, "gi", mig),
                compute_instance_id=self._optional(nv.nvmlDeviceGetComputeInstanceId, scratch, "ci", mig),
                compute_slices=slices,
                memory_used_bytes=int(memory.used) if memory is not None else None,
                memory_total_bytes=int(memory.total) if memory is not None else None,
            ))
        return tuple(devices)


# -- one reader per worker process ---------------------------------------------------------------
_reader: GpuReader | None = None
_reader_lock = threading.Lock()


def _reader_from_env() -> GpuReader | None:
    """`GPU_READER_FACTORY=package.module:callable` swaps in a simulator (demo, end-to-end tests)."""
    spec = os.environ.get("GPU_READER_FACTORY", "")
    if not spec:
        return None
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)()


def get_reader() -> GpuReader:
    """This process's reader, created on first use (never at import in a forking parent)."""
    global _reader
    with _reader_lock:
        if _reader is None:
            _reader = _reader_from_env() or NvmlReader()
        return _reader


def set_reader(reader: GpuReader | None) -> None:
    global _reader
    with _reader_lock:
        _reader = reader


def reset_reader() -> None:
    """Forget the reader (after fork, each child initialises NVML itself)."""
    set_reader(None)


# -- wire format (Celery messages, push API) -----------------------------------------------------
def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def reading_to_dict(reading: NodeReading) -> dict[str, Any]:
    """A JSON-able dict; `reading_from_dict` gives back an equal NodeReading."""
    def gpu(g: GpuReading) -> dict[str, Any]:
        out = {f.name: getattr(g, f.name) for f in fields(g) if f.name not in {"ts", "mig_devices", "unsupported"}}
        out["mig_devices"] = [{f.name: getattr(m, f.name) for f in fields(m)} for m in g.mig_devices]
        out["unsupported"] = dict(g.unsupported)
        return out

    return {
        "hostname": reading.hostname, "ts": _iso(reading.ts), "source": reading.source,
        "driver_version": reading.driver_version, "cuda_driver_version": reading.cuda_driver_version,
        "gpus": [gpu(g) for g in reading.gpus],
        "faults": [{f.name: getattr(x, f.name) for f in fields(x)} for x in reading.faults],
        "error": reading.error, "complete": reading.complete,
    }


_GPU_FIELDS = {f.name for f in fields(GpuReading)}
_MIG_FIELDS = {f.name for f in fields(MigReading)}
_FAULT_FIELDS = {f.name for f in fields(GpuFault)}


def reading_from_dict(data: dict[str, Any]) -> NodeReading:
    """Inverse of `reading_to_dict`. Expects validated data (the push API validates first)."""
    ts = data["ts"] if isinstance(data["ts"], dt.datetime) else dt.datetime.fromisoformat(data["ts"])

    def gpu(g: dict[str, Any]) -> GpuReading:
        values = {k: v for k, v in g.items() if k in _GPU_FIELDS and k not in {"mig_devices", "unsupported", "ts"}}
        migs = tuple(MigReading(**{k: v for k, v in m.items() if k in _MIG_FIELDS}) for m in g.get("mig_devices") or ())
        unsupported = tuple(sorted((str(k), str(v)) for k, v in (g.get("unsupported") or {}).items()))
        return GpuReading(ts=ts, mig_devices=migs, unsupported=unsupported, **values)

    return NodeReading(
        hostname=data.get("hostname") or "", ts=ts, source=data.get("source") or SOURCE_NVML,
        driver_version=data.get("driver_version"), cuda_driver_version=data.get("cuda_driver_version"),
        gpus=tuple(gpu(g) for g in data.get("gpus") or ()),
        faults=tuple(GpuFault(**{k: v for k, v in f.items() if k in _FAULT_FIELDS}) for f in data.get("faults") or ()),
        error=data.get("error"), complete=bool(data.get("complete", True)),
    )


def probe_dict(reading: NodeReading) -> dict[str, Any]:
    """The `nvml_probe --json` shape of issue 3 (null for what the GPU does not support)."""
    def gpu(g: GpuReading) -> dict[str, Any]:
        return {
            "uuid": g.uuid, "index": g.index, "name": g.name, "util_pct": g.util_pct,
            "memory_used_bytes": g.memory_used_bytes, "memory_total_bytes": g.memory_total_bytes,
            "power_w": g.power_w, "energy_j": g.energy_mj / 1000 if g.energy_mj is not None else None,
            "temperature_c": g.temperature_c, "sm_clock_mhz": g.sm_clock_mhz, "mig_mode": g.mig_mode,
            "mig_devices": [{"uuid": m.uuid, "profile": m.profile, "memory_total_bytes": m.memory_total_bytes,
                             "memory_used_bytes": m.memory_used_bytes} for m in g.mig_devices],
        }

    return {"driver_version": reading.driver_version, "cuda_driver_version": reading.cuda_driver_version,
            "gpus": [gpu(g) for g in reading.gpus]}


__all__ = [
    "GpuFault", "GpuReader", "GpuReading", "MigReading", "NodeReading", "NvmlReader", "NvmlUnavailable",
    "get_reader", "probe_dict", "reading_from_dict", "reading_to_dict", "reset_reader", "set_reader",
]
