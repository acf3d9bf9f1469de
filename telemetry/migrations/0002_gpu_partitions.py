"""On PostgreSQL, turn telemetry_gpusample into a table range-partitioned by day on ts, with BRIN on ts.

Hand-written and vendor-conditional: SQLite keeps the plain table Django created. The table is empty
here (it was created by the previous migration), so it is swapped rather than converted. Partitions are
created ahead by `gpu_sample_partitions_ensure_task` and on demand by the ingest path; retention drops them.
When migrations are regenerated, keep this file and point its dependency at the migration creating GpuSample.
"""

from django.db import migrations

FORWARD = [
    "CREATE TABLE telemetry_gpusample_part (LIKE telemetry_gpusample INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    " PARTITION BY RANGE (ts)",
    "ALTER TABLE telemetry_gpusample_part ADD CONSTRAINT telemetry_gpusample_part_pkey PRIMARY KEY (gpu_id, ts)",
    "DROP TABLE telemetry_gpusample",
    "ALTER TABLE telemetry_gpusample_part RENAME TO telemetry_gpusample",
    "ALTER TABLE telemetry_gpusample RENAME CONSTRAINT telemetry_gpusample_part_pkey TO telemetry_gpusample_pkey",
    "CREATE INDEX telemetry_gpusample_ts_brin ON telemetry_gpusample USING brin (ts)",
]


def partition(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for statement in FORWARD:
        schema_editor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ("telemetry", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(partition, migrations.RunPython.noop, elidable=False),
    ]
