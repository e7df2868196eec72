"""The core's hand-written SQL, built from the models' tables and columns: the statements the selectors
(conversations/selectors/) read with, and, at the end, the one-round-trip writes of the actions
(conversations/actions/). Each function returns the statement's text and parameters (or what reads its rows);
the selector or action executes it. The side panel's statement reads routing's and the widget's tables too, so it
sits with its selector in conversations/panel.py (a console-layer module)."""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection, connections

from agents.models import AgentProfile, Team
from omnichannel.db import columns, sql_literal
from omnichannel.models import RealtimeStream

from .models import (
    Attachment,
    Contact,
    ContactIdentity,
    ContactSegment,
    Conversation,
    ConversationEvent,
    InboundDelivery,
    Inbox,
    Message,
    MessageTemplate,
    Segment,
    Tag,
)

# --- get_with_related / list_with_related (selectors.related) ---------------------------


def related_sql(model, field_name: str, related: tuple[str, ...], using: str) -> tuple:
    """get_with_related's statement for (model, the column compared, related, database), with what reads its
    rows: (sql, parts [(model, attnames, start, end, pk position, foreign key)], converters [(position, column,
    converters)], the field whose database value is the parameter)."""
    connection_ = connections[using]
    qn = connection_.ops.quote_name
    tables = [(model, None, "t0")]
    for n, name in enumerate(related, start=1):
        fk = model._meta.get_field(name)
        if not (fk.many_to_one or fk.one_to_one) or fk.auto_created or not fk.concrete:
            raise ValueError(f"{name!r} is not a forward foreign key of {model.__name__}")
        tables.append((fk.related_model, fk, f"t{n}"))
    columns, parts, converters = [], [], []
    joins = [f"{qn(model._meta.db_table)} t0"]
    for rel_model, fk, alias in tables:
        fields = rel_model._meta.concrete_fields
        start = len(columns)
        for f in fields:
            col = f.get_col(alias)
            convs = [*connection_.ops.get_db_converters(col), *f.get_db_converters(connection_)]
            if convs:
                converters.append((len(columns), col, convs))
            columns.append(f"{alias}.{qn(f.column)}")
        pk_pos = start + [f.primary_key for f in fields].index(True)
        parts.append((rel_model, [f.attname for f in fields], start, len(columns), pk_pos, fk))
        if fk is not None:
            join = "LEFT JOIN" if fk.null else "JOIN"
            joins.append(f"{join} {qn(rel_model._meta.db_table)} {alias} ON {alias}.{qn(fk.target_field.column)} = "
                         f"t0.{qn(fk.column)}")
    where_field = model._meta.get_field(field_name)
    if where_field.is_relation:  # a foreign key: compared by the target's value (as filter(fk=pk) does)
        where_field = where_field.target_field
        column = model._meta.get_field(field_name).column
    else:
        column = where_field.column
    sql = (f"SELECT {', '.join(columns)} FROM {' '.join(joins)} WHERE t0.{qn(column)} = %s "
           f"ORDER BY t0.{qn(model._meta.pk.column)}")
    return sql, parts, converters, where_field


# --- The inbox list's rows (selectors.inbox) ---------------------------------------------


