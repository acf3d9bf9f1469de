"""The latest reading on the GPU row (`Gpu.last_util_pct`, `last_power_w`), kept by the ingest in the UPDATE that
sets `last_seen_at`: equal to the GPU's newest raw sample on both ingest paths (set-based steady nodes, one by one
for changed inventories), NULL when the reading lacked the field (never 0), never rolled back by an older report,
and the live cards' figures read from it equal the raw samples aggregated row by row."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.db import connection

from sites.models import Gpu, Node
from telemetry import gpu_selectors
from telemetry.gpu_services import gpu_report_ingest, gpu_reports_ingest
from telemetry.models import GpuSample
from tests.telemetry.fake_pynvml import a100_mig, h100
from tests.telemetry.gpu_support import T0, Rig, frozen_after_t0, queued  # noqa: F401 - a fixture
from tests.telemetry.test_dashboards_live import _slow_now

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_after_t0")]


def rows(node: Node) -> dict[str, tuple]:
    return {g.uuid: (g.last_seen_at, g.last_util_pct, g.last_power_w) for g in Gpu.objects.filter(node=node)}


def newest_samples(node: Node) -> dict[str, tuple]:
    """Each GPU's newest raw sample, row by row: what its row must hold."""
    out: dict[str, tuple] = {}
    for s in GpuSample.objects.filter(gpu__node=node).select_related("gpu").order_by("ts"):
        out[s.gpu.uuid] = (s.ts, s.util_pct, s.power_w)
    return out


def without_power(report):
    """The report as a GPU without a power sensor sends it (NVML NotSupported: the field is absent, not 0)."""
    return dataclasses.replace(report, gpus=tuple(dataclasses.replace(g, power_w=None, unsupported=(
        ("power_w", "NVMLError_NotSupported"),)) for g in report.gpus))


def test_both_ingest_paths_keep_the_newest_reading_on_the_gpu_row(world) -> None:
    # given: an H100 whose utilization moves, an A100 in MIG mode (no utilization); node A's reports one by one,
    # node B's batched (its first report creates the GPUs, the later ones are steady: set-based)
    rig_a = Rig([h100(0, uuid="GPU-a-0"), a100_mig(1, uuid="GPU-a-1")])
    rig_b = Rig([h100(0, uuid="GPU-b-0"), a100_mig(1, uuid="GPU-b-1")], hostname="node-b")
    reports_a, reports_b = [], []
    for util in (10, 90, 0, 35):
        for rig, out in ((rig_a, reports_a), (rig_b, reports_b)):
            rig.nvml.gpus[0].util = util
            out.append(rig.read())
            rig.tick(10)
    reports_a[2], reports_b[2] = without_power(reports_a[2]), without_power(reports_b[2])
    # when: each path twice (a replayed queue changes nothing)
    for _ in range(2):
        for report in reports_a:
            gpu_report_ingest(node_id=world.node_a.pk, report=report)
        gpu_reports_ingest(reports=queued(world.node_b, reports_b[0]))
        result = gpu_reports_ingest(reports=queued(world.node_b, *reports_b[1:]))
    # then: every row holds its newest sample's figures; NULL utilization stays NULL, 0 stays 0
    assert result.synced_one_by_one == 0  # the steady path
    for node in (world.node_a, world.node_b):
        samples = newest_samples(node)
        assert len(samples) == 2 and {u: v for u, v in rows(node).items() if u in samples} == samples
    assert rows(world.node_a)["GPU-a-0"][1:] == (35, 400.0)
    assert rows(world.node_a)["GPU-a-1"][1] is None and rows(world.node_b)["GPU-b-1"][1] is None


