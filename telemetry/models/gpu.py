"""GPU telemetry storage (DESIGN.md §4): raw samples, per-GPU and per-site rollups, collection settings.

Time-series rows do not inherit `BaseModel`: `created_at`/`updated_at` (with an index) on every 10-second
sample would double the write cost for nothing; rollups carry `computed_at` instead.
"""

from __future__ import annotations

from django.core.validators import URLValidator
from django.db import models

from sites.models import PartnerScopedQuerySet

__all__ = [
    "HEATMAP_MAX_ROWS", "SiteUtilVector",
    "GpuCollectorMode", "GpuPollClaim", "GpuRollup1h", "GpuRollup1m", "GpuSample", "GpuUtilRollup", "NodeUtilRollup",
    "NodeGpuCollector", "RollupWatermark", "SiteGpuRollup1m",
]


class GpuCollectorMode(models.TextChoices):
    NVML_WORKER = "nvml", "NVML on a node worker (queue node.<hostname>)"
    DCGM = "dcgm", "dcgm-exporter scraped centrally"
    AGENT = "agent", "Node agent pushes to the API"


class GpuSampleQuerySet(PartnerScopedQuerySet):
    partner_path = "gpu__node__site__partner"


class GpuSample(models.Model):
    """One raw reading of one GPU, keyed (gpu, ts). None = NVML did not give it; `unsupported` says why.

    On PostgreSQL the table is range-partitioned by day on `ts` with a BRIN index on `ts`
    (migration `*_gpu_partitions`); retention drops whole partitions. `energy_mj` is the GPU's
    cumulative total-energy counter (mJ since driver load); energy per interval is derived in rollups.
    There is no database FK to the GPU (GPUs are never deleted, only flagged lost), which keeps COPY fast
    and lets partitions be dropped without touching `sites_gpu`.
    """

    pk = models.CompositePrimaryKey("gpu_id", "ts")
    gpu = models.ForeignKey("sites.Gpu", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
                            related_name="+")  # the primary key (gpu_id, ts) is the index
    ts = models.DateTimeField()
    source = models.CharField(max_length=8, default="nvml")
    util_pct = models.SmallIntegerField(null=True, blank=True)
    memory_util_pct = models.SmallIntegerField(null=True, blank=True)
    memory_used_bytes = models.BigIntegerField(null=True, blank=True)
    power_w = models.FloatField(null=True, blank=True)
    energy_mj = models.BigIntegerField("energy counter (mJ)", null=True, blank=True)
    temperature_c = models.SmallIntegerField(null=True, blank=True)
    sm_clock_mhz = models.IntegerField(null=True, blank=True)
    mem_clock_mhz = models.IntegerField(null=True, blank=True)
    throttle_reasons = models.BigIntegerField(null=True, blank=True)
    ecc_uncorrected_errors = models.BigIntegerField(null=True, blank=True)
    retired_pages_pending = models.BooleanField(null=True, blank=True)
    remapped_rows_uncorrectable = models.IntegerField(null=True, blank=True)
    unsupported = models.JSONField(null=True, blank=True, help_text="field → reason NVML did not give it")

    objects = GpuSampleQuerySet.as_manager()

    class Meta:
        ordering = ["gpu_id", "ts"]
        verbose_name = "GPU sample"

    def __str__(self) -> str:
        return f"gpu {self.gpu_id} @ {self.ts:%Y-%m-%d %H:%M:%S}"


class GpuRollupQuerySet(PartnerScopedQuerySet):
    partner_path = "gpu__node__site__partner"


