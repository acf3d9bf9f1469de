"""A node whose clock runs 5 minutes ahead, then 3 minutes behind, then right again, through the real paths: the
scheduler's poll order → the node's NVML poll → the ingest task (in-process, eager), and the agent's pushes to
`POST /api/v1/ingest/gpu-readings/` (with an outage the agent buffers through). NVML is faked at the pynvml
boundary; the server's clock is frozen per step with time_machine. Afterwards the energy in every 1-minute rollup
bucket equals the fake GPUs' counters placed at the instants they were really read, no sample is stamped later
than its reading, nothing is refused, and the node shows its offset while it lasts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal

import time_machine
from rest_framework.test import APIClient

from sites.choices import NodeStatus
from sites.models import Node
from telemetry.collectors import nvml as nvml_module
from telemetry.collectors.nvml import NvmlReader, reading_to_dict
from telemetry.gpu_services import node_agent_token_issue
from telemetry.models import GpuRollup1h, GpuRollup1m, GpuSample
from telemetry.rollups import gpu_rollups_run
from telemetry.tasks.gpu import gpu_polls_schedule_task
from tests.telemetry.fake_pynvml import h100
from tests.telemetry.gpu_support import T0, Rig

STEP_S = 10
STEPS = 60  # 10 minutes of polls


def skew_at(step: int) -> float:
    """The node's clock minus the true time: right, 5 minutes ahead, 3 minutes behind, right again."""
    if 12 <= step < 30:
        return 300.0
    if 30 <= step < 48:
        return -180.0
    return 0.0


class SkewedNode:
    """Two fake H100s read through the real NvmlReader, whose clock is the true time plus the skew."""

    def __init__(self, hostname: str) -> None:
        self.rig = Rig([h100(0), h100(1)], hostname=hostname, start=T0)
        self.skew_s = 0.0
        self.rig.reader = NvmlReader(self.rig.nvml, hostname=hostname,
                                     clock=lambda: self.rig.now + dt.timedelta(seconds=self.skew_s))
        self.read_at: list[dt.datetime] = []  # the true instants of the readings
        self.truth_mj: dict[tuple[str, dt.datetime], int] = defaultdict(int)
        self._last: list[int] | None = None

    def note_reading(self) -> None:
        """The truth a rollup must show: each reading's counter delta since the previous one, in the minute the
        reading really happened."""
        now = self.rig.now
        self.read_at.append(now)
        counters = [g.energy_mj for g in self.rig.nvml.gpus]
        minute = now.replace(second=0, microsecond=0)
        for gpu, cur, prev in zip(self.rig.nvml.gpus, counters, self._last or counters, strict=True):
            self.truth_mj[(gpu.uuid, minute)] += cur - prev
        self._last = counters

    def tick(self, step: int) -> None:
        for i, gpu in enumerate(self.rig.nvml.gpus):
            gpu.power_mw = 280_000 + (step * 7919 + i * 104_729) % 390_001
        self.rig.tick(STEP_S)


def rolled_up_vs_truth(node: SkewedNode) -> tuple[dict, dict, dict]:
    end = T0 + dt.timedelta(seconds=STEPS * STEP_S + 120)
    with time_machine.travel(end, tick=False):
        gpu_rollups_run(now=end)
        gpu_rollups_run(now=end)  # twice: nothing changes
    rolled = {(uuid, bucket): energy for uuid, bucket, energy in GpuRollup1m.objects.values_list(
        "gpu__uuid", "bucket", "energy_j") if energy}
    truth = {key: Decimal(mj) / 1000 for key, mj in node.truth_mj.items() if mj}
    hourly = {uuid: sum((e for (u, _), e in rolled.items() if u == uuid), Decimal(0))
              for uuid in {u for u, _ in rolled}}
    assert hourly == {uuid: GpuRollup1h.objects.filter(gpu__uuid=uuid).values_list("energy_j", flat=True).get()
                      for uuid in hourly}
    return rolled, truth, hourly


