"""Engine scrapes: series identity, counter snapshots, usage deltas and hourly/daily usage rollups.

The facts are the cumulative counters an engine printed (`CounterSnapshot`). A `UsageDelta` is what was used
between two consecutive snapshots of a series (reset-aware, DESIGN.md §5.1); rollups sum deltas per bucket.
The counters the next reading is diffed against are the series' own `last_*` columns, so snapshots are history only:
on PostgreSQL they are range-partitioned by day and retention drops whole days.
Usage is stored unattributed: the tenants app maps (endpoint, label, value) to tenants from `EngineSeries.labels`.
"""

from __future__ import annotations

from django.db import models

from factory_portal.models import BaseModel
from sites.models import PartnerScopedQuerySet

__all__ = ["CounterSnapshot", "EngineSeries", "UsageBucket", "UsageDelta", "UsageRollup"]


class EngineSeriesQuerySet(PartnerScopedQuerySet):
    partner_path = "endpoint__site__partner"


class EngineSeries(BaseModel):
    """One raw series of an endpoint: a model, the attribution labels, and the labels naming the counting process.

    Deltas are computed per raw series; usage is summed over `split_labels` only when reported (rollup selectors),
    so one vLLM engine restarting never makes the other engines' totals count again.
    """

    endpoint = models.ForeignKey("sites.ServingEndpoint", on_delete=models.CASCADE, related_name="engine_series")
    # sha256 of the canonical JSON of (model, labels[, split_labels]): a fixed-width unique key.
    key = models.CharField(max_length=64)
    model = models.CharField(max_length=300, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    # e.g. {"engine": "1"} for vLLM's data-parallel engines; not used for attribution.
    split_labels = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # The newest snapshot's counters, written with it in the scrape transaction (the endpoint rows are locked, so
    # writes are serialised) and never moved back. The next reading is diffed against them, however old they are,
    # so retention can drop snapshot partitions without losing an idle series' baseline. NULL: never recorded.
    last_scraped_at = models.DateTimeField(null=True, blank=True)
    last_process_start_time_s = models.FloatField(null=True, blank=True)
    last_prompt_tokens = models.BigIntegerField(null=True, blank=True)
    last_generation_tokens = models.BigIntegerField(null=True, blank=True)
    last_requests_ok = models.BigIntegerField(null=True, blank=True)
    last_requests_failed = models.BigIntegerField(null=True, blank=True)
    last_requests_by_reason = models.JSONField(null=True, blank=True)
    last_ttft_sum_s = models.FloatField(null=True, blank=True)
    last_ttft_count = models.BigIntegerField(null=True, blank=True)
    last_itl_sum_s = models.FloatField(null=True, blank=True)
    last_itl_count = models.BigIntegerField(null=True, blank=True)

    objects = EngineSeriesQuerySet.as_manager()

    class Meta:
        ordering = ["endpoint_id", "model", "key"]
        verbose_name_plural = "engine series"
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "key"],
                name="%(app_label)s_%(class)s_unique_endpoint_key",
                violation_error_message="This endpoint already has this series.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_id}:{self.model or '-'}{self.labels or ''}{self.split_labels or ''}"


class CounterSnapshot(models.Model):
    """The cumulative counters and the gauges of one series at one scrape, keyed (series, scraped_at). NULL: the
    engine does not expose it.

    History only: the scrape path diffs against `EngineSeries.last_*`, never reads this table. On PostgreSQL it is
    range-partitioned by UTC day on `scraped_at` (migration `*_counter_snapshot_partitions`); retention drops whole
    day partitions (`telemetry.retention`). SQLite keeps one plain table (with its old `id` column) and a DELETE.
    """

    pk = models.CompositePrimaryKey("series_id", "scraped_at")
    # The primary key (series_id, scraped_at) is the index. No database FK (the ORM still cascades a series'
    # deletion): dropping or detaching a partition that references `telemetry_engineseries` would take a lock on
    # it that waits for, and then blocks, every scrape transaction; and each insert would check it.
    series = models.ForeignKey("telemetry.EngineSeries", on_delete=models.CASCADE, related_name="snapshots",
                               db_index=False, db_constraint=False)
    scraped_at = models.DateTimeField()
    process_start_time_s = models.FloatField(null=True, blank=True)
    prompt_tokens = models.BigIntegerField(null=True, blank=True)
    generation_tokens = models.BigIntegerField(null=True, blank=True)
    requests_ok = models.BigIntegerField(null=True, blank=True)
    requests_failed = models.BigIntegerField(null=True, blank=True)
    requests_by_reason = models.JSONField(null=True, blank=True)
    ttft_sum_s = models.FloatField(null=True, blank=True)
    ttft_count = models.BigIntegerField(null=True, blank=True)
    itl_sum_s = models.FloatField(null=True, blank=True)
    itl_count = models.BigIntegerField(null=True, blank=True)
    running = models.FloatField(null=True, blank=True)
    waiting = models.FloatField(null=True, blank=True)
    kv_cache_usage = models.FloatField("KV-cache usage (fraction 0..1)", null=True, blank=True)

    class Meta:
        ordering = ["series_id", "scraped_at"]

    def __str__(self) -> str:
        return f"{self.series_id}@{self.scraped_at:%Y-%m-%d %H:%M:%S}"


