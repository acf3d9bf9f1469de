"""The node-clock rule (telemetry/clock.py): a skewed node's readings are re-timed to the server's clock, delay
(queue lag, buffered pushes, transit) is never taken for skew, and the offset is recorded on the node."""

from __future__ import annotations

import datetime as dt
import math

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from sites.dashboard import site_cards
from sites.models import Node
from telemetry.clock import broker_clock_reset, central_now, node_report_from_queue, report_clock_correct
from telemetry.collectors.nvml import reading_to_dict, reset_reader, set_reader
from telemetry.gpu_services import gpu_node_poll, node_agent_token_issue
from telemetry.models import GpuSample
from tests.reliability.procs import Redis, free_port
from tests.telemetry.fake_pynvml import h100
from tests.telemetry.gpu_support import T0, Rig

TOL = 5.0


def _report(at: dt.datetime):
    rig = Rig([h100(0), h100(1)], start=at)
    return rig.read()


def _ts(report) -> set[dt.datetime]:
    return {report.ts} | {g.ts for g in report.gpus}


def _s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


def test_a_clock_ahead_by_minutes_is_moved_back_to_the_poll_order() -> None:
    # given: the poll was ordered at T0; the node read at once but its clock says T0 + 5 min
    report = _report(T0 + _s(300))
    # when
    corrected, offset = report_clock_correct(report=report, reference=T0, lag_after_s=10, tolerance_s=TOL)
    # then
    assert offset == 300
    assert _ts(corrected) == {T0}
    assert [g.energy_mj for g in corrected.gpus] == [g.energy_mj for g in report.gpus]  # only time changes


def test_a_clock_behind_by_minutes_is_moved_forward_to_the_poll_order() -> None:
    # given
    report = _report(T0 - _s(180))
    # when
    corrected, offset = report_clock_correct(report=report, reference=T0, lag_after_s=10, tolerance_s=TOL)
    # then
    assert offset == -180
    assert _ts(corrected) == {T0}


@pytest.mark.parametrize(("stamp_s", "expected_offset"), [(-4.0, -4.0), (0.0, 0.0), (13.0, 3.0)])
def test_within_the_tolerance_nothing_is_shifted(stamp_s: float, expected_offset: float) -> None:
    # given: 4 s behind the order, on time, 3 s past the end of a 10 s poll window
    report = _report(T0 + _s(stamp_s))
    # when
    corrected, offset = report_clock_correct(report=report, reference=T0, lag_after_s=10, tolerance_s=TOL)
    # then: the report is untouched; the offset is what the window cannot explain
    assert corrected is report
    assert offset == expected_offset


@pytest.mark.django_db
def test_queue_lag_is_not_taken_for_skew() -> None:
    # given: a correct clock; the node's worker ran the poll 9 s after it was ordered (just inside its 10 s
    # expiry), and the ingest queue was 10 minutes behind
    report = _report(T0 + _s(9))
    # when
    corrected = node_report_from_queue(node_id=0, payload=reading_to_dict(report), ordered_at=T0.isoformat(),
                                       window_s=10, received_at=T0 + _s(600))
    # then
    assert _ts(corrected) == {T0 + _s(9)}


def test_a_buffered_push_is_not_taken_for_skew_but_its_senders_clock_is_measured() -> None:
    # given: a report read 2 minutes before it reached the server (the agent kept it through an outage)
    received = T0 + _s(120)
    correct_clock = _report(T0)
    ahead_clock = _report(T0 + _s(300))
    # when: without sent_at (older agents) and with it
    unknown, unknown_offset = report_clock_correct(report=correct_clock, reference=received, lag_before_s=math.inf,
                                                   tolerance_s=TOL)
    sent_now, sent_offset = report_clock_correct(report=correct_clock, reference=received,
                                                 observed=received - _s(0.05), tolerance_s=TOL)
    ahead, ahead_offset = report_clock_correct(report=ahead_clock, reference=received, observed=received + _s(300),
                                               tolerance_s=TOL)
    # then
    assert (unknown is correct_clock, unknown_offset) == (True, 0.0)
    assert sent_now is correct_clock and sent_offset == pytest.approx(-0.05)
    assert (_ts(ahead), ahead_offset) == ({T0}, 300)  # re-timed to when it was read, not when it arrived


def test_without_a_reference_only_a_clock_ahead_is_corrected_and_never_into_the_future() -> None:
    # given: the server received both at T0 + 1 min
    received = T0 + _s(60)
    # when
    ahead, _ = report_clock_correct(report=_report(T0 + _s(600)), reference=received, lag_before_s=math.inf,
                                    tolerance_s=TOL)
    behind, offset = report_clock_correct(report=_report(T0 - _s(600)), reference=received, lag_before_s=math.inf,
                                          tolerance_s=TOL)
    # then: ahead is pulled back to the receipt; behind cannot be told from a late delivery and stays
    assert _ts(ahead) == {received}
    assert (_ts(behind), offset) == ({T0 - _s(600)}, 0.0)