def wrap_rows_sql(sql: str) -> str:
    """The page's rows (`sql`, ordered and sliced) with, per row, its tag names (by name), its contact's top
    segment [colour, label, name] and its assignee's [username, agent display name, full name]: scalar
    subqueries over the page's rows, which keep their order (a subquery scan without joins does not reorder).
    (Joining the assignee and its profile into the row query itself made PostgreSQL plan it for ~3 ms.)"""
    qn = connection.ops.quote_name
    users, agents = qn(get_user_model()._meta.db_table), qn(AgentProfile._meta.db_table)
    tags, through = qn(Tag._meta.db_table), qn(Conversation.tags.through._meta.db_table)
    segments, members = qn(Segment._meta.db_table), qn(ContactSegment._meta.db_table)
    return (
        f"SELECT p.*, ARRAY(SELECT t.name FROM {through} ct JOIN {tags} t ON t.id = ct.tag_id "
        f"WHERE ct.conversation_id = p.id ORDER BY t.name), "
        f"(SELECT ARRAY[s.color, s.label, s.name] FROM {members} m JOIN {segments} s ON s.id = m.segment_id "
        f"WHERE m.contact_id = p.contact_id ORDER BY s.priority_level DESC, s.name LIMIT 1), "
        f"(SELECT ARRAY[u.username, a.display_name, u.first_name || ' ' || u.last_name] FROM {users} u "
        f"LEFT JOIN {agents} a ON a.user_id = u.id WHERE u.id = p.assignee_id) "
        f"FROM ({sql}) p"
    )


# --- The conversation view (selectors.conversation) ------------------------------------

HISTORY_FIELDS = ("id", "conversation_id", "inbox_id", "direction", "sender_type", "sender_user_id", "kind", "body",
                  "delivery_status", "failure_reason", "created_at", "sender_user__username",
                  "sender_user__first_name", "sender_user__last_name")


@cache
def history_sql() -> str:
    """get_contact_history's statement ({before}: the optional "older than" condition)."""
    qn = connection.ops.quote_name
    m, c = qn(Message._meta.db_table), qn(Conversation._meta.db_table)
    users, files = qn(get_user_model()._meta.db_table), qn(Attachment._meta.db_table)
    columns = ", ".join(f"m.{qn(Message._meta.get_field(name).column)}" for name in HISTORY_FIELDS[:11])
    return (
        f"SELECT {columns}, u.username, u.first_name, u.last_name, "
        f"EXISTS(SELECT 1 FROM {files} a WHERE a.message_id = m.id) "
        f"FROM {m} m LEFT JOIN {users} u ON u.id = m.sender_user_id WHERE m.id IN ("
        f"SELECT p.id FROM {c} c CROSS JOIN LATERAL ("
        f" SELECT id FROM {m} m WHERE m.conversation_id = c.id AND m.inbox_id = ANY(%s){{before}}"
        f" ORDER BY m.id DESC LIMIT %s) p WHERE c.contact_id = %s ORDER BY p.id DESC LIMIT %s) "
        "ORDER BY m.id"
    )


def events_sql() -> str:
    """selectors.conversation_events' statement: a conversation's latest timeline events with their actor's
    name fields (params: conversation id, limit)."""
    meta = ConversationEvent._meta
    qn = connection.ops.quote_name
    return (f"SELECT e.id, e.{qn(meta.get_field('kind').column)}, e.{qn(meta.get_field('data').column)}, "
            f"e.{qn(meta.get_field('created_at').column)}, e.{qn(meta.get_field('actor').column)}, "
            f"u.username, u.first_name, u.last_name FROM {qn(meta.db_table)} e "
            f"LEFT JOIN {qn(get_user_model()._meta.db_table)} u ON u.id = e.{qn(meta.get_field('actor').column)} "
            f"WHERE e.{qn(meta.get_field('conversation').column)} = %s ORDER BY e.id DESC LIMIT %s")


# --- The console's lists (selectors.inbox.console_lists) --------------------------------


