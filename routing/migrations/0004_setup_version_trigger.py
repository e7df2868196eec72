"""A version counter of the routing setup (rules, teams, skills, settings), bumped by a statement-level trigger
on every change of those four tables, however made (ORM, admin, bulk, raw SQL): routing_setup() compares it,
not a digest of the tables' contents, to know whether its per-process copy is current. PostgreSQL only.

The row is transactional (a change is seen with the new version only when it commits); the values come from
a sequence, which never goes back, so a rolled-back change's number is never given to another change."""

from django.db import migrations

TABLES = ("routing_routingrule", "routing_team", "routing_skill", "routing_routingconfig")

CREATE = """
CREATE SEQUENCE IF NOT EXISTS routing_setup_version_seq;
CREATE TABLE IF NOT EXISTS routing_setup_version (id int PRIMARY KEY, version bigint NOT NULL);
INSERT INTO routing_setup_version (id, version) VALUES (1, nextval('routing_setup_version_seq'))
    ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION routing_bump_setup_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO routing_setup_version (id, version) VALUES (1, nextval('routing_setup_version_seq'))
        ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END $$;
""" + "".join(f"""
DROP TRIGGER IF EXISTS routing_setup_version ON {table};
CREATE TRIGGER routing_setup_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION routing_bump_setup_version();
""" for table in TABLES)

DROP = "".join(f"DROP TRIGGER IF EXISTS routing_setup_version ON {table};\n" for table in TABLES) + """
DROP FUNCTION IF EXISTS routing_bump_setup_version();
DROP TABLE IF EXISTS routing_setup_version;
DROP SEQUENCE IF EXISTS routing_setup_version_seq;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("routing", "0003_routingconfig_agentprofile_last_assigned_at_and_more")]

    operations = [migrations.RunPython(forwards, backwards)]
