"""Beat down for an hour, a GPU that disappears and comes back with the same UUID, a driver reload between
two polls inside a rollup minute: rollups catch up without gaps or duplicates and the energy equals the fake
GPUs' counters (NVML faked at the pynvml boundary, the rest real, in-process with a manual clock)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import time_machine
from django.db.models import Count, Sum
from django.db.models.functions import TruncMinute

from sites.choices import GpuStatus
from sites.models import Gpu
from telemetry.gpu_services import gpu_report_ingest
from telemetry.models import GpuRollup1h, GpuRollup1m, GpuSample
from telemetry.rollups import gpu_rollups_run
from tests.telemetry.fake_pynvml import h100
from tests.telemetry.gpu_support import T0, Rig

STEP_S = 30
MINUTES = 100
BEAT_DOWN = (10, 70)  # minutes: no polls are scheduled and no rollups run
LOST = (75, 80)  # minutes: GPU 1 is lost (NVML GpuIsLost), then back with the same UUID
RELOAD_AT_S = 85 * 60 + 15  # the driver reloads 15 s after a poll, inside the minute 85 bucket


def test_an_hour_without_beat_a_lost_gpu_and_a_driver_reload_keep_energy_exact(world) -> None:
    # given
    rig = Rig([h100(0), h100(1)], start=T0)
    truth_mj = [0, 0]
    unobservable_mj = [0, 0]
    status_while_lost = None
    rollup_runs = 0
    for step in range(MINUTES * 60 // STEP_S + 1):
        t = step * STEP_S
        minute = t / 60
        beat_up = not (BEAT_DOWN[0] <= minute < BEAT_DOWN[1])
        if LOST[0] <= minute < LOST[1]:
            rig.nvml.lose(1)
        else:
            rig.nvml.gpus[1].lost = False
        if beat_up:
            report = rig.read()
            with time_machine.travel(rig.now + dt.timedelta(seconds=1), tick=False):
                gpu_report_ingest(node_id=world.node_a.pk, report=report)
                if step % 4 == 0:  # rollups every 2 minutes while beat runs
                    gpu_rollups_run(now=rig.now + dt.timedelta(seconds=1))
                    rollup_runs += 1
            if LOST[0] < minute < LOST[1]:
                status_while_lost = Gpu.objects.get(uuid=h100(1).uuid).status
        for i, gpu in enumerate(rig.nvml.gpus):
            gpu.power_mw = 250_000 + (step * 7919 + i * 3571) % 400_001
        if t < RELOAD_AT_S <= t + STEP_S:
            before = [g.energy_mj for g in rig.nvml.gpus]
            rig.tick(RELOAD_AT_S - t)
            for i, g in enumerate(rig.nvml.gpus):
                unobservable_mj[i] += g.energy_mj - before[i]  # consumed after the last poll, before the reload
            rig.nvml.unload_driver()
            rig.nvml.load_driver()
            before = [g.energy_mj for g in rig.nvml.gpus]
            rig.tick(t + STEP_S - RELOAD_AT_S)
            for i, g in enumerate(rig.nvml.gpus):
                truth_mj[i] += g.energy_mj - before[i]
        else:
            before = [g.energy_mj for g in rig.nvml.gpus]
            rig.tick(STEP_S)
            if step < MINUTES * 60 // STEP_S:
                for i, g in enumerate(rig.nvml.gpus):
                    truth_mj[i] += g.energy_mj - before[i]

    # when: beat is back; the catch-up runs twice
    end = T0 + dt.timedelta(minutes=MINUTES + 2)
    with time_machine.travel(end, tick=False):
        gpu_rollups_run(now=end)
        first = list(GpuRollup1m.objects.order_by("gpu", "bucket").values_list("gpu", "bucket", "energy_j",
                                                                                 "sample_count"))
        gpu_rollups_run(now=end)
        second = list(GpuRollup1m.objects.order_by("gpu", "bucket").values_list("gpu", "bucket", "energy_j",
                                                                                  "sample_count"))

    # then
    assert first == second
    figures = {}
    for i in range(2):
        gpu = Gpu.objects.get(uuid=h100(i).uuid)
        minutes = GpuRollup1m.objects.filter(gpu=gpu)
        energy = minutes.aggregate(e=Sum("energy_j"))["e"]
        hourly = GpuRollup1h.objects.filter(gpu=gpu).aggregate(e=Sum("energy_j"))["e"]
        sample_minutes = (GpuSample.objects.filter(gpu=gpu).annotate(m=TruncMinute("ts")).values("m")
                          .annotate(n=Count("ts")).order_by())
        expected = {r["m"]: r["n"] for r in sample_minutes}
        rolled = dict(minutes.filter(sample_count__gt=0).values_list("bucket", "sample_count"))
        # The truth the counters can show: everything from the first sample on, minus what the reload erased.
        # GPU 1 drew no energy in the fake while lost (the fake's counter stops), so nothing is owed there.
        truth = Decimal(truth_mj[i]) / 1000
        figures[gpu.uuid] = {"energy_j": str(energy), "truth_j": str(truth), "hourly_j": str(hourly),
                             "unobservable_reload_j": str(Decimal(unobservable_mj[i]) / 1000),
                             "minutes_with_samples": len(expected)}
        assert rolled == expected, "a minute with samples is missing from, or doubled in, the rollups"
        assert energy == hourly == truth, (i, energy, hourly, truth)
    assert status_while_lost == GpuStatus.LOST
    assert Gpu.objects.get(uuid=h100(1).uuid).status == GpuStatus.OK  # back with the same UUID, same row
    assert Gpu.objects.filter(uuid=h100(1).uuid).count() == 1
    print("RELIABILITY beat_down_lost_reload " + json.dumps({**figures, "rollup_runs_before_catch_up": rollup_runs}))
