"""A GPU node whose clock is minutes off, polled through real processes: the scheduler's orders go through a
real Redis to the node's own Celery worker (its process clock shifted with time_machine), its reports to a real
ingest worker. Celery judges a task's absolute `expires` by the worker's own clock, so a node more than one poll
interval ahead used to drop every poll and store nothing; polls now carry no `expires` and the node's worker
judges their age by the broker's clock (Redis TIME). A backlog ordered while the node's worker was down is still
dropped, not replayed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest
from django.utils import timezone

from sites.choices import NodeStatus
from sites.models import Node, Site
from telemetry.gpu_services import gpu_polls_claim_due, poll_message
from telemetry.models import GpuSample
from tests.reliability.procs import Worker, wait_until
from tests.reliability.test_process_faults import producer, redis, start_worker  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                                reason="workers need the PostgreSQL test database")

INTERVAL_S = 2  # the site's poll interval, short so the test is quick; each poll's window


@pytest.fixture
def workers(start_worker):  # noqa: F811 - the fixture imported above
    def start(queues: str, name: str, *, skew_s: float | None = None) -> Worker:
        if skew_s is None:
            return start_worker(queues, name)
        # a node machine: the production app (1 h visibility timeout), its clock off by skew_s, fake GPUs
        return start_worker(queues, name, env_extra={"GPU_READER_FACTORY": "tests.reliability.skewed_node:reader"},
                            launcher=("-m", "tests.reliability.skewed_node", str(skew_s)), app="factory_portal.celery")

    return start


def order_polls(producer, count: int) -> list[dt.datetime]:  # noqa: F811 - a Celery client
    """What beat's scheduler does, `count` times one interval apart: claim the due site, send each order."""
    sent = []
    while len(sent) < count:
        now = timezone.now()
        for order in gpu_polls_claim_due(now=now):
            name, args, kwargs, options = poll_message(order)
            producer.send_task(name, args=args, kwargs=kwargs, **options)
            sent.append(now)
        time.sleep(max(0.0, (now + dt.timedelta(seconds=INTERVAL_S) - timezone.now()).total_seconds()))
    return sent


@pytest.mark.parametrize("skew_s", [300.0, -180.0], ids=["5-minutes-ahead", "3-minutes-behind"])
def test_a_polled_node_minutes_off_runs_every_poll_and_is_stored_on_the_servers_clock(
        transactional_db, world, producer, workers, skew_s) -> None:  # noqa: F811
    # given: node A alone, polled every 2 s by its own worker whose clock is off; a true-clock ingest worker
    Site.objects.filter(pk=world.site_a.pk).update(gpu_poll_interval_s=INTERVAL_S)
    Node.objects.filter(pk=world.node_b.pk).update(status=NodeStatus.RETIRED)
    workers("ingest", "ingest")
    node = workers("node.node-a", "node-a", skew_s=skew_s)
    started = timezone.now()
    # when: five polls are ordered
    order_polls(producer, 5)
    wait_until(lambda: GpuSample.objects.count() >= 10, timeout_s=30, what="10 samples (5 polls × 2 GPUs)")
    # then: every poll ran once, each sample is where the server's clock says it was read, the offset is known
    finished = timezone.now()
    stamps = sorted(GpuSample.objects.values_list("ts", flat=True))
    world.node_a.refresh_from_db()
    figures = {"skew_s": skew_s, "polls": 5, "samples": len(stamps), "offset_s": world.node_a.clock_offset_s,
               "earliest_after_start_s": (stamps[0] - started).total_seconds(),
               "latest_before_end_s": (finished - stamps[-1]).total_seconds()}
    assert len(stamps) == 10 and len(set(stamps)) == 5
    assert started - dt.timedelta(seconds=5) <= stamps[0] and stamps[-1] <= finished, figures
    assert world.node_a.clock_offset_s == pytest.approx(skew_s, abs=5), figures

    # given: the node's worker is down while the scheduler goes on ordering polls
    node.stop()
    order_polls(producer, 3)
    # when: it comes back (the three orders are older than their window by the broker's clock) and one more poll
    again = workers("node.node-a", "node-a-again", skew_s=skew_s)
    order_polls(producer, 1)
    wait_until(lambda: GpuSample.objects.count() >= 12, timeout_s=30, what="the fresh poll's 2 samples")
    wait_until(lambda: again.log_path.read_text().count("succeeded") >= 4, timeout_s=10, what="four polls done")
    # then: the backlog was dropped, not replayed; only the fresh poll was stored
    figures |= {"after_backlog_samples": GpuSample.objects.count(),
                "backlog_dropped": again.log_path.read_text().count("past its 2 s window")}
    print("RELIABILITY node_clock_polled " + json.dumps(figures, sort_keys=True, default=str))
    assert GpuSample.objects.count() == 12, figures
    assert figures["backlog_dropped"] == 3, figures
