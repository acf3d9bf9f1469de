"""Seeding helpers for the dashboard tests: rollups, raw samples and usage written straight through the ORM."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core.cache import cache
from django.db.models import F
from django.utils import timezone

from telemetry.models import GpuRollup1h, GpuRollup1m, GpuSample, SiteGpuRollup1m
from telemetry.models.metering import EngineSeries, UsageDelta, UsageRollup

# The dashboard tests' clock: a Monday just after noon (UTC), day 0 three days earlier.
NOW = dt.datetime(2026, 5, 4, 12, 0, 30, tzinfo=dt.UTC)
DAY0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


@pytest.fixture
def frozen_now():
    """Time frozen at NOW, with an empty cache before and after (the charts cache per site and day)."""
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        yield
    cache.clear()


def minute_rollups(*, site, start: dt.datetime, minutes: int, util: float, power_w: float, gpus: int = 1,
                   energy_j: str | None = "6000") -> None:
    SiteGpuRollup1m.objects.bulk_create([
        SiteGpuRollup1m(site=site, bucket=start + dt.timedelta(minutes=i), gpu_count=gpus, sample_count=6 * gpus,
                        util_samples=6 * gpus, util_mean_pct=util, util_max_pct=int(util), power_mean_w=power_w,
                        power_max_w=power_w * 1.1, energy_j=Decimal(energy_j) if energy_j else None)
        for i in range(minutes)])


def gpu_rollups(*, gpu, start: dt.datetime, count: int, util: float, model=GpuRollup1h, step=dt.timedelta(hours=1),
                ) -> None:
    model.objects.bulk_create([
        model(gpu=gpu, bucket=start + i * step, sample_count=6, util_samples=6, util_mean_pct=util,
              util_max_pct=int(util), power_samples=6, power_mean_w=300.0, power_max_w=350.0,
              energy_j=Decimal("1080000"), memory_used_max_bytes=40 * 2**30, temperature_max_c=61)
        for i in range(count)])


def sample(*, gpu, ts: dt.datetime | None = None, **values) -> GpuSample:
    """A raw reading, and on the GPU row what the ingest keeps with it (`telemetry.gpu_services._gpus_refresh`): the
    reading's `last_util_pct` / `last_power_w` when it is the GPU's newest stored reading (an older one never rolls
    them back), and `last_seen_at` moved up to it. Fixtures that set `last_seen_at` without a reading keep theirs
    when it is later."""
    from sites.models import Gpu
    from telemetry.retention import gpu_sample_partitions_ensure

    ts = ts or timezone.now()
    gpu_sample_partitions_ensure(days=[ts.date()])  # the day partition must exist on PostgreSQL
    row = Gpu.objects.get(pk=gpu.pk)
    changes: dict = {"last_seen_at": max(row.last_seen_at or ts, ts)}
    if not GpuSample.objects.filter(gpu_id=gpu.pk, ts__gt=ts).exists():
        changes |= {"last_util_pct": values.get("util_pct"), "last_power_w": values.get("power_w")}
    Gpu.objects.filter(pk=gpu.pk).update(**changes)
    return GpuSample.objects.create(gpu_id=gpu.pk, ts=ts, **values)


def usage(*, endpoint, model: str, end: dt.datetime, seconds: int, prompt: int, generation: int, labels=None,
          ok: int = 1, failed: int = 0, ttft: tuple[float, int] = (0.0, 0), itl: tuple[float, int] = (0.0, 0),
          rollup: bool = False) -> EngineSeries:
    series, _ = EngineSeries.objects.get_or_create(
        endpoint=endpoint, key=f"{model}:{sorted((labels or {}).items())}"[:64],
        defaults={"model": model, "labels": labels or {}, "first_seen_at": end, "last_seen_at": end})
    UsageDelta.objects.create(series=series, endpoint=endpoint, interval_start=end - dt.timedelta(seconds=seconds),
                              interval_end=end, prompt_tokens=prompt, generation_tokens=generation, requests_ok=ok,
                              requests_failed=failed, ttft_sum_s=ttft[0], ttft_count=ttft[1], itl_sum_s=itl[0],
                              itl_count=itl[1])
    if rollup:  # fold into the hour's rollup, as telemetry's usage_rollup would
        r, _ = UsageRollup.objects.get_or_create(series=series, bucket="hour",
                                                 bucket_start=end.replace(minute=0, second=0, microsecond=0),
                                                 defaults={"endpoint": endpoint, "model": model})
        UsageRollup.objects.filter(pk=r.pk).update(
            prompt_tokens=F("prompt_tokens") + prompt, generation_tokens=F("generation_tokens") + generation,
            requests_ok=F("requests_ok") + ok, requests_failed=F("requests_failed") + failed,
            ttft_sum_s=F("ttft_sum_s") + ttft[0], ttft_count=F("ttft_count") + ttft[1],
            itl_sum_s=F("itl_sum_s") + itl[0], itl_count=F("itl_count") + itl[1])
    return series


__all__ = ["GpuRollup1m", "gpu_rollups", "minute_rollups", "sample", "usage"]


def hourly_uneven(gpu, start: dt.datetime, hours: int, *, phase: int = 0) -> None:
    """Hourly rollups whose utilization and sample counts vary (some hours have none), so a plain mean would
    differ from the sample-weighted one."""
    GpuRollup1h.objects.bulk_create([
        GpuRollup1h(gpu=gpu, bucket=start + dt.timedelta(hours=h), sample_count=360,
                    util_samples=0 if (h + phase) % 11 == 5 else 100 + (h * 37 + phase) % 260,
                    util_mean_pct=None if (h + phase) % 11 == 5 else float((h * 13 + phase * 7) % 101),
                    power_samples=360, power_mean_w=300.0, energy_j=Decimal("1000"))
        for h in range(hours)])


def util_mean_slow(gpu_ids: list[int], start: dt.datetime, end: dt.datetime) -> float | None:
    """The sample-weighted utilization of hourly rollups in [start, end), row by row (the figure to match)."""
    rows = GpuRollup1h.objects.filter(gpu_id__in=gpu_ids, bucket__gte=start, bucket__lt=end)
    weighted = sum(r.util_mean_pct * r.util_samples for r in rows if r.util_samples)
    n = sum(r.util_samples for r in rows if r.util_samples)
    return weighted / n if n else None
