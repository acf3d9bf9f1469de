"""The NVML reader against a REAL GPU: runs only where NVML initialises (a GPU machine), skips elsewhere.

Everything else in the suite fakes the GPU at the `pynvml` boundary; these tests check that the fake tells the
truth about real hardware: the fields a real device gives, the reasons it gives for the ones it lacks, the units
(`nvidia-smi`, a separate reader of the same driver, agrees), and that a real report goes through the ingest.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pynvml
import pytest

from telemetry.collectors.nvml import ABSENT_ERRORS, NvmlReader, reading_from_dict, reading_to_dict


def _nvml_sees_a_gpu() -> str | None:
    """None when a GPU is readable here, else why the tests skip."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML is not available here ({type(exc).__name__}): these tests need a GPU machine"
    try:
        return None if pynvml.nvmlDeviceGetCount() > 0 else "NVML loads but sees no GPU"
    finally:
        pynvml.nvmlShutdown()


SKIP_REASON = _nvml_sees_a_gpu()
pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


@pytest.fixture
def reader():
    reader = NvmlReader(hostname="real-gpu-test")
    yield reader
    reader.shutdown()


def _smi(query: str) -> list[list[str]]:
    out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return [[cell.strip() for cell in line.split(",")] for line in out.strip().splitlines()]


def test_every_gpu_is_read_without_fault_and_its_values_are_in_range(reader) -> None:
    # when
    reading = reader.read()
    # then
    assert reading.error is None and reading.faults == () and reading.complete
    assert reading.driver_version and reading.cuda_driver_version.count(".") == 1
    assert len(reading.gpus) == pynvml.nvmlDeviceGetCount()
    for gpu in reading.gpus:
        assert gpu.uuid.startswith(("GPU-", "MIG-")) and gpu.name
        assert gpu.memory_total_bytes > 0 and 0 <= gpu.memory_used_bytes <= gpu.memory_total_bytes
        assert gpu.util_pct is None or 0 <= gpu.util_pct <= 100
        assert gpu.power_w is None or 0 < gpu.power_w < 2000  # W: no GPU draws more than 2 kW
        assert gpu.temperature_c is None or 0 < gpu.temperature_c < 120
        assert gpu.sm_clock_mhz is None or 0 < gpu.sm_clock_mhz < 5000
        # A field that is missing says which NVML error the device answered: one of the "absent" kinds.
        absent_kinds = {cls.__name__ for cls in ABSENT_ERRORS}
        for field_name, reason in gpu.absent.items():
            assert getattr(gpu, field_name) is None
            assert reason.split(":")[0] in absent_kinds, (field_name, reason)


def test_nvidia_smi_agrees_on_identity_and_memory(reader) -> None:
    # given
    if shutil.which("nvidia-smi") is None:
        pytest.skip("nvidia-smi is not installed here")
    # when
    reading = reader.read()
    smi = {row[0]: row for row in _smi("uuid,name,memory.total,driver_version")}
    # then
    for gpu in reading.gpus:
        uuid, name, memory_total_mib, driver = smi[gpu.uuid]
        assert name == gpu.name and driver == reading.driver_version
        assert int(memory_total_mib) == gpu.memory_total_bytes // (1024 * 1024)


def test_the_energy_counter_is_millijoules_and_agrees_with_the_power_reading(reader) -> None:
    # given: GPUs with an energy counter (Volta and later)
    first = reader.read()
    counted = [g for g in first.gpus if g.energy_mj is not None and g.power_w is not None]
    if not counted:
        pytest.skip("no GPU here has an energy counter")
    # when: about two seconds apart, power read along the way
    power_w: dict[str, list[float]] = {g.uuid: [] for g in counted}
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        for g in reader.read().gpus:
            if g.uuid in power_w and g.power_w is not None:
                power_w[g.uuid].append(g.power_w)
        time.sleep(0.05)
    last = {g.uuid: g for g in reader.read().gpus}
    elapsed_s = (last[counted[0].uuid].ts - first.ts).total_seconds()
    # then: counter delta (mJ → J) over the interval is the mean power times the time, to within the power
    # reading's averaging (NVML power is a ~1 s average; idle GPUs hold steady, so 35% is loose but not vacuous).
    for gpu in counted:
        energy_j = (last[gpu.uuid].energy_mj - gpu.energy_mj) / 1000
        mean_power_w = sum(power_w[gpu.uuid]) / len(power_w[gpu.uuid])
        assert energy_j > 0
        assert energy_j == pytest.approx(mean_power_w * elapsed_s, rel=0.35), (energy_j, mean_power_w, elapsed_s)


def test_a_real_report_survives_the_wire_format(reader) -> None:
    # given
    reading = reader.read()
    # when
    again = reading_from_dict(reading_to_dict(reading))
    # then
    assert again == reading


@pytest.mark.django_db
def test_a_real_report_is_ingested_as_the_node_inventory_and_samples(reader) -> None:
    # given
    from sites.models import Gpu
    from telemetry.gpu_services import gpu_report_ingest
    from telemetry.models import GpuSample
    from tests import factories

    node = factories.NodeFactory(hostname="real-gpu-test")
    reading = reader.read()
    # when
    gpu_report_ingest(node_id=node.pk, report=reading)
    # then
    gpus = {g.uuid: g for g in Gpu.objects.filter(node=node)}
    assert set(gpus) == {g.uuid for g in reading.gpus}
    for real in reading.gpus:
        stored = gpus[real.uuid]
        assert (stored.name, stored.memory_total_bytes, stored.driver_version) == (
            real.name, real.memory_total_bytes, reading.driver_version)
        assert stored.last_util_pct == real.util_pct and stored.last_power_w == real.power_w
        sample = GpuSample.objects.get(gpu=stored, ts=reading.ts)
        assert (sample.util_pct, sample.power_w, sample.energy_mj) == (real.util_pct, real.power_w, real.energy_mj)
