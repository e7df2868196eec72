"""Agents' loads kept by triggers (PostgreSQL): routing_agentload holds, per user, the open conversations assigned
to them and the live-chat offers waiting for their accept, live chat apart from asynchronous channels: exactly
what routing.actions' capacity counts count, maintained in the transaction that changes a conversation, a queue
entry or an inbox, however it is changed. Routing then reads a load with a key lookup, not two counts per
candidate agent (bench/: the candidates' statement was most of a decision's database time for large teams).

- Row triggers on conversations_conversation (assignee, status, inbox) and routing_queueentry (state, agent,
  inbox) move the changed row's contribution from its old (user, class) to its new one; unchanged: no write.
- Statement triggers recount everything (routing_reconcile_loads) when an inbox changes kind or is deleted,
  when an agent profile changes user, and after TRUNCATE of those tables.
- routing_reconcile_loads() recounts under a lock that waits for every transaction that changed a load, and
  returns how many users' rows it corrected (routing.tasks runs it hourly and logs a non-zero result).

CHAT_KINDS are the live channels of conversations.channels (tests/routing/test_agent_load.py checks they agree;
a new live channel re-creates these functions in a migration of its own)."""

from django.db import migrations, models

CHAT_KINDS = ("webchat",)
_KINDS = ", ".join(f"'{k}'" for k in CHAT_KINDS)