def console_lists_sql(agent: AgentProfile, *, teams: bool) -> tuple[str, list, list]:
    """The console's visible inboxes, its small pick lists and the inbox streams' cursors, in one statement:
    (sql, params, parts), parts the pick lists [(key, model, order, limit)] in their groups' order (group 0:
    the visible inboxes; after the parts, the cursors). The visible inboxes are those of
    selectors.visible_inboxes (its own query as a subquery)."""
    qn = connection.ops.quote_name
    inbox_table = qn(Inbox._meta.db_table)
    params: list = []
    if agent.sees_all_inboxes:
        visible = f"SELECT id, name, kind FROM {inbox_table}"
    else:
        # Inbox.objects.filter(teams__members=agent) (compiling that through the ORM cost ~0.8 ms of CPU)
        team_inboxes, agent_teams = Team.inboxes.through._meta, AgentProfile.teams.through._meta
        visible = (f"SELECT id, name, kind FROM {inbox_table} WHERE id IN ("
                   f"SELECT ti.{qn(team_inboxes.get_field('inbox').column)} FROM {qn(team_inboxes.db_table)} ti "
                   f"JOIN {qn(agent_teams.db_table)} at ON at.{qn(agent_teams.get_field('team').column)} = "
                   f"ti.{qn(team_inboxes.get_field('team').column)} "
                   f"WHERE at.{qn(agent_teams.get_field('agentprofile').column)} = %s)")
        params.append(agent.pk)
    parts = [
        ("tags", Tag, "name", 200),
        ("segments", Segment, "priority_level DESC, name", None),
        ("templates", MessageTemplate, "id", None),  # shown with the SMS inboxes only; a handful of rows
        *([("teams", Team, "name", None)] if teams else []),
    ]
    selects = ["SELECT 0 AS grp, row_number() OVER (ORDER BY name) AS pos, id, name, kind AS extra, "
               "CAST(NULL AS BIGINT) AS seq FROM vis"]
    for n, (_key, model, order, limit) in enumerate(parts, start=1):
        select = (f"SELECT {n} AS grp, row_number() OVER (ORDER BY {order}) AS pos, id, name, CAST(NULL AS TEXT), CAST(NULL AS BIGINT) "
                  f"FROM {qn(model._meta.db_table)}")
        if limit:
            select = f"SELECT * FROM ({select}) AS l{n} WHERE pos <= {int(limit)}"
        selects.append(select)
    # Cursors of the visible inboxes' streams (realtime.inbox_stream names them "inbox.<id>").
    selects.append(f"SELECT {len(parts) + 1}, 0, vis.id, NULL, NULL, s.last_seq FROM vis "
                   f"JOIN {qn(RealtimeStream._meta.db_table)} s ON s.name = 'inbox.' || vis.id")
    return f"WITH vis AS ({visible}) " + " UNION ALL ".join(selects) + " ORDER BY grp, pos", params, parts


# --- The condition language's facts (conditions.Facts) -----------------------------------


def _contact(conversation_id: int, contact_id: int | None) -> tuple[str, list]:
    """SQL for the contact's id and its params: `contact_id` when known, else the conversation's by subquery."""
    if contact_id is not None:
        return "%s", [contact_id]
    return f"(SELECT contact_id FROM {Conversation._meta.db_table} WHERE id = %s)", [conversation_id]


def contact_segments_sql(conversation_id: int, *, contact_id: int | None = None) -> tuple[str, list]:
    """Reads the contact's segments (Segment's ordering) with their account manager's agent id, as Facts does."""
    contact, params = _contact(conversation_id, contact_id)
    return (f"SELECT s.name, s.label, s.priority_level, s.account_manager_id, a.id"
            f" FROM {Segment._meta.db_table} s JOIN {ContactSegment._meta.db_table} cs ON cs.segment_id = s.id"
            f" LEFT JOIN {AgentProfile._meta.db_table} a ON a.user_id = s.account_manager_id"
            f" WHERE cs.contact_id = {contact} ORDER BY s.priority_level DESC, s.name",  # Segment's ordering
            params)


def contact_history_sql(conversation_id: int, limit: int, *, contact_id: int | None = None) -> tuple[str, list]:
    """Reads the contact's conversations other than `conversation_id`, newest first, `limit` at most."""
    contact, params = _contact(conversation_id, contact_id)
    # The agent by key per row (a join hashed all the agents for a few rows).
    return (f"SELECT c.id, c.status, c.priority, c.assignee_id,"
            f" (SELECT a.id FROM {AgentProfile._meta.db_table} a WHERE a.user_id = c.assignee_id),"
            f" c.last_message_at, c.closed_at, c.solved_at FROM {Conversation._meta.db_table} c"
            f" WHERE c.contact_id = {contact} AND c.id <> %s ORDER BY c.id DESC LIMIT %s",
            [*params, conversation_id, limit])


