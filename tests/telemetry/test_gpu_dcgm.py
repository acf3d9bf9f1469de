"""dcgm-exporter collector: the shared fixture pages, a real exporter-like server on loopback, the poll task."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.collectors.dcgm import FIELDS, DcgmError, parse_dcgm, read_dcgm
from telemetry.models import GpuSample
from tests.telemetry.gpu_support import T0

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "dcgm"
T4_PAGE = FIXTURES / "dcgm-exporter-2.x-tesla-t4-datadog-capture-excerpt.prom"
needs_fixtures = pytest.mark.skipif(not T4_PAGE.exists(), reason="../shared/fixtures/dcgm is not present")

MIG_PAGE = """\
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-aaaa",modelName="NVIDIA A100-SXM4-80GB",Hostname="n1"} 210.5
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-aaaa",modelName="NVIDIA A100-SXM4-80GB",Hostname="n1"} 9007199
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-aaaa",GPU_I_PROFILE="3g.40gb",GPU_I_ID="1",Hostname="n1"} 1024
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-aaaa",GPU_I_PROFILE="4g.40gb",GPU_I_ID="2",Hostname="n1"} 2048
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-aaaa",GPU_I_PROFILE="3g.40gb",GPU_I_ID="1",Hostname="n1"} 39936
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-aaaa",GPU_I_PROFILE="4g.40gb",GPU_I_ID="2",Hostname="n1"} 38912
"""


@needs_fixtures
def test_the_t4_capture_maps_to_a_reading() -> None:
    # given
    text = T4_PAGE.read_text()
    # when
    reading = parse_dcgm(text, ts=T0)
    # then
    assert reading.source == "dcgm" and reading.hostname == "424773df46e0"
    assert reading.driver_version == "460.106.00"
    (gpu,) = reading.gpus
    assert (gpu.uuid, gpu.index, gpu.name) == ("GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e", 0, "Tesla T4")
    assert (gpu.util_pct, gpu.power_w, gpu.energy_mj, gpu.temperature_c) == (0, 8.969, 128996013, 25)
    assert (gpu.sm_clock_mhz, gpu.mem_clock_mhz, gpu.memory_used_bytes) == (300, 405, 0)
    assert gpu.memory_total_bytes == 15109 * 1024 * 1024
    # not on the page: absent with the reason, never 0
    assert gpu.ecc_uncorrected_errors is None
    assert gpu.absent["ecc_uncorrected_errors"] == "not exported by dcgm-exporter"


@needs_fixtures
def test_the_default_counters_we_map_are_the_exporters_names() -> None:
    # given
    csv = (FIXTURES / "dcgm-exporter-default-counters.csv").read_text()
    enabled = {line.split(",")[0].strip() for line in csv.splitlines() if line.strip() and not line.startswith("#")}
    # when
    mapped_and_default = enabled & set(FIELDS)
    # then: utilization, memory, power, energy, temperature and clocks of the default set are all read
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"} <= mapped_and_default


def test_mig_instances_become_mig_devices_of_their_gpu() -> None:
    # given / when
    reading = parse_dcgm(MIG_PAGE, ts=T0)
    # then
    (gpu,) = reading.gpus
    assert gpu.power_w == 210.5 and gpu.energy_mj == 9007199 and gpu.mig_mode is True
    assert [(m.uuid, m.profile, m.memory_used_bytes, m.memory_total_bytes) for m in gpu.mig_devices] == [
        ("MIG-aaaa/gi1", "3g.40gb", 1024 * 1024 * 1024, 40960 * 1024 * 1024),
        ("MIG-aaaa/gi2", "4g.40gb", 2048 * 1024 * 1024, 40960 * 1024 * 1024),
    ]
    assert gpu.memory_used_bytes is None and "memory_used_bytes" in gpu.absent


def test_a_page_without_dcgm_series_is_an_error() -> None:
    # when / then
    with pytest.raises(DcgmError, match="no DCGM_FI_DEV"):
        parse_dcgm("# TYPE up gauge\nup 1\n", ts=T0)


class _Exporter(http.server.BaseHTTPRequestHandler):
    body = b""
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[type[_Exporter]]:
    handler = type("Handler", (_Exporter,), {"body": MIG_PAGE.encode(), "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def test_reading_a_real_exporter_over_loopback(exporter) -> None:
    # when
    reading = read_dcgm(exporter.url, ts=T0, hostname="n1")
    # then
    assert reading.error is None and reading.gpus[0].uuid == "GPU-aaaa"


def test_an_exporter_that_fails_gives_an_error_reading_not_an_exception(exporter) -> None:
    # given
    exporter.status = 503
    # when
    reading = read_dcgm(exporter.url, ts=T0)
    closed = read_dcgm("http://127.0.0.1:9/metrics", ts=T0, timeout_s=1)
    # then
    assert reading.error == "dcgm-exporter answered HTTP 503" and reading.gpus == ()
    assert closed.error.startswith("dcgm-exporter unreachable")


@pytest.mark.django_db
def test_the_dcgm_poll_task_stores_samples_for_the_node(world, exporter, django_capture_on_commit_callbacks) -> None:
    # given
    from telemetry.gpu_services import node_gpu_collector_set
    from telemetry.tasks.gpu import gpu_dcgm_poll_task

    node_gpu_collector_set(node=world.node_a, mode="dcgm", dcgm_url=exporter.url)
    # when
    for _ in range(2):
        gpu_dcgm_poll_task.delay(world.node_a.pk)
    # then
    samples = GpuSample.objects.filter(gpu__uuid="GPU-aaaa")
    assert samples.count() == 2 and {s.source for s in samples} == {"dcgm"}
    assert all(s.energy_mj == 9007199 for s in samples)
    assert dt.timedelta(0) < samples[1].ts - samples[0].ts