def test_a_retried_push_lands_on_the_same_instants() -> None:
    # given: the node is 300 s ahead; the same report is sent twice, 40 ms of transit apart
    report = _report(T0 + _s(300))
    first, first_offset = report_clock_correct(report=report, reference=T0, observed=T0 + _s(300),
                                               tolerance_s=TOL)
    # when
    second, second_offset = report_clock_correct(report=report, reference=T0 + _s(10),
                                                 observed=T0 + _s(309.96), tolerance_s=TOL,
                                                 previous_offset_s=first_offset)
    # then: the recorded offset is kept, so the samples have the same keys (gpu, ts) and are stored once
    assert second_offset == first_offset == 300
    assert _ts(first) == _ts(second) == {T0}


@pytest.mark.django_db
def test_a_push_from_a_clock_five_minutes_ahead_is_stored_on_the_servers_clock_and_alerted(world,
                                                                                            api_client_for) -> None:
    # given: the server's clock is T0; the agent's is T0 + 5 min
    token = node_agent_token_issue(node=world.node_a)
    payload = reading_to_dict(_report(T0 + _s(300)))
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    # when: pushed twice (a retry after a lost answer)
    with time_machine.travel(T0, tick=False):
        responses = [agent.post("/api/v1/ingest/gpu-readings/", {**payload, "sent_at": (T0 + _s(300)).isoformat()},
                                format="json") for _ in range(2)]
        cards = site_cards(user=world.users["operator"], site=world.site_a, now=T0)
        page = api_client_for("operator").get(f"/api/v1/nodes/{world.node_a.pk}/")
    # then: accepted (not the former 400), stored once at the server's time, the offset shown and alerted
    assert [r.status_code for r in responses] == [201, 201], responses[0].content
    assert set(GpuSample.objects.values_list("ts", flat=True)) == {T0}
    assert GpuSample.objects.count() == 2
    assert Node.objects.get(pk=world.node_a.pk).clock_offset_s == 300
    assert page.json()["clock_offset_s"] == 300
    assert any("clock is off by +300 s" in a.text for a in cards[0].alerts)


@pytest.mark.django_db
def test_a_node_whose_clock_is_fixed_clears_its_offset(world) -> None:
    # given: a node measured 180 s behind
    Node.objects.filter(pk=world.node_a.pk).update(clock_offset_s=-180)
    # when: its next poll reads on time
    node_report_from_queue(node_id=world.node_a.pk, payload=reading_to_dict(_report(T0 + _s(1))),
                           ordered_at=T0.isoformat(), window_s=10, received_at=T0 + _s(2))
    # then
    assert Node.objects.get(pk=world.node_a.pk).clock_offset_s == 0


# -- the central clock a node's worker judges a poll's age by -------------------------------------------------------
@pytest.fixture
def fresh_broker_clock():
    broker_clock_reset()
    yield
    broker_clock_reset()


def test_central_now_is_the_brokers_clock_when_the_broker_is_redis(settings, fresh_broker_clock) -> None:
    # given: a real Redis on loopback as the broker
    redis = Redis()
    redis.start()
    try:
        settings.CELERY_BROKER_URL = redis.url
        # when: this process's clock is an hour ahead
        with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), tick=True):
            local = timezone.now()
            central = central_now()
            again = central_now()
    finally:
        redis.stop()
    # then: the broker's time, not this process's
    assert abs((local - central).total_seconds() - 3600) < 5
    assert central <= again


def test_central_now_falls_back_to_the_local_clock_without_a_redis_broker(settings, fresh_broker_clock) -> None:
    # given: an embedded broker, then a Redis URL nothing listens on
    settings.CELERY_BROKER_URL = "filesystem://"
    with time_machine.travel(T0, tick=False):
        # when / then
        assert central_now() == T0
    broker_clock_reset()
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    with time_machine.travel(T0, tick=False):
        assert central_now() == T0  # logged as a warning, and the poll goes on


@pytest.mark.django_db
def test_a_poll_past_its_window_is_dropped_and_a_fresh_one_runs(world, settings, fresh_broker_clock) -> None:
    # given: the embedded broker (the central clock is this machine's), a fake node
    settings.CELERY_BROKER_URL = "filesystem://"
    rig = Rig([h100(0)], hostname="node-a", start=T0)
    set_reader(rig.reader)
    try:
        with time_machine.travel(T0, tick=False):
            # when: a poll ordered 30 s ago with a 10 s window, then one ordered 2 s ago
            stale = gpu_node_poll(node_id=world.node_a.pk, hostname="node-a",
                                  ordered_at=(T0 - dt.timedelta(seconds=30)).isoformat(), window_s=10)
            again = gpu_node_poll(node_id=world.node_a.pk, hostname="node-a",
                                  ordered_at=(T0 - dt.timedelta(seconds=30)).isoformat(), window_s=10)
            fresh = gpu_node_poll(node_id=world.node_a.pk, hostname="node-a",
                                  ordered_at=(T0 - dt.timedelta(seconds=2)).isoformat(), window_s=10)
    finally:
        reset_reader()
    # then: the stale one read nothing and sent nothing; the fresh one was stored
    assert stale == again == {"node": "node-a", "skipped": "ordered 30.0 s ago, past its 10 s window"}
    assert fresh["gpus"] == 1
    assert GpuSample.objects.filter(gpu__node=world.node_a).count() == 1