CREATE = f"""
CREATE OR REPLACE FUNCTION routing_reconcile_loads() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE corrected integer;
BEGIN
    -- Waits for every transaction that changed a load (their triggers hold ROW EXCLUSIVE on the table) and
    -- holds off new ones until this transaction ends; each statement below then sees all they committed.
    LOCK TABLE routing_agentload IN SHARE ROW EXCLUSIVE MODE;
    CREATE TEMP TABLE IF NOT EXISTS routing_fresh_loads (user_id bigint PRIMARY KEY, chats int, asynchronous int)
        ON COMMIT DROP;
    DELETE FROM routing_fresh_loads;
    INSERT INTO routing_fresh_loads (user_id, chats, asynchronous)
    SELECT user_id, sum(chats), sum(asynchronous) FROM (
        SELECT c.assignee_id AS user_id, count(*) FILTER (WHERE i.kind IN ({_KINDS})) AS chats,
               count(*) FILTER (WHERE i.kind NOT IN ({_KINDS})) AS asynchronous
          FROM conversations_conversation c JOIN conversations_inbox i ON i.id = c.inbox_id
         WHERE c.status = 'open' AND c.assignee_id IS NOT NULL GROUP BY 1
        UNION ALL
        SELECT p.user_id, count(*) FILTER (WHERE i.kind IN ({_KINDS})),
               count(*) FILTER (WHERE i.kind NOT IN ({_KINDS}))
          FROM routing_queueentry q JOIN conversations_inbox i ON i.id = q.inbox_id
          JOIN routing_agentprofile p ON p.id = q.offered_to_id
         WHERE q.state = 'offered' GROUP BY 1
    ) t GROUP BY 1;
    SELECT count(*) INTO corrected FROM routing_fresh_loads f FULL JOIN routing_agentload l ON l.user_id = f.user_id
     WHERE coalesce(f.chats, 0) <> coalesce(l.chats, 0) OR coalesce(f.asynchronous, 0) <> coalesce(l.asynchronous, 0);
    IF corrected > 0 THEN
        DELETE FROM routing_agentload;
        INSERT INTO routing_agentload (user_id, chats, asynchronous)
            SELECT user_id, chats, asynchronous FROM routing_fresh_loads;
    END IF;
    DROP TABLE routing_fresh_loads;
    RETURN corrected;
END $$;

CREATE OR REPLACE FUNCTION routing_move_load(old_user bigint, old_inbox bigint, new_user bigint, new_inbox bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE old_chat boolean; new_chat boolean;
BEGIN
    IF old_user IS NOT NULL THEN
        SELECT kind IN ({_KINDS}) INTO old_chat FROM conversations_inbox WHERE id = old_inbox;
    END IF;
    IF new_user IS NOT NULL THEN
        SELECT kind IN ({_KINDS}) INTO new_chat FROM conversations_inbox WHERE id = new_inbox;
    END IF;
    IF old_user IS NOT DISTINCT FROM new_user AND old_chat IS NOT DISTINCT FROM new_chat THEN
        RETURN;
    END IF;
    -- An inbox deleted first (NULL class): its statement trigger recounts everything.
    IF old_user IS NOT NULL AND old_chat IS NOT NULL THEN
        UPDATE routing_agentload SET chats = chats - old_chat::int, asynchronous = asynchronous - (NOT old_chat)::int
         WHERE user_id = old_user;
    END IF;
    IF new_user IS NOT NULL AND new_chat IS NOT NULL THEN
        INSERT INTO routing_agentload (user_id, chats, asynchronous)
        VALUES (new_user, new_chat::int, (NOT new_chat)::int)
        ON CONFLICT (user_id) DO UPDATE SET chats = routing_agentload.chats + EXCLUDED.chats,
                                            asynchronous = routing_agentload.asynchronous + EXCLUDED.asynchronous;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION routing_conversation_load() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE old_user bigint; old_inbox bigint; new_user bigint; new_inbox bigint;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status = 'open' THEN
        old_user := OLD.assignee_id; old_inbox := OLD.inbox_id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status = 'open' THEN
        new_user := NEW.assignee_id; new_inbox := NEW.inbox_id;
    END IF;
    IF old_user IS NOT DISTINCT FROM new_user AND old_inbox IS NOT DISTINCT FROM new_inbox THEN
        RETURN NULL;
    END IF;
    PERFORM routing_move_load(old_user, old_inbox, new_user, new_inbox);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION routing_offer_load() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE old_user bigint; old_inbox bigint; new_user bigint; new_inbox bigint;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.state = 'offered' AND OLD.offered_to_id IS NOT NULL THEN
        SELECT user_id INTO old_user FROM routing_agentprofile WHERE id = OLD.offered_to_id;
        old_inbox := OLD.inbox_id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.state = 'offered' AND NEW.offered_to_id IS NOT NULL THEN
        SELECT user_id INTO new_user FROM routing_agentprofile WHERE id = NEW.offered_to_id;
        new_inbox := NEW.inbox_id;
    END IF;
    IF old_user IS NOT DISTINCT FROM new_user AND old_inbox IS NOT DISTINCT FROM new_inbox THEN
        RETURN NULL;
    END IF;
    PERFORM routing_move_load(old_user, old_inbox, new_user, new_inbox);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION routing_recount_loads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM routing_reconcile_loads();
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS routing_conversation_load ON conversations_conversation;
CREATE TRIGGER routing_conversation_load AFTER INSERT OR DELETE OR UPDATE OF assignee_id, status, inbox_id
    ON conversations_conversation FOR EACH ROW EXECUTE FUNCTION routing_conversation_load();
DROP TRIGGER IF EXISTS routing_offer_load ON routing_queueentry;
CREATE TRIGGER routing_offer_load AFTER INSERT OR DELETE OR UPDATE OF state, offered_to_id, inbox_id
    ON routing_queueentry FOR EACH ROW EXECUTE FUNCTION routing_offer_load();
DROP TRIGGER IF EXISTS routing_recount_loads ON conversations_inbox;
CREATE TRIGGER routing_recount_loads AFTER UPDATE OF kind OR DELETE OR TRUNCATE
    ON conversations_inbox FOR EACH STATEMENT EXECUTE FUNCTION routing_recount_loads();
DROP TRIGGER IF EXISTS routing_recount_loads ON routing_agentprofile;
CREATE TRIGGER routing_recount_loads AFTER UPDATE OF user_id OR TRUNCATE
    ON routing_agentprofile FOR EACH STATEMENT EXECUTE FUNCTION routing_recount_loads();
DROP TRIGGER IF EXISTS routing_recount_loads ON conversations_conversation;
CREATE TRIGGER routing_recount_loads AFTER TRUNCATE
    ON conversations_conversation FOR EACH STATEMENT EXECUTE FUNCTION routing_recount_loads();
DROP TRIGGER IF EXISTS routing_recount_loads ON routing_queueentry;
CREATE TRIGGER routing_recount_loads AFTER TRUNCATE
    ON routing_queueentry FOR EACH STATEMENT EXECUTE FUNCTION routing_recount_loads();
SELECT routing_reconcile_loads();
"""

DROP = """
DROP TRIGGER IF EXISTS routing_conversation_load ON conversations_conversation;
DROP TRIGGER IF EXISTS routing_offer_load ON routing_queueentry;
DROP TRIGGER IF EXISTS routing_recount_loads ON conversations_inbox;
DROP TRIGGER IF EXISTS routing_recount_loads ON routing_agentprofile;
DROP TRIGGER IF EXISTS routing_recount_loads ON conversations_conversation;
DROP TRIGGER IF EXISTS routing_recount_loads ON routing_queueentry;
DROP FUNCTION IF EXISTS routing_recount_loads();
DROP FUNCTION IF EXISTS routing_offer_load();
DROP FUNCTION IF EXISTS routing_conversation_load();
DROP FUNCTION IF EXISTS routing_move_load(bigint, bigint, bigint, bigint);
DROP FUNCTION IF EXISTS routing_reconcile_loads();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0004_setup_version_trigger"),
        ("conversations", "__first__"),
    ]

    operations = [
        migrations.CreateModel(
            name="AgentLoad",
            fields=[
                ("user_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("chats", models.IntegerField(default=0)),
                ("asynchronous", models.IntegerField(default=0)),
            ],
        ),
        migrations.RunPython(forwards, backwards),
    ]
