"""Poll scheduling and routing: per-site intervals, claims, queues, expiry, the eager end-to-end path."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from sites.choices import NodeStatus
from sites.models import Node
from telemetry import retention
from telemetry.collectors import nvml as nvml_module
from telemetry.gpu_services import PollOrder, gpu_polls_claim_due, node_gpu_collector_set, poll_route
from telemetry.models import GpuSample
from telemetry.tasks.gpu import (
    gpu_nodes_mark_stale_task,
    gpu_polls_schedule_task,
    gpu_rollups_run_task,
    gpu_sample_partitions_ensure_ahead_task,
    gpu_sample_retention_apply_task,
)
from tests.telemetry.fake_pynvml import h100
from tests.telemetry.gpu_support import T0, Rig

pytestmark = pytest.mark.django_db


def test_an_nvml_poll_goes_to_the_nodes_queue_and_a_dcgm_poll_expires_after_one_interval() -> None:
    # given
    nvml = PollOrder(node_id=1, hostname="gpu-007.dc1", mode="nvml", interval_s=10)
    dcgm = PollOrder(node_id=2, hostname="gpu-008.dc1", mode="dcgm", interval_s=30, dcgm_url="http://x/metrics")
    # when / then
    # Celery judges `expires` by the node's clock: an NVML poll's allows a clock an hour ahead (gpu_node_poll
    # drops a backlog by the broker's clock)
    assert poll_route(nvml) == {"queue": "node.gpu-007.dc1", "expires": 3610}
    assert poll_route(dcgm) == {"queue": "scrape", "expires": 30}


def test_each_site_is_polled_at_its_own_interval_and_claimed_once(world) -> None:
    # given
    world.site_a.gpu_poll_interval_s = 30
    world.site_a.save()
    # when
    at_0 = gpu_polls_claim_due(now=T0)
    at_0_again = gpu_polls_claim_due(now=T0)
    at_10 = gpu_polls_claim_due(now=T0 + dt.timedelta(seconds=10))
    at_30 = gpu_polls_claim_due(now=T0 + dt.timedelta(seconds=30))
    # then: site B polls every 10 s (the default), site A every 30 s
    assert sorted(o.hostname for o in at_0) == ["node-a", "node-b"]
    assert at_0_again == []
    assert [o.hostname for o in at_10] == ["node-b"]
    assert sorted(o.hostname for o in at_30) == ["node-a", "node-b"]


def test_agent_nodes_are_not_polled_and_dcgm_nodes_are_scraped(world) -> None:
    # given
    node_gpu_collector_set(node=world.node_a, mode="agent")
    node_gpu_collector_set(node=world.node_b, mode="dcgm", dcgm_url="http://127.0.0.1:9400/metrics")
    # when
    orders = gpu_polls_claim_due(now=T0)
    # then
    assert [(o.hostname, o.mode, o.dcgm_url) for o in orders] == [
        ("node-b", "dcgm", "http://127.0.0.1:9400/metrics")]


def test_the_scheduler_runs_the_whole_path_once_per_interval(world, django_capture_on_commit_callbacks) -> None:
    # given: node B is retired; node A's worker reads two H100s
    Node.objects.filter(pk=world.node_b.pk).update(status=NodeStatus.RETIRED)
    rig = Rig([h100(0), h100(1)], start=T0)
    nvml_module.set_reader(rig.reader)
    try:
        # when: two scheduler ticks at the same instant (a retried beat message)
        with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
            first = gpu_polls_schedule_task.delay().get()
            second = gpu_polls_schedule_task.delay().get()
    finally:
        nvml_module.reset_reader()
    # then
    assert (first, second) == (1, 0)
    assert GpuSample.objects.filter(gpu__node=world.node_a).count() == 2
    world.node_a.refresh_from_db()
    assert world.node_a.status == NodeStatus.ONLINE


def test_housekeeping_tasks_run_twice_without_change(world) -> None:
    # given: no samples yet, no node has reported
    retention.forget_known_partitions()
    with time_machine.travel(T0, tick=False):
        # when
        first, second = [(gpu_nodes_mark_stale_task.delay().get(), gpu_rollups_run_task.delay().get(),
                          gpu_sample_partitions_ensure_ahead_task.delay().get(),
                          gpu_sample_retention_apply_task.delay().get()) for _ in range(2)]
    # then
    assert first[0] == second[0] == 0
    assert first[1]["minutes"] == second[1]["minutes"] == "0"
    assert second[2] == []  # the first run created the partitions (on PostgreSQL), the second finds them
    assert second[3] == {"partitions_dropped": 0, "rows_deleted": 0, "rollups_1m_deleted": 0}