class UsageDeltaQuerySet(PartnerScopedQuerySet):
    partner_path = "endpoint__site__partner"


class UsageDelta(models.Model):
    """What a series used between two consecutive snapshots (`interval_start`, `interval_end`]."""

    series = models.ForeignKey("telemetry.EngineSeries", on_delete=models.CASCADE, related_name="deltas")
    endpoint = models.ForeignKey("sites.ServingEndpoint", on_delete=models.CASCADE, related_name="usage_deltas")
    interval_start = models.DateTimeField()
    interval_end = models.DateTimeField(db_index=True)
    prompt_tokens = models.BigIntegerField(default=0)
    generation_tokens = models.BigIntegerField(default=0)
    requests_ok = models.BigIntegerField(default=0)
    requests_failed = models.BigIntegerField(default=0)
    requests_by_reason = models.JSONField(default=dict, blank=True)
    ttft_sum_s = models.FloatField(default=0)
    ttft_count = models.BigIntegerField(default=0)
    itl_sum_s = models.FloatField(default=0)
    itl_count = models.BigIntegerField(default=0)
    # The counters went back or the process start time changed: the new values were taken whole.
    reset = models.BooleanField(default=False)
    # Claimed by usage_rollup (conditional UPDATE) when its hour and day buckets are recomputed.
    rolled_up = models.BooleanField(default=False)

    objects = UsageDeltaQuerySet.as_manager()

    class Meta:
        ordering = ["interval_end"]
        constraints = [
            models.UniqueConstraint(
                fields=["series", "interval_end"],
                name="%(app_label)s_%(class)s_unique_series_end",
                violation_error_message="This series already has a delta ending at this time.",
            )
        ]
        indexes = [
            # Small: only the deltas still waiting for the rollup.
            models.Index(fields=["id"], condition=models.Q(rolled_up=False), name="telemetry_usagedelta_unrolled"),
        ]

    def __str__(self) -> str:
        return f"{self.series_id} {self.interval_start:%H:%M:%S}–{self.interval_end:%H:%M:%S}"


class UsageBucket(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class UsageRollupQuerySet(PartnerScopedQuerySet):
    partner_path = "endpoint__site__partner"


class UsageRollup(models.Model):
    """Sum of a series' deltas whose interval ends in [bucket_start, bucket_start + bucket) (UTC)."""

    series = models.ForeignKey("telemetry.EngineSeries", on_delete=models.CASCADE, related_name="rollups")
    endpoint = models.ForeignKey("sites.ServingEndpoint", on_delete=models.CASCADE, related_name="usage_rollups")
    model = models.CharField(max_length=300, blank=True)
    bucket = models.CharField(max_length=8, choices=UsageBucket.choices)
    bucket_start = models.DateTimeField()
    prompt_tokens = models.BigIntegerField(default=0)
    generation_tokens = models.BigIntegerField(default=0)
    requests_ok = models.BigIntegerField(default=0)
    requests_failed = models.BigIntegerField(default=0)
    ttft_sum_s = models.FloatField(default=0)
    ttft_count = models.BigIntegerField(default=0)
    itl_sum_s = models.FloatField(default=0)
    itl_count = models.BigIntegerField(default=0)

    objects = UsageRollupQuerySet.as_manager()

    class Meta:
        ordering = ["bucket_start", "endpoint_id", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["series", "bucket", "bucket_start"],
                name="%(app_label)s_%(class)s_unique_series_bucket",
                violation_error_message="This series already has a rollup for this bucket.",
            )
        ]
        indexes = [models.Index(fields=["bucket", "bucket_start"], name="telemetry_usage_bucket_ts")]

    def __str__(self) -> str:
        return f"{self.series_id} {self.bucket} {self.bucket_start:%Y-%m-%d %H:%M}"