def contact_facts_sql(conversation_id: int, limit: int, *, contact_id: int | None = None) -> tuple[str, list]:
    """Reads both, two statements in one string (segments; history), for one round trip."""
    segments_sql, segments_params = contact_segments_sql(conversation_id, contact_id=contact_id)
    history_sql, history_params = contact_history_sql(conversation_id, limit, contact_id=contact_id)
    return f"{segments_sql}; {history_sql}", [*segments_params, *history_params]


# --- The hook points' SQL (hooks.match_check_sql_of) ---------------------------------------


def any_of_sql(parts: list[tuple[str, list]]) -> tuple[str, list]:
    """Reads what `parts` read: their SQL boolean expressions OR-ed into one (FALSE when there is none)."""
    if not parts:
        return "FALSE", []
    return "(" + " OR ".join(sql for sql, _ in parts) + ")", [param for _, params in parts for param in params]


# --- the actions' one-round-trip writes (conversations/actions/) -----------------------------------------
# Sent through omnichannel.pgtrip (prepared once per connection) or with the events' log (realtime); each
# function builds exactly the statement the action sends, the action keeps the logic around it.


def known_customer_sql(kind: str, scope: str, source_id: str, inbox_id: int, *, live: bool) -> tuple[str, list]:
    """Three statements (inbound._lock_known_customer): lock the contact of the identity (kind, scope, value);
    lock its latest open, pending, on-hold or solved conversation in the inbox (not an unanswered offline one
    when `live`); reserve the next message id. The statuses are written in, so the generic plan knows them."""
    identities, contacts = ContactIdentity._meta.db_table, Contact._meta.db_table
    conversations, messages = Conversation._meta.db_table, Message._meta.db_table
    find = (f'FROM {identities} i JOIN {contacts} c ON c.id = i.contact_id '
            f'WHERE i.kind = %s AND i.scope = %s AND i.value = %s')
    statuses = [*Conversation.ACTIVE_STATUSES, Conversation.Status.SOLVED]
    identity = [kind, scope, source_id]
    return (f"SELECT {columns(Contact, 'c')} {find} FOR UPDATE OF c; "
            f"SELECT {columns(Conversation, 'v')} FROM {conversations} v WHERE v.inbox_id = %s "
            f"AND v.merged_into_id IS NULL AND v.status IN ({', '.join(sql_literal(s) for s in statuses)}) "
            + ("AND NOT (jsonb_exists(v.meta, 'offline') AND v.assignee_id IS NULL) " if live else "") +
            f"AND v.contact_id = (SELECT c.id {find} AND c.merged_into_id IS NULL) "
            f"ORDER BY v.id DESC LIMIT 1 FOR UPDATE OF v; "
            f"SELECT nextval(pg_get_serial_sequence('{messages}', 'id'))",
            [*identity, inbox_id, *identity])


def inbound_write_sql(message: Message, conversation: Conversation, fields: list[str]) -> tuple[str, list]:
    """The message's INSERT (its id reserved) and the conversation's UPDATE of `fields` (inbound._write_inbound):
    what Message.objects.create and save(update_fields) send."""
    quote = connection.ops.quote_name
    message_fields = Message._meta.concrete_fields
    update_fields = [Conversation._meta.get_field(name) for name in fields]
    sql = (f"INSERT INTO {quote(Message._meta.db_table)} ({', '.join(quote(f.column) for f in message_fields)}) "
           f"VALUES ({', '.join(['%s'] * len(message_fields))}); "
           f"UPDATE {quote(Conversation._meta.db_table)} "
           f"SET {', '.join(f'{quote(f.column)} = %s' for f in update_fields)} WHERE id = %s")
    params = [f.get_db_prep_save(getattr(message, f.attname), connection) for f in message_fields]
    params += [f.get_db_prep_save(getattr(conversation, f.attname), connection) for f in update_fields]
    params.append(conversation.pk)
    return sql, params


