"""Full-text search over message bodies: a GIN expression index on PostgreSQL only.

The expression matches selectors._message_search (SearchVector("body", config="simple")),
so the planner uses it. SQLite (the embedded default) searches with LIKE instead.
"""

from django.db import migrations

INDEX_SQL = (
    "CREATE INDEX IF NOT EXISTS message_body_fts ON conversations_message "
    "USING gin (to_tsvector('simple'::regconfig, COALESCE(body, '')))"
)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INDEX_SQL)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS message_body_fts")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0002_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
