"""`nvml_probe` and `gpu_agent` management commands."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from sites.models import Gpu
from telemetry.collectors import nvml as nvml_module
from telemetry.collectors.nvml import NvmlReader
from telemetry.gpu_services import node_agent_token_issue
from telemetry.models import GpuSample
from tests.telemetry.fake_pynvml import FakeNvml, a100_mig, h100, p100
from tests.telemetry.gpu_support import Rig

ROOT = Path(__file__).resolve().parents[2]
PROBE_GPU_KEYS = ["uuid", "index", "name", "util_pct", "memory_used_bytes", "memory_total_bytes", "power_w",
                  "energy_j", "temperature_c", "sm_clock_mhz", "mig_mode", "mig_devices"]


@pytest.fixture
def installed_reader():
    def install(reader) -> None:
        nvml_module.set_reader(reader)

    yield install
    nvml_module.reset_reader()


def test_probe_json_has_the_shape_of_the_issue_with_null_for_unsupported(installed_reader) -> None:
    # given
    installed_reader(Rig([h100(0), p100(1), a100_mig(2)]).reader)
    out = io.StringIO()
    # when
    call_command("nvml_probe", "--json", stdout=out)
    # then
    doc = json.loads(out.getvalue())
    assert list(doc) == ["driver_version", "cuda_driver_version", "gpus"]
    assert (doc["driver_version"], doc["cuda_driver_version"]) == ("570.133.20", "12.8")
    assert [list(g) for g in doc["gpus"]] == [PROBE_GPU_KEYS] * 3
    h, p, a = doc["gpus"]
    assert h["energy_j"] == 1000.0 and h["power_w"] == 400.0 and h["mig_mode"] is False
    assert p["energy_j"] is None and p["mig_mode"] is None
    assert a["util_pct"] is None and [m["profile"] for m in a["mig_devices"]] == ["3g.40gb", "4g.40gb"]


def test_probe_text_says_why_a_field_is_missing(installed_reader) -> None:
    # given
    installed_reader(Rig([p100(0)]).reader)
    out = io.StringIO()
    # when
    call_command("nvml_probe", stdout=out)
    # then
    assert "energy n/a (NVMLError_NotSupported: Not Supported)" in out.getvalue()


def test_probe_without_nvml_raises_a_one_line_command_error(installed_reader) -> None:
    # given
    installed_reader(NvmlReader(FakeNvml([], no_library=True), hostname="n"))
    # when / then
    with pytest.raises(CommandError, match="^NVML unavailable: NVMLError_LibraryNotFound"):
        call_command("nvml_probe", "--json")


def test_probe_on_this_gpu_less_machine_exits_non_zero_with_one_line() -> None:
    # given: the real pynvml, and no NVIDIA driver on this machine
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "factory_portal.settings_test"}
    env.pop("GPU_READER_FACTORY", None)
    # when
    proc = subprocess.run([sys.executable, "manage.py", "nvml_probe", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    # then
    assert proc.returncode != 0 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("CommandError: NVML unavailable: NVMLError_")


def test_the_agent_pushes_to_a_live_portal(transactional_db, world, live_server, installed_reader) -> None:
    # given
    token = node_agent_token_issue(node=world.node_a)
    installed_reader(NvmlReader(FakeNvml([h100(0), h100(1)]), hostname="node-a"))  # the real clock
    out = io.StringIO()
    # when
    call_command("gpu_agent", "--portal", live_server.url, "--token", token, "--cycles", "2", "--interval", "0.2",
                 stdout=out)
    # then
    assert GpuSample.objects.filter(gpu__node=world.node_a).count() == 4
    assert set(Gpu.objects.filter(node=world.node_a).values_list("uuid", flat=True)) >= {h100(0).uuid, h100(1).uuid}
    assert out.getvalue().count("pushed:") == 2


def test_the_agent_keeps_reports_it_could_not_deliver(installed_reader) -> None:
    # given: nothing listens on port 9 of loopback
    installed_reader(Rig([h100(0)], start=dt.datetime.now(dt.UTC)).reader)
    err = io.StringIO()
    # when / then
    with pytest.raises(CommandError, match="1 report"):
        call_command("gpu_agent", "--portal", "http://127.0.0.1:9", "--token", "fpn_x", "--once", "--timeout", "1",
                     stderr=err)
    assert "portal unreachable" in err.getvalue()


def test_the_agent_stops_on_a_refused_token(transactional_db, world, live_server, installed_reader) -> None:
    # given
    installed_reader(Rig([h100(0)], start=dt.datetime.now(dt.UTC)).reader)
    # when / then
    with pytest.raises(CommandError, match="refused the node token: HTTP 401"):
        call_command("gpu_agent", "--portal", live_server.url, "--token", "fpn_wrong", "--once")