class GpuRollupBase(models.Model):
    """Per-GPU aggregate over one bucket. Means are over the samples that had the value
    (`util_samples`, `power_samples`), so coarser rollups weight them correctly.

    `energy_j` sums counter deltas (exact, mJ/1000) of the samples in the bucket; where the GPU has no
    counter, power is integrated (trapezoid) and `energy_estimated` is set. NULL = no energy information.
    """

    gpu = models.ForeignKey("sites.Gpu", on_delete=models.PROTECT, related_name="+")
    bucket = models.DateTimeField()
    sample_count = models.PositiveIntegerField(default=0)
    util_samples = models.PositiveIntegerField(default=0)
    util_mean_pct = models.FloatField(null=True, blank=True)
    util_max_pct = models.SmallIntegerField(null=True, blank=True)
    power_samples = models.PositiveIntegerField(default=0)
    power_mean_w = models.FloatField(null=True, blank=True)
    power_max_w = models.FloatField(null=True, blank=True)
    energy_j = models.DecimalField(max_digits=20, decimal_places=3, null=True, blank=True)
    energy_estimated = models.BooleanField(default=False)
    memory_used_max_bytes = models.BigIntegerField(null=True, blank=True)
    temperature_max_c = models.SmallIntegerField(null=True, blank=True)
    computed_at = models.DateTimeField(auto_now=True)

    objects = GpuRollupQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["gpu_id", "bucket"]

    def __str__(self) -> str:
        return f"gpu {self.gpu_id} {self.bucket:%Y-%m-%d %H:%M}"


class GpuRollup1m(GpuRollupBase):
    """Per-GPU 1-minute rollup; `bucket` is the start of the minute (UTC)."""

    class Meta(GpuRollupBase.Meta):
        verbose_name = "GPU 1-minute rollup"
        constraints = [
            models.UniqueConstraint(fields=["gpu", "bucket"], name="%(app_label)s_%(class)s_unique_gpu_bucket",
                                    violation_error_message="This GPU already has a rollup for this minute."),
        ]


class GpuRollup1h(GpuRollupBase):
    """Per-GPU 1-hour rollup, computed from the 1-minute rollups; `bucket` is the start of the hour (UTC)."""

    class Meta(GpuRollupBase.Meta):
        verbose_name = "GPU 1-hour rollup"
        constraints = [
            models.UniqueConstraint(fields=["gpu", "bucket"], name="%(app_label)s_%(class)s_unique_gpu_bucket",
                                    violation_error_message="This GPU already has a rollup for this hour."),
        ]


class GpuUtilRollup(models.Model):
    """Per-GPU utilization over 6-hour and 1-day blocks (`span_h` 6 or 24), for the site heatmap.

    A 30-day heatmap of a 1,000-GPU site reads 30,000 day rows here instead of aggregating 720,000 hourly
    rollups (docs/dashboards.md). Computed from the hourly rollups (6 h) and the 6-hour rows (1 day) by
    `telemetry.rollups.gpu_util_rollup_compute`, which recomputes whole blocks and upserts them; the block in
    progress is recomputed on every rollup run. `util_mean_pct` is sample-weighted, NULL when no sample had one.
    """

    gpu = models.ForeignKey("sites.Gpu", on_delete=models.PROTECT, related_name="+", db_index=False)
    span_h = models.PositiveSmallIntegerField()
    bucket = models.DateTimeField()
    util_samples = models.PositiveIntegerField(default=0)
    util_mean_pct = models.FloatField(null=True, blank=True)
    computed_at = models.DateTimeField(auto_now=True)

    objects = GpuRollupQuerySet.as_manager()

    class Meta:
        ordering = ["gpu_id", "span_h", "bucket"]
        verbose_name = "GPU utilization block rollup"
        constraints = [
            models.UniqueConstraint(fields=["gpu", "span_h", "bucket"],
                                    name="%(app_label)s_%(class)s_unique_gpu_span_bucket",
                                    violation_error_message="This GPU already has a rollup for this block."),
        ]
        # Covering: a cold heatmap reads (gpu, span, bucket) ranges of ~30,000 rows; with the two figures in the index
        # it is an index-only scan instead of one heap page per row (≈ 60 → 15–22 ms at 1,000 GPUs × 7 days).
        indexes = [models.Index(fields=["gpu", "span_h", "bucket"], include=["util_mean_pct", "util_samples"],
                                name="telemetry_gpuutil_cover")]

    def __str__(self) -> str:
        return f"gpu {self.gpu_id} {self.span_h} h {self.bucket:%Y-%m-%d %H:%M}"


class NodeUtilRollupQuerySet(PartnerScopedQuerySet):
    partner_path = "node__site__partner"


