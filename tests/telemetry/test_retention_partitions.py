"""Raw-sample retention on PostgreSQL: a day is detached from the parent, then dropped; a day left detached by a
crash between the two steps is dropped by the next run; tables that merely look alike are left alone."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from telemetry import retention
from telemetry.ingest import gpu_samples_write, sample_row
from telemetry.models import GpuSample
from tests.telemetry.fake_pynvml import h100
from tests.telemetry.gpu_support import T0, Rig

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(connection.vendor != "postgresql", reason="day partitions exist on PostgreSQL only")]


def tables_like(prefix: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s", [prefix + "%"])
        return {row[0] for row in cursor.fetchall()}


def test_an_expired_day_is_detached_then_dropped_and_a_leftover_goes_next_time(world) -> None:
    # given: samples 10, 9 and 0 days ago; the oldest day was detached by a run that died before its DROP
    retention.forget_known_partitions()
    rows = [sample_row(gpu_id=world.gpu_a.pk, reading=Rig([h100(0)], start=T0 - dt.timedelta(days=d)).read().gpus[0],
                       source="nvml") for d in (10, 9, 0)]
    gpu_samples_write(rows=rows)
    oldest = retention.partition_name((T0 - dt.timedelta(days=10)).date())
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE {retention.PARENT} DETACH PARTITION "{oldest}"')
        cursor.execute("CREATE TABLE telemetry_gpusample_p2026_notes (id int)")  # not a day partition
    # when
    first = retention.gpu_sample_retention_apply(now=T0)
    second = retention.gpu_sample_retention_apply(now=T0)
    # then
    assert (first["partitions_dropped"], second["partitions_dropped"]) == (2, 0)
    assert list(GpuSample.objects.values_list("ts", flat=True)) == [T0]
    left = tables_like("telemetry_gpusample_p")
    assert oldest not in left and retention.partition_name((T0 - dt.timedelta(days=9)).date()) not in left
    assert "telemetry_gpusample_p2026_notes" in left and retention.partition_name(T0.date()) in left
