"""dcgm-exporter collector: a `/metrics` page in, the same `NodeReading` as the NVML reader out. No ORM.

Parsing uses `prometheus_client`'s text parser for now and fetching plain httpx; the project's fast
parser and SSRF-safe fetcher replace them later without changing `parse_dcgm`'s output.

dcgm-exporter labels each series with `gpu` (index), `UUID`, `modelName`, `Hostname`, and on MIG
devices `GPU_I_ID` / `GPU_I_PROFILE`. MIG series carry no MIG UUID, so MIG devices read this way are
named `MIG-<gpu uuid>/gi<id>`. A field the page does not export is None with the reason, never 0.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from telemetry.collectors.nvml import SOURCE_DCGM, GpuReading, MigReading, NodeReading

MIB = 1024 * 1024


def _int(v: float) -> int:
    return int(v)


def _mib(v: float) -> int:
    return int(v) * MIB


def _bool(v: float) -> bool:
    return bool(v)


# dcgm field → (GpuReading field, conversion). Two names for throttle reasons: DCGM renamed it.
FIELDS: dict[str, tuple[str, Callable[[float], Any]]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("util_pct", _int),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("memory_util_pct", _int),
    "DCGM_FI_DEV_FB_USED": ("memory_used_bytes", _mib),
    "DCGM_FI_DEV_POWER_USAGE": ("power_w", float),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_mj", _int),
    "DCGM_FI_DEV_GPU_TEMP": ("temperature_c", _int),
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", _int),
    "DCGM_FI_DEV_MEM_CLOCK": ("mem_clock_mhz", _int),
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": ("throttle_reasons", _int),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": ("throttle_reasons", _int),
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": ("ecc_uncorrected_errors", _int),
    "DCGM_FI_DEV_RETIRED_PENDING": ("retired_pages_pending", _bool),
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": ("remapped_rows_correctable", _int),
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": ("remapped_rows_uncorrectable", _int),
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": ("row_remap_failure", _bool),
}
READING_FIELDS = sorted({name for name, _ in FIELDS.values()} | {"memory_total_bytes"})
MEMORY_PARTS = ("DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED")


class DcgmError(Exception):
    """The exporter could not be read or its page makes no sense; the message says why."""


def parse_dcgm(text: str, *, ts: dt.datetime, hostname: str = "") -> NodeReading:
    """Turn one dcgm-exporter page into a NodeReading (one GpuReading per GPU UUID)."""
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise DcgmError(f"not a Prometheus text page: {exc}") from exc
    gpu_values: dict[str, dict[str, float]] = defaultdict(dict)
    gpu_labels: dict[str, dict[str, str]] = {}
    mig_values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    mig_profiles: dict[tuple[str, str], str] = {}
    for family in families:
        for sample in family.samples:
            # prometheus_client names counter samples `<family>_total`; the exporter does not.
            if sample.name not in (family.name, f"{family.name}_total"):
                continue
            name = family.name
            if name not in FIELDS and name not in MEMORY_PARTS:
                continue
            labels = sample.labels
            uuid = labels.get("UUID") or labels.get("uuid")
            if not uuid:
                continue
            instance = labels.get("GPU_I_ID")
            if instance not in (None, ""):
                mig_values[(uuid, instance)][name] = sample.value
                mig_profiles[(uuid, instance)] = labels.get("GPU_I_PROFILE", "")
                gpu_labels.setdefault(uuid, labels)
                continue
            gpu_values[uuid][name] = sample.value
            gpu_labels[uuid] = labels
    gpus: list[GpuReading] = []
    driver = None
    for uuid in sorted(gpu_labels, key=lambda u: int(gpu_labels[u].get("gpu", "0") or 0)):
        labels = gpu_labels[uuid]
        driver = driver or labels.get("DCGM_FI_DRIVER_VERSION")
        hostname = hostname or labels.get("Hostname", "")
        values: dict[str, Any] = {}
        absent: dict[str, str] = {}
        raw = gpu_values.get(uuid, {})
        for dcgm_name, (field, convert) in FIELDS.items():
            if dcgm_name in raw:
                values[field] = convert(raw[dcgm_name])
        if "DCGM_FI_DEV_FB_USED" in raw and "DCGM_FI_DEV_FB_FREE" in raw:
            values["memory_total_bytes"] = sum(_mib(raw[p]) for p in MEMORY_PARTS if p in raw)
        for field in READING_FIELDS:
            if field not in values:
                absent[field] = "not exported by dcgm-exporter"
        migs = tuple(
            MigReading(
                uuid=f"MIG-{uuid.removeprefix('GPU-')}/gi{gi}", profile=mig_profiles[(u, gi)] or "unknown",
                gpu_instance_id=int(gi) if gi.isdigit() else None,
                memory_used_bytes=_mib(v["DCGM_FI_DEV_FB_USED"]) if "DCGM_FI_DEV_FB_USED" in v else None,
                memory_total_bytes=(sum(_mib(v[p]) for p in MEMORY_PARTS if p in v)
                                    if "DCGM_FI_DEV_FB_FREE" in v and "DCGM_FI_DEV_FB_USED" in v else None),
            )
            for (u, gi), v in sorted(mig_values.items()) if u == uuid
        )
        gpus.append(GpuReading(
            uuid=uuid, index=int(labels.get("gpu", "0") or 0), ts=ts, name=labels.get("modelName", ""),
            pci_bus_id=labels.get("pci_bus_id") or None, mig_mode=True if migs else None, mig_devices=migs,
            unsupported=tuple(sorted(absent.items())), **values,
        ))
    if not gpus:
        raise DcgmError("the page has no DCGM_FI_DEV_* series with a UUID label")
    return NodeReading(hostname=hostname, ts=ts, source=SOURCE_DCGM, driver_version=driver, gpus=tuple(gpus))


def fetch_dcgm(url: str, *, timeout_s: float = 5.0, max_bytes: int = 20 * 1024 * 1024,
               client: httpx.Client | None = None) -> str:
    """GET the exporter page; any failure becomes a DcgmError with a reason a person can act on."""
    own = client is None
    client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
    try:
        with client.stream("GET", url, headers={"Accept": "text/plain"}) as response:
            if response.status_code != 200:
                raise DcgmError(f"dcgm-exporter answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise DcgmError(f"dcgm-exporter page larger than {max_bytes} bytes")
            return body.decode("utf-8", errors="replace")
    except httpx.TimeoutException as exc:
        raise DcgmError(f"dcgm-exporter timed out after {timeout_s:g} s") from exc
    except httpx.HTTPError as exc:
        raise DcgmError(f"dcgm-exporter unreachable: {exc}") from exc
    finally:
        if own:
            client.close()


def read_dcgm(url: str, *, ts: dt.datetime, hostname: str = "", timeout_s: float = 5.0) -> NodeReading:
    """Fetch and parse; an unreachable or garbled exporter gives a NodeReading with `error` set."""
    try:
        return parse_dcgm(fetch_dcgm(url, timeout_s=timeout_s), ts=ts, hostname=hostname)
    except DcgmError as exc:
        return NodeReading(hostname=hostname, ts=ts, source=SOURCE_DCGM, error=str(exc), complete=False)
