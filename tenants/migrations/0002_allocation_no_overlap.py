"""PostgreSQL only: the same GPU or MIG device can never be in two overlapping allocations.

Hand-written (keep it when regenerating migrations): an exclusion constraint over a tstzrange needs
btree_gist, and SQLite (the single-machine default) has no equivalent, so it is not in Meta.constraints.
The service checks the same rule under a row lock on every database; this makes it a database invariant.
"""

from django.db import migrations

CONSTRAINTS = [
    ("tenants_allocation_gpu_no_overlap", "gpu_id"),
    ("tenants_allocation_mig_no_overlap", "mig_device_id"),
]


def forwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    for name, column in CONSTRAINTS:
        schema_editor.execute(
            f"ALTER TABLE tenants_allocation ADD CONSTRAINT {name} EXCLUDE USING gist "
            f"({column} WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&) WHERE ({column} IS NOT NULL)"
        )


def backwards(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _column in CONSTRAINTS:
        schema_editor.execute(f"ALTER TABLE tenants_allocation DROP CONSTRAINT IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_tenants")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
