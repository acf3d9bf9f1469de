"""Batched ingest: many queued node reports in one transaction and one COPY (`gpu_reports_ingest`, and
`gpu_report_ingest_task`, which drains the ingest queue behind its own report). Every rule of the one-report
path holds per report; a bad report is refused alone; the order received decides, as one by one."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sites.choices import GpuStatus, NodeStatus
from sites.models import Gpu, MigDevice, Node
from telemetry.collectors.nvml import reading_to_dict
from telemetry.gpu_services import QueuedReport, gpu_report_ingest, gpu_reports_ingest
from telemetry.models import GpuSample
from telemetry.tasks.gpu import gpu_report_ingest_task
from tests.telemetry.fake_pynvml import a100_mig, h100
from tests.telemetry.gpu_support import T0, Rig, frozen_after_t0, queued  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_after_t0")]


def cycles(rig: Rig, count: int) -> list:
    out = []
    for _ in range(count):
        out.append(rig.read())
        rig.tick(10)
    return out


def inventory(node: Node, *, but: Gpu) -> dict:
    """The node's state and each GPU's, by index (comparable across nodes with different UUIDs)."""
    node.refresh_from_db()
    gpus = {g.index: (g.status, g.last_seen_at, g.last_error, g.driver_version, g.mig_mode, g.last_util_pct,
                      g.last_power_w)
            for g in Gpu.objects.filter(node=node).exclude(pk=but.pk)}
    return {"node": (node.status, node.last_seen_at, node.last_error, node.driver_version), "gpus": gpus}


def test_a_batch_stores_every_report_with_one_copy(world) -> None:
    # given: two nodes that already reported once, then three cycles each
    rig_a, rig_b = Rig([h100(0), h100(1)]), Rig([h100(2, uuid="GPU-b-2"), h100(3, uuid="GPU-b-3")], hostname="node-b")
    gpu_reports_ingest(reports=queued(world.node_a, rig_a.read()) + queued(world.node_b, rig_b.read()))
    rig_a.tick(10)
    rig_b.tick(10)
    batch = []
    for _ in range(3):
        batch += queued(world.node_a, rig_a.read()) + queued(world.node_b, rig_b.read())
        rig_a.tick(10)
        rig_b.tick(10)
    # when
    result = gpu_reports_ingest(reports=batch)
    # then
    assert (result.reports, result.samples_written, result.synced_one_by_one, result.refused) == (6, 12, 0, ())
    assert GpuSample.objects.count() == 16
    world.node_a.refresh_from_db()
    assert world.node_a.last_seen_at == T0 + dt.timedelta(seconds=30) and world.node_a.status == NodeStatus.ONLINE
    assert set(Gpu.objects.filter(uuid__in=["GPU-b-2", "GPU-b-3"]).values_list("last_seen_at", flat=True)) == {
        T0 + dt.timedelta(seconds=30)}


def test_a_batch_replayed_twice_is_stored_once(world) -> None:
    # given
    batch = queued(world.node_a, *cycles(Rig([h100(0), h100(1)]), 4))
    # when
    first = gpu_reports_ingest(reports=batch)
    second = gpu_reports_ingest(reports=batch)
    inside = gpu_reports_ingest(reports=batch[2:] + batch[:3])  # and duplicates inside one batch
    # then
    assert (first.samples_written, second.samples_written, inside.samples_written) == (8, 0, 0)
    assert GpuSample.objects.count() == 8
    world.node_a.refresh_from_db()
    assert world.node_a.last_seen_at == T0 + dt.timedelta(seconds=30)


def test_the_task_twice_stores_once(world) -> None:
    # given
    report = Rig([h100(0)]).read()
    # when
    first = gpu_report_ingest_task.delay(world.node_a.pk, reading_to_dict(report)).get()
    second = gpu_report_ingest_task.delay(world.node_a.pk, reading_to_dict(report)).get()
    # then
    assert (first["samples_written"], second["samples_written"]) == (1, 0)
    assert first["reports"] == 1 and first["refused"] == [] and GpuSample.objects.count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite stores an out-of-range smallint")
def test_one_bad_report_in_a_batch_loses_none_of_the_others(world) -> None:
    # given: good reports of two nodes around a report naming node B's GPU, a malformed payload, an unknown
    # node, and a reading the table refuses (utilization out of the smallint range)
    rig_a, rig_b = Rig([h100(0), h100(1)]), Rig([h100(2, uuid="GPU-b-2")], hostname="node-b")
    gpu_report_ingest(node_id=world.node_b.pk, report=rig_b.read())
    rig_b.tick(10)
    good_a, good_b = rig_a.read(), rig_b.read()
    rig_b.tick(10)
    broken = rig_b.read()
    broken = dataclasses.replace(broken, gpus=(dataclasses.replace(broken.gpus[0], util_pct=100_000),))
    thief = Rig([h100(5), h100(6, uuid="GPU-b-2")], hostname="node-a", start=T0 + dt.timedelta(seconds=5)).read()
    batch = [*queued(world.node_a, good_a), *queued(world.node_a, thief),
             QueuedReport(node_id=world.node_a.pk, payload={"gpus": "not a list", "hostname": "node-a"}),
             QueuedReport(node_id=999_999, payload=reading_to_dict(good_a)),
             *queued(world.node_b, broken), *queued(world.node_b, good_b)]
    # when
    result = gpu_reports_ingest(reports=batch)
    # then
    assert result.reports == 6 and len(result.refused) == 4, result.refused
    assert GpuSample.objects.filter(gpu__node=world.node_a).count() == 2  # good_a
    assert GpuSample.objects.filter(gpu__uuid="GPU-b-2").count() == 2  # first report + good_b
    assert not Gpu.objects.filter(uuid=h100(5).uuid).exists()  # the refused report created nothing
    assert Gpu.objects.get(uuid="GPU-b-2").node_id == world.node_b.pk
    world.node_a.refresh_from_db()
    assert "registered on another node" in world.node_a.last_error
    assert any("999999 does not exist" in r for r in result.refused)
    assert any("malformed" in r for r in result.refused)


def test_an_older_report_later_in_the_batch_does_not_roll_the_inventory_back(world) -> None:
    # given: a cycle with two GPUs, then one where GPU 1 has gone; the batch carries the new one first
    rig = Rig([h100(0), h100(1)])
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    rig.tick(10)
    old = rig.read()
    rig.tick(10)
    rig.nvml.gpus.pop(1)
    new = rig.read()
    # when
    gpu_reports_ingest(reports=queued(world.node_a, new, old))
    # then: the old report's samples are stored, its inventory is not applied
    assert Gpu.objects.get(uuid=h100(1).uuid).status == GpuStatus.LOST
    world.node_a.refresh_from_db()
    assert world.node_a.last_seen_at == new.ts and GpuSample.objects.count() == 5


def test_a_batch_ends_where_the_same_reports_one_by_one_end(world) -> None:
    # given: the same story on two nodes: steady cycles, a fault, a GPU lost and back, a new GPU, a driver
    # update, MIG devices, a late replay
    def story(hostname: str, prefix: str) -> list:
        rig = Rig([h100(0, uuid=f"GPU-{prefix}-0"), h100(1, uuid=f"GPU-{prefix}-1"),
                   a100_mig(2, uuid=f"GPU-{prefix}-2")], hostname=hostname)
        reports = cycles(rig, 2)
        rig.nvml.lose(1)
        reports += cycles(rig, 2)
        rig.nvml.gpus[1].lost = False
        rig.nvml.gpus.append(h100(3, uuid=f"GPU-{prefix}-3"))
        reports += cycles(rig, 2)
        reports.append(dataclasses.replace(rig.read(), driver_version="575.51.03"))
        rig.tick(10)
        reports += cycles(rig, 2)
        return [*reports, reports[3], reports[0]]

    one_by_one, batched = story("node-a", "A"), story("node-b", "B")
    # when
    for report in one_by_one:
        gpu_report_ingest(node_id=world.node_a.pk, report=report)
    result = gpu_reports_ingest(reports=queued(world.node_b, *batched))
    # then
    assert inventory(world.node_a, but=world.gpu_a) == inventory(world.node_b, but=world.gpu_b)
    assert result.refused == () and result.samples_written == GpuSample.objects.filter(gpu__node=world.node_a).count()
    assert sorted(MigDevice.objects.filter(gpu__node=world.node_b).values_list("profile", "last_seen_at")) == sorted(
        MigDevice.objects.filter(gpu__node=world.node_a).values_list("profile", "last_seen_at"))


def test_steady_reports_cost_the_same_statements_for_5_or_50_reports(world) -> None:
    # given: nodes whose inventory is known; then 5 and 50 further cycles
    nodes = [Node.objects.create(site=world.site_a, hostname=f"batch-{i:02d}") for i in range(10)]
    rigs = [Rig([h100(k, uuid=f"GPU-n{i}-{k}") for k in range(8)], hostname=n.hostname) for i, n in enumerate(nodes)]
    gpu_reports_ingest(reports=[q for n, r in zip(nodes, rigs, strict=True) for q in queued(n, r.read())])

    def batch(count: int) -> list[QueuedReport]:
        out = []
        for _ in range(count // len(nodes)):
            for n, r in zip(nodes, rigs, strict=True):
                r.tick(10)
                out += queued(n, r.read())
        return out

    small, large = batch(5 * 2)[:5], batch(50)
    # when
    with CaptureQueriesContext(connection) as few:
        gpu_reports_ingest(reports=small)
    with CaptureQueriesContext(connection) as many:
        result = gpu_reports_ingest(reports=large)
    # then
    assert result.synced_one_by_one == 0 and result.samples_written == 400
    # (the partition check is among them: the test's transaction never commits, so it is not cached)
    # (one of them reads the nodes' recorded clock offsets, telemetry/clock.py)
    assert len(many.captured_queries) == len(few.captured_queries) <= 11, [q["sql"][:80] for q in many]