def test_a_polled_node_five_minutes_ahead_then_three_behind_keeps_energy_in_the_right_minutes(
        world, django_capture_on_commit_callbacks) -> None:
    # given: node A's NVML worker reads through a reader whose clock we skew; node B is out of the way
    Node.objects.filter(pk=world.node_b.pk).update(status=NodeStatus.RETIRED)
    node = SkewedNode("node-a")
    nvml_module.set_reader(node.rig.reader)
    offsets = []
    try:
        for step in range(STEPS):
            node.skew_s = skew_at(step)
            # when: the scheduler's tick at the true time: order → node poll → ingest
            with time_machine.travel(node.rig.now, tick=False), django_capture_on_commit_callbacks(execute=True):
                assert gpu_polls_schedule_task.delay().get() == 1
            node.note_reading()
            offsets.append(Node.objects.get(pk=world.node_a.pk).clock_offset_s)
            node.tick(step)
    finally:
        nvml_module.reset_reader()
    # then
    rolled, truth, totals = rolled_up_vs_truth(node)
    stored = sorted(set(GpuSample.objects.values_list("ts", flat=True)))
    report = {"energy_j": {k: str(v) for k, v in totals.items()}, "buckets": len(rolled),
              "buckets_equal_truth": rolled == truth, "samples": GpuSample.objects.count(),
              "offsets_seen_s": sorted(set(offsets)), "distinct_sample_times": len(stored),
              "latest_sample_after_last_reading_s": (max(stored) - node.read_at[-1]).total_seconds()}
    print("RELIABILITY clock_skew_polled " + json.dumps(report, sort_keys=True))
    assert GpuSample.objects.count() == 2 * STEPS  # nothing refused, nothing doubled
    assert stored == node.read_at  # every sample at the instant it was really read: none in the future
    assert rolled == truth
    assert sum(totals.values()) == sum(truth.values())
    assert offsets[11] == 0 and offsets[12] == offsets[29] == 300 and offsets[30] == offsets[47] == -180
    assert offsets[-1] == 0


def test_a_pushing_agent_five_minutes_ahead_through_an_outage_then_three_behind_keeps_energy_exact(world) -> None:
    # given: node A's agent pushes each reading with `sent_at` (its own clock); the portal is unreachable for
    # steps 18-25 and the agent keeps those reports, sending them late, oldest first
    token = node_agent_token_issue(node=world.node_a)
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    node = SkewedNode("node-a")
    pending: list[dict] = []
    statuses: list[int] = []
    late = 0
    for step in range(STEPS):
        node.skew_s = skew_at(step)
        pending.append(reading_to_dict(node.rig.read()))
        node.note_reading()
        if not 18 <= step < 26:
            # when: at the true time, each pending report with the agent's clock at sending
            with time_machine.travel(node.rig.now, tick=False):
                sent_at = (node.rig.now + dt.timedelta(seconds=node.skew_s)).isoformat()
                late += len(pending) - 1
                statuses += [agent.post("/api/v1/ingest/gpu-readings/", {**p, "sent_at": sent_at},
                                        format="json").status_code for p in pending]
            pending.clear()
        node.tick(step)
    # then
    rolled, truth, totals = rolled_up_vs_truth(node)
    stored = sorted(set(GpuSample.objects.values_list("ts", flat=True)))
    print("RELIABILITY clock_skew_pushed " + json.dumps({
        "energy_j": {k: str(v) for k, v in totals.items()}, "buckets": len(rolled), "sent_late": late,
        "buckets_equal_truth": rolled == truth, "statuses": sorted(set(statuses)),
        "samples": GpuSample.objects.count()}, sort_keys=True))
    assert statuses == [201] * STEPS  # nothing refused (a ts 5 minutes ahead used to be a 400)
    assert late == 8
    assert GpuSample.objects.count() == 2 * STEPS
    assert stored == node.read_at
    assert rolled == truth
    assert Node.objects.get(pk=world.node_a.pk).clock_offset_s == 0
