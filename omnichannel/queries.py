"""The platform's hand-written SQL: the replay log's writes (omnichannel.realtime), the health check's and the
pipeline's COMMIT. Each function returns (sql, params), each constant is one statement; the caller executes it.
Like every platform module it knows no app: its tables are the platform's own (omnichannel.models). The raw-SQL
helpers (columns, from_row, sql_literal) are in omnichannel/db.py, the one-round-trip pipeline in pgtrip.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .models import RealtimeEvent, RealtimeStream

HEALTH_CHECK_SQL = "SELECT 1"
"""Reads nothing: the health check's proof that the database answers."""

COMMIT_SQL = "COMMIT"
"""Ends the transaction: the last statement of a pipeline that commits too (realtime.batched(commit=True))."""


def log_event_sql(stream: str, payload_json: str, now: datetime) -> tuple[str, list]:
    """Writes one event to the replay log: bumps (or creates) `stream`'s row and inserts the event under its new
    sequence number, in one statement (a data-modifying CTE; the stream's row stays locked until commit);
    returns the seq. `payload_json`: the event as JSON with a "seq" key (replaced by the sequence number)."""
    streams, events = RealtimeStream._meta.db_table, RealtimeEvent._meta.db_table
    return (f'WITH s AS (INSERT INTO "{streams}" (name, last_seq) VALUES (%s, 1) '
            f'ON CONFLICT (name) DO UPDATE SET last_seq = "{streams}".last_seq + 1 RETURNING last_seq) '
            f'INSERT INTO "{events}" (stream, seq, payload, created_at) '
            f"SELECT %s, s.last_seq, jsonb_set(%s::jsonb, '{{seq}}', to_jsonb(s.last_seq)), %s FROM s "
            f"RETURNING seq",
            [stream, stream, payload_json, now])


def log_many_sql(counts: dict[str, int], rows: list[tuple[str, int, int, str]], now: datetime,
                 writes: list[tuple[str, list]] = ()) -> tuple[str, list]:
    """Writes a batch of events to the replay log in one statement (a data-modifying CTE): each stream's row
    (upserted in sorted order) advanced by its count, every event inserted under its sequence number; returns
    (name, last_seq) per stream. `counts`: events per stream; `rows`: (stream, position within the stream's
    batch from 1, the stream's count, payload JSON) per event; `writes`: the caller's independent INSERT, UPDATE
    or DELETE statements (none returning rows), made data-modifying WITH queries of the same statement."""
    for sql, _ in writes:
        if sql.lstrip()[:6].upper() not in ("INSERT", "UPDATE", "DELETE") or "RETURNING" in sql.upper():
            raise ValueError(f"not a write without RETURNING: {sql[:60]}")
    write_ctes = "".join(f"w{n} AS ({sql}), " for n, (sql, _) in enumerate(writes))
    write_params = [p for _, params in writes for p in params]
    streams, log = RealtimeStream._meta.db_table, RealtimeEvent._meta.db_table
    names = sorted(counts)
    stream_values = ", ".join(["(%s, %s)"] * len(names))
    event_values = ", ".join(["(%s, %s::int, %s::int, %s::jsonb)"] * len(rows))
    params: list[Any] = [p for name in names for p in (name, counts[name])]
    params += [p for row in rows for p in row]
    params.append(now)
    return (f'WITH {write_ctes}s AS (INSERT INTO "{streams}" (name, last_seq) VALUES {stream_values} '
            f'ON CONFLICT (name) DO UPDATE SET last_seq = "{streams}".last_seq + EXCLUDED.last_seq '
            f"RETURNING name, last_seq), "
            f"v (stream, pos, n, payload) AS (VALUES {event_values}), "
            f'i AS (INSERT INTO "{log}" (stream, seq, payload, created_at) '
            f"SELECT v.stream, s.last_seq - v.n + v.pos, "
            f"jsonb_set(v.payload, '{{seq}}', to_jsonb(s.last_seq - v.n + v.pos)), %s "
            f"FROM v JOIN s ON s.name = v.stream) "
            f"SELECT name, last_seq FROM s",
            [*write_params, *params])