class NodeUtilRollup(models.Model):
    """Per-node utilization over 1-hour, 6-hour and 1-day blocks (`span_h` 1, 6 or 24): the heatmap of a site with
    more than `HEATMAP_MAX_ROWS` GPUs shows a row per node, and reading these rows (1,125 nodes × 30 days = 33,750)
    replaces aggregating its GPUs' rows (9,000 × 30) on every cold request (docs/dashboards.md).

    The hour is the sample-weighted mean of the node's GPUs' hourly rollups, the 6 h of the node's hours, the day of
    its 6-hour blocks; computed with the GPU blocks by `telemetry.rollups.gpu_util_rollup_compute` (whole blocks,
    upserted). GPUs count towards the node they belong to when their block is computed (a GPU moved to another node
    keeps its settled history on the old one).
    """

    node = models.ForeignKey("sites.Node", on_delete=models.PROTECT, related_name="+", db_index=False)
    span_h = models.PositiveSmallIntegerField()
    bucket = models.DateTimeField()
    util_samples = models.PositiveIntegerField(default=0)
    util_mean_pct = models.FloatField(null=True, blank=True)
    computed_at = models.DateTimeField(auto_now=True)

    objects = NodeUtilRollupQuerySet.as_manager()

    class Meta:
        ordering = ["node_id", "span_h", "bucket"]
        verbose_name = "node utilization block rollup"
        constraints = [
            models.UniqueConstraint(fields=["node", "span_h", "bucket"],
                                    name="%(app_label)s_%(class)s_unique_node_span_bucket",
                                    violation_error_message="This node already has a rollup for this block."),
        ]
        indexes = [models.Index(fields=["span_h", "bucket"], name="telemetry_nodeutil_span_bucket"),
                   # Covering, for the heatmap's node rows (as GpuUtilRollup's): an index-only scan.
                   models.Index(fields=["node", "span_h", "bucket"], include=["util_mean_pct", "util_samples"],
                                name="telemetry_nodeutil_cover")]

    def __str__(self) -> str:
        return f"node {self.node_id} {self.span_h} h {self.bucket:%Y-%m-%d %H:%M}"


class SiteGpuRollupQuerySet(PartnerScopedQuerySet):
    partner_path = "site__partner"


class SiteGpuRollup1m(models.Model):
    """Per-site 1-minute rollup over the GPU 1-minute rollups of its nodes.

    `power_mean_w` is the site's mean GPU draw (sum over GPUs of their mean); `power_max_w` is the sum of
    the GPUs' maxima, an upper bound of the site's peak in that minute. `util_mean_pct` is the mean over
    all GPU samples that had utilization; `util_max_pct` the highest single-GPU value.
    """

    site = models.ForeignKey("sites.Site", on_delete=models.PROTECT, related_name="+")
    bucket = models.DateTimeField()
    gpu_count = models.PositiveIntegerField(default=0)
    sample_count = models.PositiveIntegerField(default=0)
    util_samples = models.PositiveIntegerField(default=0)
    util_mean_pct = models.FloatField(null=True, blank=True)
    util_max_pct = models.SmallIntegerField(null=True, blank=True)
    power_mean_w = models.FloatField(null=True, blank=True)
    power_max_w = models.FloatField(null=True, blank=True)
    energy_j = models.DecimalField(max_digits=20, decimal_places=3, null=True, blank=True)
    energy_estimated = models.BooleanField(default=False)
    computed_at = models.DateTimeField(auto_now=True)

    objects = SiteGpuRollupQuerySet.as_manager()

    class Meta:
        ordering = ["site_id", "bucket"]
        verbose_name = "site GPU 1-minute rollup"
        constraints = [
            models.UniqueConstraint(fields=["site", "bucket"], name="%(app_label)s_%(class)s_unique_site_bucket",
                                    violation_error_message="This site already has a rollup for this minute."),
        ]

    def __str__(self) -> str:
        return f"site {self.site_id} {self.bucket:%Y-%m-%d %H:%M}"


# Beyond this many GPUs a site's heatmap row is a node (the mean of its GPUs), and beyond this many nodes a bin of
# consecutive nodes: thousands of one-pixel rows show nothing, and the cell count must stay bounded.
HEATMAP_MAX_ROWS = 1_200


class SiteUtilVectorQuerySet(PartnerScopedQuerySet):
    partner_path = "site__partner"


