"""SLA's hand-written SQL: the database's clock, the sweep's lock, its claim and its events' INSERT, and the
"any policy or clock" expression routing folds into its locking statement. Each function returns (sql,
params), each constant is one statement; sla/actions.py executes it."""

from __future__ import annotations

import json
from datetime import datetime

from django.db import connection

from conversations.models import Conversation

from .models import SlaClock, SlaEvent, SlaPolicy

DB_NOW_SQL = "SELECT clock_timestamp()"
"""Reads the database's time now (clock_timestamp(), not the transaction's start: it may have waited)."""

SWEEP_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(hashtext('sla.do_sweep_sla'))"
"""Takes the sweep's transaction-level advisory lock if free: true, or false when another sweep holds it."""

CLAIM_SQL = """
SELECT c.id, c.conversation_id, c.policy_id, c.metric, extract(epoch FROM c.due_at)::float8,
       extract(epoch FROM c.warn_at)::float8, c.warned_at IS NULL
  FROM {clock} c JOIN {conversation} v ON v.id = c.conversation_id
 WHERE c.state = 'running' AND c.breached_at IS NULL{warn} AND c.{due} <= %(now)s
 ORDER BY c.{due} LIMIT %(batch)s
   FOR UPDATE OF v, c SKIP LOCKED
"""


def claim_sql(kind: str, now: datetime, batch: int) -> tuple[str, dict]:
    """The due clocks of one batch ("breached": by due_at; "warned": by warn_at, not yet warned), their
    conversations and themselves locked, SKIP LOCKED."""
    due_field = "due_at" if kind == "breached" else "warn_at"
    sql = CLAIM_SQL.format(clock=SlaClock._meta.db_table, conversation=Conversation._meta.db_table, due=due_field,
                           warn=" AND c.warned_at IS NULL" if kind == "warned" else "")
    return sql, {"now": now, "batch": batch}


def record_events_sql(rows: list[tuple[int, int, str, datetime, dict]]) -> tuple[str, list]:
    """One INSERT of (clock_id, conversation_id, kind, at, data) events that skips those already recorded and
    returns the (clock_id, kind) of the rows it inserted."""
    values = ", ".join("(%s, %s, %s, %s, %s::jsonb)" for _ in rows)
    adapt = connection.ops.adapt_datetimefield_value
    params = [v for clock_id, conversation_id, kind, at, data in rows
              for v in (clock_id, conversation_id, kind, adapt(at), json.dumps(data))]
    return (f"INSERT INTO {SlaEvent._meta.db_table} (clock_id, conversation_id, kind, at, data) "
            f"VALUES {values} ON CONFLICT DO NOTHING RETURNING clock_id, kind", params)


def any_policy_or_clock_sql(conversation_id: int, active_states) -> tuple[str, list]:
    """SQL expression: whether any policy is active or the conversation has a clock in `active_states`."""
    states = ", ".join(["%s"] * len(active_states))
    return (f"(EXISTS (SELECT 1 FROM {SlaPolicy._meta.db_table} WHERE is_active)"
            f" OR EXISTS (SELECT 1 FROM {SlaClock._meta.db_table} WHERE conversation_id = %s"
            f" AND state IN ({states})))", [conversation_id, *active_states])


def any_policy_or_clock_select_sql(conversation_id: int, active_states) -> tuple[str, list]:
    """Reads any_policy_or_clock_sql's expression alone, as a one-row SELECT."""
    sql, params = any_policy_or_clock_sql(conversation_id, active_states)
    return f"SELECT {sql}", params
