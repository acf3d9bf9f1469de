"""Energy accounting and rollups: counter deltas exact across missed polls and driver reloads,
power integration (estimated) without a counter, idempotent rollups that catch up after downtime."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Sum

from sites.models import Gpu
from telemetry import gpu_selectors
from telemetry.gpu_services import gpu_report_ingest
from telemetry.ingest import gpu_samples_write, sample_row
from telemetry.models import GpuRollup1h, GpuRollup1m, GpuSample, SiteGpuRollup1m
from telemetry.rollups import (
    MAX_CATCHUP,
    floor_to,
    gpu_energy_from_samples,
    gpu_rollup_1m_compute,
    gpu_rollups_run,
)
from tests.telemetry.fake_pynvml import h100, p100
from tests.telemetry.gpu_support import T0, Rig

pytestmark = pytest.mark.django_db
MINUTE = dt.timedelta(minutes=1)


def _rollup_energy(gpu: Gpu, start: dt.datetime, end: dt.datetime) -> Decimal:
    return GpuRollup1m.objects.filter(gpu=gpu, bucket__gte=start, bucket__lt=end).aggregate(e=Sum("energy_j"))["e"]


def _run_h100_with_gaps_and_a_reload(world) -> tuple[Rig, list[tuple[dt.datetime, int]]]:
    """10 s polls for 12 minutes with uneven power; polls 20–27 are missed; a driver reload right after
    the poll at 6:00 resets the counter. Returns the rig and (sample ts, true mJ consumed so far)."""
    rig = Rig([h100(0)])
    truth_mj = 0
    truth: list[tuple[dt.datetime, int]] = []
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        for step in range(73):
            if step not in range(20, 28):
                gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
                truth.append((rig.now, truth_mj))
            if step == 36:
                rig.nvml.unload_driver()
                gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())  # the node reports the failure
                rig.nvml.load_driver()  # counter back to 0
            rig.nvml.gpus[0].power_mw = 350_000 + (step * 7919) % 300_001  # mW, uneven on purpose
            before = rig.nvml.gpus[0].energy_mj
            rig.tick(10)
            truth_mj += rig.nvml.gpus[0].energy_mj - before
    return rig, truth


def _truth_between(truth: list[tuple[dt.datetime, int]], a: dt.datetime, b: dt.datetime) -> Decimal:
    """Energy (J) between the last sample before a and the last sample before b."""
    def at(t: dt.datetime) -> int:
        return max((mj for ts, mj in truth if ts < t), default=truth[0][1])
    return Decimal(at(b) - at(a)) / 1000


def test_energy_over_any_window_equals_the_counter_difference_across_missed_polls_and_a_reset(world) -> None:
    # given
    rig, truth = _run_h100_with_gaps_and_a_reload(world)
    gpu = Gpu.objects.get(uuid=h100(0).uuid)
    end = rig.now + MINUTE
    # when
    with time_machine.travel(end + MINUTE, tick=False):
        gpu_rollups_run(now=end + MINUTE)
        first = list(GpuRollup1m.objects.filter(gpu=gpu).values_list("bucket", "energy_j", "sample_count"))
        gpu_rollups_run(now=end + MINUTE)
        second = list(GpuRollup1m.objects.filter(gpu=gpu).values_list("bucket", "energy_j", "sample_count"))
    # then: the counter reset lost nothing because it came right after a poll; the missed polls lost nothing
    assert first == second
    assert _rollup_energy(gpu, T0, end) == Decimal(truth[-1][1]) / 1000
    for a_min, b_min in [(0, 3), (2, 5), (3, 4), (5, 8), (6, 7), (1, 12), (4, 13)]:
        a, b = T0 + a_min * MINUTE, T0 + b_min * MINUTE
        assert _rollup_energy(gpu, a, b) == _truth_between(truth, a, b), (a_min, b_min)
        assert gpu_energy_from_samples(gpu_id=gpu.pk, start=a, end=b) == _truth_between(truth, a, b)
    assert not GpuRollup1m.objects.filter(gpu=gpu, energy_estimated=True).exists()


def test_hourly_and_site_rollups_add_up_to_the_minutes(world) -> None:
    # given
    rig, truth = _run_h100_with_gaps_and_a_reload(world)
    gpu = Gpu.objects.get(uuid=h100(0).uuid)
    now = rig.now + 2 * MINUTE
    # when
    gpu_rollups_run(now=now)
    gpu_rollups_run(now=now)
    # then
    hour = GpuRollup1h.objects.get(gpu=gpu, bucket=T0)
    minutes = GpuRollup1m.objects.filter(gpu=gpu)
    assert hour.energy_j == minutes.aggregate(e=Sum("energy_j"))["e"] == Decimal(truth[-1][1]) / 1000
    assert hour.sample_count == minutes.aggregate(n=Sum("sample_count"))["n"] == len(truth)
    assert hour.util_mean_pct == 50.0 and hour.util_max_pct == 50
    assert hour.power_max_w == max(r.power_max_w for r in minutes)
    site_total = SiteGpuRollup1m.objects.filter(site=world.site_a).aggregate(e=Sum("energy_j"))["e"]
    assert site_total == hour.energy_j
    series = gpu_selectors.site_gpu_series(user=world.users["viewer"], site=world.site_a, start=T0,
                                           end=T0 + dt.timedelta(hours=1))
    assert sum(row["energy_j"] for row in series) == hour.energy_j and series[0]["gpu_count"] == 1
    energy = gpu_selectors.site_energy_j(user=world.users["viewer"], site=world.site_a, start=T0,
                                         end=T0 + dt.timedelta(hours=1))
    assert energy == {"energy_j": hour.energy_j, "estimated": False}
    assert gpu_selectors.site_energy_j(user=world.users["outsider"], site=world.site_a, start=T0,
                                       end=T0 + dt.timedelta(hours=1))["energy_j"] == 0


def test_a_gpu_without_an_energy_counter_gets_integrated_power_marked_estimated(world) -> None:
    # given: a P100 at a constant 250 W, polled every 10 s for 3 minutes, one poll missed
    rig = Rig([p100(0)])
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        for step in range(19):
            if step != 7:
                gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
            rig.tick(10)
    gpu = Gpu.objects.get(uuid=p100(0).uuid)
    # when
    gpu_rollup_1m_compute(start=T0, end=T0 + 4 * MINUTE)
    # then
    rows = GpuRollup1m.objects.filter(gpu=gpu)
    assert rows.aggregate(e=Sum("energy_j"))["e"] == Decimal("45000.000")  # 250 W × 180 s
    assert all(r.energy_estimated for r in rows)
    assert gpu_selectors.site_energy_j(user=world.users["operator"], site=world.site_a, start=T0,
                                       end=T0 + MINUTE)["estimated"] is False  # site rollups not run yet


def test_power_is_not_integrated_across_a_long_outage(world) -> None:
    # given: two P100 readings 20 minutes apart
    rig = Rig([p100(0)])
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
        rig.tick(1200)
        gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    # when
    gpu_rollup_1m_compute(start=T0, end=T0 + 30 * MINUTE)
    # then: energy is zero where it cannot be known (not 250 W × 20 min invented)
    assert GpuRollup1m.objects.aggregate(e=Sum("energy_j"))["e"] == Decimal("0.000")


def test_mig_parent_without_utilization_has_no_utilization_mean(world) -> None:
    # given
    from tests.telemetry.fake_pynvml import a100_mig

    rig = Rig([a100_mig(0)])
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        for _ in range(3):
            gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
            rig.tick(10)
    # when
    gpu_rollup_1m_compute(start=T0, end=T0 + MINUTE)
    # then
    row = GpuRollup1m.objects.get(gpu__uuid=a100_mig(0).uuid)
    assert (row.util_mean_pct, row.util_max_pct, row.util_samples, row.sample_count) == (None, None, 0, 3)
    assert row.power_mean_w == 300.0


def test_rollups_catch_up_after_downtime_in_bounded_steps(world) -> None:
    # given: eight hours of one-minute samples and a rollup job that has not run since they began
    rig = Rig([h100(0)])
    with time_machine.travel(T0 + dt.timedelta(hours=9), tick=False):
        gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
        gpu = Gpu.objects.get(uuid=h100(0).uuid)
        rows = []
        for _ in range(8 * 60 - 1):
            rig.tick(60)
            rows.append(sample_row(gpu_id=gpu.pk, reading=rig.read().gpus[0], source="nvml"))
        gpu_samples_write(rows=rows)
    now = T0 + dt.timedelta(hours=9)
    # when
    runs = [gpu_rollups_run(now=now) for _ in range(3)]
    # then
    assert runs[0]["to"] - runs[0]["from"] <= MAX_CATCHUP + dt.timedelta(minutes=10)
    assert GpuRollup1m.objects.filter(gpu=gpu).count() == 480
    assert GpuRollup1h.objects.filter(gpu=gpu).count() == 8
    assert GpuRollup1h.objects.filter(gpu=gpu).aggregate(e=Sum("energy_j"))["e"] == Decimal(400 * 60 * 479)


def test_a_late_sample_inside_the_reroll_window_is_folded_in(world) -> None:
    # given
    rig = Rig([h100(0)])
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
        rig.tick(10)
        late = rig.read()
        rig.tick(10)
        gpu_report_ingest(node_id=world.node_a.pk, report=rig.read())
    gpu_rollups_run(now=T0 + 2 * MINUTE)
    gpu = Gpu.objects.get(uuid=h100(0).uuid)
    assert GpuRollup1m.objects.get(gpu=gpu, bucket=T0).sample_count == 2
    # when: the middle reading arrives late (an agent's buffer)
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        gpu_report_ingest(node_id=world.node_a.pk, report=late)
    gpu_rollups_run(now=T0 + 3 * MINUTE)
    # then: same energy (the counter says so), one more sample
    row = GpuRollup1m.objects.get(gpu=gpu, bucket=T0)
    assert row.sample_count == 3 and row.energy_j == Decimal(8000)
    assert GpuSample.objects.filter(gpu=gpu).count() == 3


def test_floor_to_minute_and_hour() -> None:
    # given
    t = dt.datetime(2026, 3, 2, 12, 34, 56, 789, tzinfo=dt.UTC)
    # when / then
    assert floor_to(t, MINUTE) == dt.datetime(2026, 3, 2, 12, 34, tzinfo=dt.UTC)
    assert floor_to(t, dt.timedelta(hours=1)) == dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
