"""Search by subject: a trigram GIN index on PostgreSQL (pg_trgm), so ``subject ILIKE '%word%'`` is an
index lookup instead of a scan of every open conversation (selectors._search).

The console runs without it (it then scans): where the database user may not create the extension, the
migration leaves it out with a warning instead of failing. SQLite (the embedded default) has neither.
"""

import warnings

from django.db import DatabaseError, migrations

INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS conv_subject_trgm ON conversations_conversation "
    "USING gin (upper(subject::text) gin_trgm_ops)"
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SAVEPOINT conv_subject_trgm")
            try:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except DatabaseError:
                cursor.execute("ROLLBACK TO SAVEPOINT conv_subject_trgm")
                raise
            cursor.execute("RELEASE SAVEPOINT conv_subject_trgm")
    except DatabaseError as exc:
        warnings.warn(f"pg_trgm not available ({exc}); subject search scans instead of using an index", stacklevel=1)
        return
    schema_editor.execute(INDEX_SQL)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS conv_subject_trgm")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0009_inbounddelivery")]
    operations = [migrations.RunPython(forwards, backwards)]
