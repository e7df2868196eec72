"""PostgreSQL: several statements in one round trip, each parsed and planned once per connection.

Django's psycopg cursors bind parameters on the client and send each statement as text, so PostgreSQL parses
and plans it again on every call: for the routing decision's statements that was 3.3 ms of planning per
decision, more than their execution. Statements joined with ";" save round trips but cannot be prepared.

``trip([(sql, params), ...])`` sends the statements in one pipeline (psycopg's pipeline mode: one network
round trip, one Sync), each as a prepared statement (server-side binding, ``prepare=True``: psycopg keeps the
prepared statements per connection, least recently used first out) except the utility commands (SAVEPOINT and
the like), which cannot be prepared. psycopg's cache is switched on for the trip's own prepared statements only:
Django's cursors and the utility commands never reach it (a ROLLBACK it tracked made it drop every statement). Returns each statement's rows (a list of tuples), or None for a
statement without a result. Every statement runs in the caller's transaction with its own snapshot (READ
COMMITTED), in order, exactly as separate ``cursor.execute()`` calls would; if one fails, the ones after it
are skipped and the error is raised as Django raises database errors (``django.db.IntegrityError`` ...).

The trip goes through the connection's execute wrappers and into ``connection.queries`` when queries are
logged (DEBUG, ``CaptureQueriesContext``) as one entry, its statements joined with ";", as a multi-statement
``cursor.execute()`` appears there: round-trip counts in tests and benchmarks still see it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection as default_connection

from omnichannel import library_internals

Statement = tuple[str, Sequence[Any]]

_TUPLES_OK = 2  # psycopg.pq.ExecStatus.TUPLES_OK
_NEVER = 2**31  # a prepare_threshold no statement reaches
_UTILITY = ("SAVEPOINT", "RELEASE", "ROLLBACK", "SET", "LOCK")


_PLACEHOLDER = re.compile(r"(?<!%)%s")


def split(sql: str, params: Sequence[Any]) -> list[Statement]:
    """Statements joined with ";" (as one simple query would send them) and their parameters, in order, as
    trip() takes them. The SQL must hold no ";" inside literals (the project's own statements)."""
    statements, position = [], 0
    for part in sql.split(";"):
        if not part.strip():
            continue
        n = len(_PLACEHOLDER.findall(part))
        statements.append((part.strip(), list(params[position:position + n])))
        position += n
    if position != len(params):
        raise ValueError(f"{len(params)} parameters for {position} placeholders")
    return statements


def execute(sql: str, params: Sequence[Any] = ()) -> list[list[tuple] | None]:
    """trip() of the statements joined with ";" in `sql`: each one's rows (None: no result)."""
    return trip(split(sql, params))


def trip(statements: Sequence[Statement], *, connection=default_connection) -> list[list[tuple] | None]:
    """Run `statements` in one round trip, in order, in the current transaction; each one's rows (None: no
    result). PostgreSQL only."""
    prepare = getattr(settings, "DB_PREPARED_STATEMENTS", True)
    connection.validate_no_broken_transaction()
    connection.ensure_connection()
    results: list[list[tuple] | None] = []

    def execute(sql: str, params: Any, many: bool, context: dict) -> None:
        raw = connection.connection
        cursors = []
        with connection.wrap_database_errors:
            # One statement: no pipeline (entering and leaving pipeline mode costs more than it saves).
            pipeline = raw.pipeline() if len(statements) > 1 else contextlib.nullcontext()
            try:
                with pipeline:
                    for statement, statement_params in statements:
                        cursor = psycopg.Cursor(raw)
                        utility = statement.lstrip()[:9].upper().startswith(_UTILITY)
                        # Django turns psycopg's prepared statements off (prepare_threshold None, which also
                        # refuses prepare=True); they are on for this trip's own statements only, with a
                        # threshold never reached, so prepare=True is the only way in. The utility commands go
                        # with them off: psycopg drops its whole cache (and DEALLOCATEs ALL on the server, late,
                        # after the next statement's PREPARE) when a ROLLBACK it tracks comes back.
                        raw.prepare_threshold = None if utility or not prepare else _NEVER
                        if utility:
                            cursor.execute(statement, statement_params or None, prepare=False)
                        else:
                            cursor.execute(statement, statement_params, prepare=prepare)
                        cursors.append(cursor)
            finally:
                raw.prepare_threshold = None  # as Django set it: its own cursors never touch the cache
                library_internals.flush_prepared_maintenance(raw)
            for cursor in cursors:
                # pgresult.status, not description: description builds a Column per column on every call.
                returned = cursor.pgresult is not None and cursor.pgresult.status == _TUPLES_OK
                results.append(cursor.fetchall() if returned else None)
                cursor.close()

    joined = "; ".join(sql for sql, _params in statements)
    params = [p for _sql, statement_params in statements for p in statement_params]
    start = time.monotonic()
    wrappers = connection.execute_wrappers
    if wrappers:
        executor = execute
        for wrapper in reversed(wrappers):
            executor = partial(wrapper, executor)
        executor(joined, params, False, {"connection": connection, "cursor": None})
    else:
        execute(joined, params, False, {})
    if connection.queries_logged:  # one entry per round trip, as a multi-statement execute() logged it
        connection.queries_log.append({"sql": f"{joined} -- params {params!r}",
                                       "time": f"{time.monotonic() - start:.3f}"})
    return results
