"""Ingest of node reports: inventory sync, raw samples via COPY / bulk_create, idempotency, staleness, retention."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import time_machine
from django.db import connection

from sites.choices import GpuStatus, NodeStatus
from sites.models import Gpu, MigDevice
from telemetry import retention
from telemetry.gpu_services import GpuOwnershipError, gpu_nodes_mark_stale, gpu_report_ingest
from telemetry.ingest import gpu_samples_write, gpu_samples_write_bulk_create, sample_row
from telemetry.models import GpuSample
from tests.telemetry.fake_pynvml import a100_mig, h100, p100
from tests.telemetry.gpu_support import T0, Rig

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        yield


def test_first_report_creates_the_inventory_and_stores_samples(world) -> None:
    # given
    report = Rig([h100(0), p100(1), a100_mig(2)]).read()
    # when
    result = gpu_report_ingest(node_id=world.node_a.pk, report=report)
    # then
    assert result.gpus_created == 3 and result.samples_written == 3
    gpus = {g.index: g for g in Gpu.objects.filter(node=world.node_a, uuid__in=[r.uuid for r in report.gpus])}
    assert gpus[0].name == "NVIDIA H100 80GB HBM3" and gpus[0].memory_total_bytes == 85520809984
    assert gpus[0].serial == "1650000000001" and gpus[0].driver_version == "570.133.20"
    assert gpus[0].cuda_driver_version == "12.8" and gpus[2].mig_mode is True
    assert sorted(MigDevice.objects.filter(gpu=gpus[2]).values_list("profile", flat=True)) == ["3g.40gb", "4g.40gb"]
    world.node_a.refresh_from_db()
    assert world.node_a.status == NodeStatus.ONLINE and world.node_a.last_seen_at == report.ts
    p100_sample = GpuSample.objects.get(gpu=gpus[1])
    assert p100_sample.energy_mj is None and p100_sample.power_w == 250.0
    assert p100_sample.unsupported["energy_mj"] == "NVMLError_NotSupported: Not Supported"
    assert GpuSample.objects.get(gpu=gpus[2]).util_pct is None


def test_the_same_report_twice_stores_once(world) -> None:
    # given
    rig = Rig([h100(0), h100(1)])
    report = rig.read()
    # when
    first = gpu_report_ingest(node_id=world.node_a.pk, report=report)
    second = gpu_report_ingest(node_id=world.node_a.pk, report=report)
    # then
    assert (first.samples_written, second.samples_written) == (2, 0)
    assert GpuSample.objects.count() == 2 and Gpu.objects.filter(node=world.node_a).count() == 3


@pytest.mark.parametrize("writer", [gpu_samples_write, gpu_samples_write_bulk_create], ids=["copy", "bulk_create"])
def test_overlapping_batches_store_each_row_once(world, writer) -> None:
    # given
    rig = Rig([h100(0)])
    readings = []
    for _ in range(4):
        readings.append(rig.read().gpus[0])
        rig.tick(10)
    rows = [sample_row(gpu_id=world.gpu_a.pk, reading=r, source="nvml") for r in readings]
    # when
    writer(rows=rows[:3])
    writer(rows=rows[1:])
    writer(rows=rows)
    # then
    assert list(GpuSample.objects.filter(gpu=world.gpu_a).values_list("energy_mj", flat=True)) == [
        r.energy_mj for r in readings]


def test_copy_text_survives_odd_characters_in_reasons(world) -> None:
    # given
    reading = dataclasses.replace(Rig([h100(0)]).read().gpus[0],
                                  unsupported=(("power_w", 'odd\ttab\nnewline \\ "quote"'),))
    # when
    gpu_samples_write(rows=[sample_row(gpu_id=world.gpu_a.pk, reading=reading, source="nvml")])
    # then
    assert GpuSample.objects.get(gpu=world.gpu_a).unsupported == {"power_w": 'odd\ttab\nnewline \\ "quote"'}


def test_a_gpu_that_disappears_is_flagged_lost_not_deleted(world) -> None:
    # given
    rig = Rig([h100(0), h100(1)])
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    rig.tick(10)
    # when: the GPU falls off the bus and NVML no longer lists it at all
    rig.nvml.gpus.pop(1)
    result = gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    # then
    gone = Gpu.objects.get(uuid=h100(1).uuid)
    assert gone.status == GpuStatus.LOST and "not reported" in gone.last_error
    assert Gpu.objects.get(uuid=h100(0).uuid).status == GpuStatus.OK
    assert result.gpus_lost == 1
    # the foundation's GPU on node-a was never in NVML's list: flagged by the first report
    assert Gpu.objects.get(pk=world.gpu_a.pk).status == GpuStatus.LOST
    assert GpuSample.objects.filter(gpu=gone).count() == 1


def test_gpu_lost_mid_run_is_flagged_and_recovers(world) -> None:
    # given
    rig = Rig([h100(0), h100(1)])
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    # when
    rig.nvml.lose(1)
    rig.tick(10)
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    lost = Gpu.objects.get(uuid=h100(1).uuid)
    rig.nvml.gpus[1].lost = False
    rig.tick(10)
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    # then
    assert lost.status == GpuStatus.LOST and "GpuIsLost" in lost.last_error
    assert Gpu.objects.get(uuid=h100(1).uuid).status == GpuStatus.OK


def test_a_report_naming_another_nodes_gpu_is_refused_whole(world) -> None:
    # given
    rig = Rig([h100(0, uuid=world.gpu_b.uuid), h100(1)])
    # when
    with pytest.raises(GpuOwnershipError):
        gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    # then
    assert GpuSample.objects.count() == 0 and not Gpu.objects.filter(uuid=h100(1).uuid).exists()


def test_an_older_report_stores_samples_but_does_not_roll_the_inventory_back(world) -> None:
    # given
    rig = Rig([h100(0), h100(1)])
    old = rig.read()
    rig.tick(10)
    rig.nvml.gpus.pop(1)
    new = rig.read()
    gpu_report_ingest(node_id=world.node_a.pk, report=old)
    gpu_report_ingest(node_id=world.node_a.pk, report=new)
    # when: the old report is delivered again (at-least-once)
    gpu_report_ingest(node_id=world.node_a.pk, report=old)
    # then
    assert Gpu.objects.get(uuid=h100(1).uuid).status == GpuStatus.LOST
    world.node_a.refresh_from_db()
    assert world.node_a.last_seen_at == new.ts and GpuSample.objects.count() == 3


def test_nvml_unavailable_marks_the_node_unhealthy_without_touching_gpus(world) -> None:
    # given
    rig = Rig([h100(0)])
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    rig.nvml.unload_driver()
    rig.tick(10)
    # when
    result = gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    # then
    world.node_a.refresh_from_db()
    assert result.node_status == NodeStatus.UNHEALTHY and "DriverNotLoaded" in world.node_a.last_error
    assert Gpu.objects.get(uuid=h100(0).uuid).status == GpuStatus.OK


def test_a_node_silent_for_three_intervals_goes_stale(world) -> None:
    # given: site A polls every 10 s; the node last reported at T0
    rig = Rig([h100(0)])
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    # when
    at_29s = gpu_nodes_mark_stale(now=T0 + dt.timedelta(seconds=29))
    at_31s = gpu_nodes_mark_stale(now=T0 + dt.timedelta(seconds=31))
    again = gpu_nodes_mark_stale(now=T0 + dt.timedelta(seconds=31))
    # then
    assert (at_29s, at_31s, again) == (0, 1, 0)
    world.node_a.refresh_from_db()
    assert world.node_a.status == NodeStatus.STALE
    # a report brings it back
    rig.tick(40)
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    world.node_a.refresh_from_db()
    assert world.node_a.status == NodeStatus.ONLINE


def test_samples_past_retention_are_refused(world) -> None:
    # given
    rig = Rig([h100(0)], start=T0 - dt.timedelta(days=8))
    # when
    result = gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    # then
    assert (result.samples_written, result.samples_refused) == (0, 1)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="day partitions exist on PostgreSQL only")
def test_retention_drops_whole_day_partitions_and_is_idempotent(world) -> None:
    # given: samples on four consecutive days, ending today
    now = T0 + dt.timedelta(minutes=30)
    rows = []
    for days_ago in (9, 8, 7, 0):
        reading = Rig([h100(0)], start=T0 - dt.timedelta(days=days_ago)).read().gpus[0]
        rows.append(sample_row(gpu_id=world.gpu_a.pk, reading=reading, source="nvml"))
    gpu_samples_write(rows=rows)
    assert GpuSample.objects.count() == 4
    # when
    first = retention.gpu_sample_retention_apply(now=now)
    second = retention.gpu_sample_retention_apply(now=now)
    # then: 7 days before 12:30 is inside the day 7 days ago, so that day stays; days 9 and 8 are dropped
    assert first["partitions_dropped"] == 2 and second["partitions_dropped"] == 0
    assert sorted(GpuSample.objects.values_list("ts", flat=True)) == [
        T0 - dt.timedelta(days=7), T0]
    days = retention.existing_partitions()
    assert (T0 - dt.timedelta(days=9)).date() not in days and T0.date() in days


@pytest.mark.skipif(connection.vendor != "postgresql", reason="day partitions exist on PostgreSQL only")
def test_a_stale_partition_cache_does_not_lose_a_batch(world) -> None:
    # given: the process believes today's partition exists, but it was dropped behind its back
    reading = Rig([h100(0)]).read().gpus[0]
    retention._remember({reading.ts.date()})
    # when
    written = gpu_samples_write(rows=[sample_row(gpu_id=world.gpu_a.pk, reading=reading, source="nvml")])
    # then
    assert written == 1 and GpuSample.objects.count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="day partitions exist on PostgreSQL only")
def test_partitions_are_created_ahead_once(db) -> None:
    # given
    retention.forget_known_partitions()
    today = T0.date()
    # when
    created = retention.gpu_sample_partitions_ensure_ahead(today=today)
    retention.forget_known_partitions()
    again = retention.gpu_sample_partitions_ensure_ahead(today=today)
    # then
    assert len(created) == 5 and again == []
    assert {today + dt.timedelta(days=n) for n in range(-1, 4)} <= set(retention.existing_partitions())
    with connection.cursor() as cursor:
        cursor.execute("SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'telemetry_gpusample_ts_brin'")
        assert cursor.fetchone() == ("brin",)