def record_delivery_sql(values: dict) -> tuple[str, list]:
    """One INSERT of an inbound delivery that does nothing when (inbox, provider message id) is stored, and
    returns the new row's id (inbound.do_record_inbound_delivery)."""
    meta = InboundDelivery._meta
    fields = [meta.get_field(name.removesuffix("_id") if name == "inbox_id" else name) for name in values]
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values.values(), strict=True)]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))}) "
           f"ON CONFLICT ({quote('inbox_id')}, {quote('provider_message_id')}) DO NOTHING RETURNING {quote('id')}")
    return sql, params


def assignment_write_sql(conversation: Conversation, actor_id: int | None, data_json: str, now,
                         message_insert: tuple[str, list] | None = None) -> tuple[str, list]:
    """The conversation's assignee, team and updated_at (one UPDATE), the timeline's "assigned" event, and the
    web chat's system line's INSERT last when given (assignment._write_assignment)."""
    table, events = Conversation._meta.db_table, ConversationEvent._meta.db_table
    message_sql, message_params = message_insert if message_insert is not None else ("", [])
    sql = (f"UPDATE {table} SET assignee_id = %s, team_id = %s, updated_at = %s WHERE id = %s; "
           f"INSERT INTO {events} (conversation_id, kind, actor_id, data, created_at)"
           f" VALUES (%s, %s, %s, %s::jsonb, %s)" + (f"; {message_sql}" if message_sql else ""))
    params = [conversation.assignee_id, conversation.team_id, now, conversation.pk,
              conversation.pk, ConversationEvent.Kind.ASSIGNED, actor_id, data_json, now,
              *message_params]
    return sql, params


def change_write_sql(conversation_id: int, actor_id: int | None, kind: str, data_json: str, now, *,
                     priority: int | None = None, tags: tuple[list[str], list[str]] | None = None
                     ) -> tuple[str, list]:
    """A change of a conversation's priority or tags (the tags created on first use, its links added and
    removed), its updated_at and the timeline event (common.write_change)."""
    table, events = Conversation._meta.db_table, ConversationEvent._meta.db_table
    sql, params = [], []
    if tags is not None:
        added, removed = tags
        links, tag_table = Conversation.tags.through._meta.db_table, Tag._meta.db_table
        if added:
            # A tag that exists takes no sequence number (get_or_create's gapless ids), a concurrent creation
            # of the same name is no error.
            sql.append(f"INSERT INTO {tag_table} (name) SELECT n FROM unnest(%s::text[]) AS n"
                       f" WHERE NOT EXISTS (SELECT 1 FROM {tag_table} t WHERE t.name = n)"
                       f" ON CONFLICT (name) DO NOTHING")
            sql.append(f"INSERT INTO {links} (conversation_id, tag_id) SELECT %s, t.id FROM {tag_table} t"
                       f" WHERE t.name = ANY(%s::text[]) ON CONFLICT DO NOTHING")
            params += [added, conversation_id, added]
        if removed:
            sql.append(f"DELETE FROM {links} WHERE conversation_id = %s"
                       f" AND tag_id IN (SELECT t.id FROM {tag_table} t WHERE t.name = ANY(%s::text[]))")
            params += [conversation_id, removed]
    if priority is not None:
        sql.append(f"UPDATE {table} SET priority = %s, updated_at = %s WHERE id = %s")
        params += [priority, now, conversation_id]
    else:
        sql.append(f"UPDATE {table} SET updated_at = %s WHERE id = %s")
        params += [now, conversation_id]
    sql.append(f"INSERT INTO {events} (conversation_id, kind, actor_id, data, created_at)"
               f" VALUES (%s, %s, %s, %s::jsonb, %s)")
    params += [conversation_id, kind, actor_id, data_json, now]
    return "; ".join(sql), params