def test_a_reading_without_power_is_null_on_the_row_not_zero(world) -> None:
    # given: a GPU reporting power, then a report whose reading lacks it and whose utilization is really 0
    rig = Rig([h100(0)])
    gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    rig.tick(10)
    rig.nvml.gpus[0].util = 0
    # when
    gpu_reports_ingest(reports=queued(world.node_a, without_power(rig.read())))
    # then
    gpu = Gpu.objects.get(uuid=h100(0).uuid)
    assert gpu.last_util_pct == 0 and gpu.last_power_w is None


@pytest.mark.parametrize("batched", [True, False])
def test_an_older_report_never_rolls_the_latest_reading_back(world, batched: bool) -> None:
    # given: a cycle at 20 %, then one at 80 %; the old one is delivered again after the new one
    rig = Rig([h100(0), h100(1)])
    rig.nvml.gpus[0].util = 20
    old = rig.read()
    rig.tick(10)
    rig.nvml.gpus[0].util = 80
    new = rig.read()
    # when: twice, in one batch (new first) or one by one
    for _ in range(2):
        if batched:
            gpu_reports_ingest(reports=queued(world.node_a, new, old))
        else:
            gpu_report_ingest(node_id=world.node_a.pk, report=new)
            gpu_report_ingest(node_id=world.node_a.pk, report=old)
    # then: the old report's samples are stored, the row keeps the new reading
    assert GpuSample.objects.count() == 4
    assert rows(world.node_a)[h100(0).uuid] == (new.ts, 80, 400.0)


def test_live_figures_after_real_ingest_equal_the_raw_samples(world) -> None:
    # given: node A (partner A) and node B (partner B) report every 10 s through the ingest; node A's GPU 1 stops
    # reporting after the first cycles (it goes stale), node A's GPU 0 has no power sensor in its last report
    rig_a, rig_b = Rig([h100(0), h100(1)]), Rig([h100(2, uuid="GPU-b-2")], hostname="node-b")
    for cycle in range(6):
        for rig, node in ((rig_a, world.node_a), (rig_b, world.node_b)):
            rig.nvml.gpus[0].util = 10 * cycle + (5 if node == world.node_b else 0)
            report = rig.read()
            if cycle == 1 and node == world.node_a:
                rig.nvml.gpus.pop(1)  # GPU 1 gone from the node's later reports
            if cycle == 5 and node == world.node_a:
                report = without_power(report)
            gpu_report_ingest(node_id=node.pk, report=report)
            rig.tick(10)
    sites = [world.site_a, world.site_b]
    end = rig_a.now - dt.timedelta(seconds=10)  # the last report
    # when / then: at every moment from the last report until everything is stale, the figures from the GPU rows
    # equal the raw samples' newest readings, and another partner's site is absent
    for age in (0, 5, 15, 25, 35, 60):
        now = end + dt.timedelta(seconds=age)
        fast = gpu_selectors.sites_gpu_now(user=world.users["viewer"], sites=sites, now=now)
        slow = _slow_now([world.site_a], now)
        assert fast == slow, age
        assert world.site_b.pk not in fast
    at_end = gpu_selectors.sites_gpu_now(user=world.users["viewer"], sites=sites, now=end)
    assert at_end[world.site_a.pk]["gpus_reporting"] == 1 and at_end[world.site_a.pk]["power_w"] is None
    assert at_end[world.site_a.pk]["util_mean_pct"] == 50
    outsider = gpu_selectors.sites_gpu_now(user=world.users["outsider"], sites=sites, now=end)
    assert set(outsider) == {world.site_b.pk} and outsider[world.site_b.pk]["util_mean_pct"] == 55


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL storage parameter")
def test_gpu_and_node_rows_leave_room_for_updates_on_their_page(world) -> None:
    # given / when: the migrated tables
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s)",
                       [[Gpu._meta.db_table, Node._meta.db_table]])
        options = dict(cursor.fetchall())
    # then: every poll's UPDATE of a GPU row and of its node's row can stay on its page (HOT)
    assert options == {Gpu._meta.db_table: ["fillfactor=50"], Node._meta.db_table: ["fillfactor=50"]}
