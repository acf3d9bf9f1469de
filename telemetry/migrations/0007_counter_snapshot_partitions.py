"""Counter snapshots become history only, partitioned by day on PostgreSQL.

1. Each series gets its last counters (`EngineSeries.last_*`), filled here from its newest snapshot: the scrape path
   diffs against them instead of probing `telemetry_countersnapshot`, so an idle series keeps its baseline after
   its snapshots' partitions are dropped.
2. On PostgreSQL, `telemetry_countersnapshot` is rebuilt as a table range-partitioned by UTC day on `scraped_at`
   with primary key (series_id, scraped_at) (the old `id` column and unique constraint go; a partitioned table's
   keys must contain the partition key). Existing rows are copied into day partitions named like the ones
   `telemetry.retention` creates ahead. The database foreign key to the series goes (the ORM still cascades):
   dropping a partition would otherwise lock `telemetry_engineseries` against every scrape. SQLite keeps its plain
   table (the unused `id` column stays as its rowid alias, and its foreign key); the model state is the same.

Hand-written (the database side of step 2 is vendor-conditional SQL). When migrations are regenerated, keep this
file and point its dependency at the latest telemetry migration.
"""

import datetime as dt

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

LAST_FIELDS = ("scraped_at", "process_start_time_s", "prompt_tokens", "generation_tokens", "requests_ok",
               "requests_failed", "requests_by_reason", "ttft_sum_s", "ttft_count", "itl_sum_s", "itl_count")


def fill_last_counters(apps, schema_editor) -> None:
    """Every series' last counters from its newest snapshot (one UPDATE; series without snapshots stay NULL)."""
    EngineSeries = apps.get_model("telemetry", "EngineSeries")
    CounterSnapshot = apps.get_model("telemetry", "CounterSnapshot")
    newest = CounterSnapshot.objects.filter(series_id=OuterRef("pk")).order_by("-scraped_at")
    EngineSeries.objects.update(**{f"last_{f}": Subquery(newest.values(f)[:1]) for f in LAST_FIELDS})


def partition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    old, new = "telemetry_countersnapshot", "telemetry_countersnapshot_part"
    execute = schema_editor.execute
    execute(f"CREATE TABLE {new} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE (scraped_at)")
    execute(f"ALTER TABLE {new} DROP COLUMN id")
    execute(f"ALTER TABLE {new} ADD CONSTRAINT {new}_pkey PRIMARY KEY (series_id, scraped_at)")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT (scraped_at AT TIME ZONE 'UTC')::date FROM {old}")
        days = {row[0] for row in cursor.fetchall()}
    # Today and the next days too, so scrapes right after the migration need not create them.
    today = dt.datetime.now(tz=dt.UTC).date()
    days |= {today + dt.timedelta(days=n) for n in range(-1, 4)}
    for day in sorted(days):
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        execute(f'CREATE TABLE "{old}_p{day:%Y%m%d}" PARTITION OF {new} FOR VALUES FROM (%s) TO (%s)',
                [start, start + dt.timedelta(days=1)])
    columns = ", ".join(["series_id", *(f for f in LAST_FIELDS if f != "scraped_at"), "scraped_at", "running",
                         "waiting", "kv_cache_usage"])
    execute(f"INSERT INTO {new} ({columns}) SELECT {columns} FROM {old}")
    execute(f"DROP TABLE {old}")
    execute(f"ALTER TABLE {new} RENAME TO {old}")
    execute(f"ALTER TABLE {old} RENAME CONSTRAINT {new}_pkey TO {old}_pkey")


def _last(name: str, field: models.Field) -> migrations.AddField:
    return migrations.AddField(model_name="engineseries", name=f"last_{name}", field=field)


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0006_dashboards_warm"),
    ]

    operations = [
        _last("scraped_at", models.DateTimeField(blank=True, null=True)),
        _last("process_start_time_s", models.FloatField(blank=True, null=True)),
        _last("prompt_tokens", models.BigIntegerField(blank=True, null=True)),
        _last("generation_tokens", models.BigIntegerField(blank=True, null=True)),
        _last("requests_ok", models.BigIntegerField(blank=True, null=True)),
        _last("requests_failed", models.BigIntegerField(blank=True, null=True)),
        _last("requests_by_reason", models.JSONField(blank=True, null=True)),
        _last("ttft_sum_s", models.FloatField(blank=True, null=True)),
        _last("ttft_count", models.BigIntegerField(blank=True, null=True)),
        _last("itl_sum_s", models.FloatField(blank=True, null=True)),
        _last("itl_count", models.BigIntegerField(blank=True, null=True)),
        migrations.RunPython(fill_last_counters, migrations.RunPython.noop, elidable=False),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="countersnapshot",
                    name="telemetry_countersnapshot_unique_series_ts",
                ),
                migrations.RemoveField(
                    model_name="countersnapshot",
                    name="id",
                ),
                migrations.AddField(
                    model_name="countersnapshot",
                    name="pk",
                    field=models.CompositePrimaryKey("series_id", "scraped_at", blank=True, editable=False,
                                                     primary_key=True, serialize=False),
                ),
                migrations.AlterField(
                    model_name="countersnapshot",
                    name="series",
                    field=models.ForeignKey(db_constraint=False, db_index=False,
                                            on_delete=django.db.models.deletion.CASCADE, related_name="snapshots",
                                            to="telemetry.engineseries"),
                ),
            ],
            database_operations=[
                migrations.RunPython(partition, migrations.RunPython.noop, elidable=False),
            ],
        ),
    ]
