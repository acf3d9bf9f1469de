"""The NVML reader against the fake at the pynvml boundary (real pynvml.NVMLError_* classes)."""

from __future__ import annotations

import pynvml
import pytest

from telemetry.collectors import nvml as nvml_module
from telemetry.collectors.nvml import NvmlReader, reading_from_dict, reading_to_dict
from telemetry.tasks.gpu import _nvml_per_process
from tests.telemetry.fake_pynvml import FakeNvml, a100_mig, h100, p100
from tests.telemetry.gpu_support import Rig


def test_h100_reading_has_all_fields_and_the_energy_counter() -> None:
    # given
    rig = Rig([h100(0)])
    # when
    reading = rig.read()
    # then
    assert reading.error is None and reading.faults == ()
    assert reading.driver_version == "570.133.20" and reading.cuda_driver_version == "12.8"
    gpu = reading.gpus[0]
    assert gpu.uuid == "GPU-h100-0000-0000-0000-000000000000" and gpu.name == "NVIDIA H100 80GB HBM3"
    assert (gpu.util_pct, gpu.power_w, gpu.energy_mj, gpu.temperature_c) == (50, 400.0, 1_000_000, 40)
    assert (gpu.memory_total_bytes, gpu.sm_clock_mhz, gpu.mig_mode) == (85520809984, 1980, False)
    assert gpu.pci_bus_id == "00000000:18:00.0" and gpu.remapped_rows_uncorrectable == 0
    # Hopper has row remapping instead of page retirement: that one field is absent, with the reason.
    assert gpu.absent == {"retired_pages_pending": "NVMLError_NotSupported: Not Supported"}


def test_pre_volta_gpu_has_no_energy_counter_and_says_why_instead_of_zero() -> None:
    # given
    rig = Rig([p100(0)])
    # when
    gpu = rig.read().gpus[0]
    # then
    assert gpu.energy_mj is None
    assert gpu.absent["energy_mj"] == "NVMLError_NotSupported: Not Supported"
    assert gpu.mig_mode is None and "mig_mode" in gpu.absent
    assert gpu.power_w == 250.0 and gpu.retired_pages_pending is False


def test_mig_parent_has_no_utilization_and_its_mig_devices_are_enumerated() -> None:
    # given
    rig = Rig([a100_mig(0)])
    # when
    gpu = rig.read().gpus[0]
    # then
    assert gpu.util_pct is None and gpu.absent["util_pct"].startswith("NVMLError_NotSupported")
    assert gpu.mig_mode is True
    assert [(m.profile, m.compute_slices, m.gpu_instance_id) for m in gpu.mig_devices] == [
        ("3g.40gb", 3, 1), ("4g.40gb", 4, 2)]
    assert gpu.mig_devices[0].memory_total_bytes == 40960 * 1024 * 1024


def test_gpu_lost_mid_run_is_a_fault_and_nvml_is_reinitialised_next_cycle() -> None:
    # given
    rig = Rig([h100(0), h100(1)])
    assert len(rig.read().gpus) == 2
    # when
    rig.nvml.lose(1)
    lost_cycle = rig.read()
    next_cycle = rig.read()
    # then
    assert [g.index for g in lost_cycle.gpus] == [0]
    assert lost_cycle.faults[0].index == 1 and lost_cycle.faults[0].lost is True
    assert "GpuIsLost" in lost_cycle.faults[0].reason
    assert rig.reader.init_count == 2  # shut down and initialised again on the next cycle
    assert next_cycle.faults[0].lost is True


def test_driver_unloaded_gives_a_node_error_and_recovers_with_a_reset_counter() -> None:
    # given
    rig = Rig([h100(0)])
    rig.tick(10)
    before = rig.read().gpus[0].energy_mj
    # when
    rig.nvml.unload_driver()
    during = rig.read()
    rig.nvml.load_driver()
    rig.tick(10)
    after = rig.read()
    # then
    assert during.error is not None and "DriverNotLoaded" in during.error and during.gpus == ()
    assert after.error is None
    assert after.gpus[0].energy_mj == 4_000_000 < before  # 400 W × 10 s since the reload


def test_nvml_is_initialised_once_across_many_cycles() -> None:
    # given
    rig = Rig([h100(0)])
    # when
    for _ in range(5):
        rig.read()
    # then
    assert rig.nvml.init_calls == 1


def test_missing_library_is_a_node_error_not_an_exception() -> None:
    # given
    reader = NvmlReader(FakeNvml([], no_library=True), hostname="n")
    # when
    reading = reader.read()
    # then
    assert reading.error == "NVML unavailable: NVMLError_LibraryNotFound: NVML Shared Library Not Found"


def test_old_driver_without_clock_event_reasons_falls_back_to_throttle_reasons() -> None:
    # given
    rig = Rig([h100(0)])
    rig.nvml.gpus[0].throttle = 4
    rig.nvml.event_reasons_supported = False
    # when
    gpu = rig.read().gpus[0]
    # then
    assert gpu.throttle_reasons == 4 and "throttle_reasons" not in gpu.absent


def test_wire_format_round_trips() -> None:
    # given
    reading = Rig([h100(0), p100(1), a100_mig(2)]).read()
    # when
    back = reading_from_dict(reading_to_dict(reading))
    # then
    assert back == reading


def test_each_worker_process_gets_its_own_reader() -> None:
    # given
    nvml_module.set_reader(NvmlReader(FakeNvml([h100(0)]), hostname="parent"))
    parent = nvml_module.get_reader()
    # when
    _nvml_per_process()
    # then
    try:
        assert nvml_module._reader is None  # the child will create (and init) its own on first use
    finally:
        nvml_module.reset_reader()
    assert parent is not None


def test_the_real_pynvml_error_classes_are_used() -> None:
    # given
    rig = Rig([p100(0)])
    rig.read()
    # when / then
    with pytest.raises(pynvml.NVMLError_NotSupported):
        rig.nvml.nvmlDeviceGetTotalEnergyConsumption(rig.nvml.gpus[0])