class SiteUtilVector(models.Model):
    """One block of a site's heatmap in one row: every GPU's (or, on a site of more than `HEATMAP_MAX_ROWS` GPUs,
    every node's) Σ utilization × samples and Σ samples over a 1-hour, 6-hour or 1-day block (`span_h`).

    The same figures as the GPUs' hourly rollups and utilization blocks (`GpuUtilRollup`, `NodeUtilRollup`), laid out
    per site: a cold 30-day heatmap of a 1,000-GPU site reads 30 rows of packed vectors instead of 30,000 rows
    (docs/dashboards.md). `ids`, `weighted` and `samples` are packed big-endian arrays, aligned, ordered by id: int4
    GPU or node ids, float8 Σ util × samples, int4 Σ samples (only owners that had a utilization sample). Written
    with the blocks by `telemetry.rollups.site_util_vectors_compute` (whole blocks, upserted, PostgreSQL only);
    owners count towards the site their node belongs to when the block is computed.
    """

    class Rows(models.TextChoices):
        GPU = "gpu", "GPU"
        NODE = "node", "node"

    site = models.ForeignKey("sites.Site", on_delete=models.CASCADE, related_name="+", db_index=False)
    rows = models.CharField(max_length=4, choices=Rows.choices)
    span_h = models.PositiveSmallIntegerField()
    bucket = models.DateTimeField()
    ids = models.BinaryField()
    weighted = models.BinaryField()
    samples = models.BinaryField()
    computed_at = models.DateTimeField(auto_now=True)

    objects = SiteUtilVectorQuerySet.as_manager()

    class Meta:
        ordering = ["site_id", "rows", "span_h", "bucket"]
        verbose_name = "site utilization vector"
        constraints = [
            models.UniqueConstraint(fields=["site", "rows", "span_h", "bucket"],
                                    name="%(app_label)s_%(class)s_unique_site_rows_span_bucket",
                                    violation_error_message="This site already has a vector for this block."),
        ]
        indexes = [models.Index(fields=["span_h", "bucket"], name="telemetry_siteutil_span_bucket")]

    def __str__(self) -> str:
        return f"site {self.site_id} {self.rows} {self.span_h} h {self.bucket:%Y-%m-%d %H:%M}"


class RollupWatermark(models.Model):
    """How far a rollup job has got: everything before `done_until` has been computed at least once."""

    name = models.CharField(max_length=64, unique=True)
    done_until = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} → {self.done_until:%Y-%m-%d %H:%M}"


class GpuPollClaim(models.Model):
    """When a site's nodes are next due for a GPU poll. The scheduler claims a due site with a
    conditional UPDATE, so two schedulers (or a retried tick) enqueue one poll, not two."""

    site = models.OneToOneField("sites.Site", on_delete=models.CASCADE, related_name="+")
    next_due_at = models.DateTimeField()

    class Meta:
        ordering = ["next_due_at"]

    def __str__(self) -> str:
        return f"site {self.site_id} due {self.next_due_at:%H:%M:%S}"


class NodeGpuCollectorQuerySet(PartnerScopedQuerySet):
    partner_path = "node__site__partner"


class NodeGpuCollector(models.Model):
    """How a node's GPUs are read. No row = NVML on the node's Celery worker (the default)."""

    node = models.OneToOneField("sites.Node", on_delete=models.CASCADE, related_name="gpu_collector")
    mode = models.CharField(max_length=8, choices=GpuCollectorMode.choices, default=GpuCollectorMode.NVML_WORKER)
    dcgm_url = models.CharField(
        "dcgm-exporter URL", max_length=500, blank=True,
        validators=[URLValidator(schemes=["http", "https"], message="Enter a valid http:// or https:// URL.")],
        help_text="e.g. http://10.0.0.12:9400/metrics (dcgm mode only)",
    )

    objects = NodeGpuCollectorQuerySet.as_manager()

    class Meta:
        ordering = ["node_id"]
        verbose_name = "node GPU collector"

    def __str__(self) -> str:
        return f"{self.node_id}: {self.mode}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.mode == GpuCollectorMode.DCGM and not self.dcgm_url:
            raise ValidationError({"dcgm_url": "dcgm mode needs the exporter's /metrics URL."})
