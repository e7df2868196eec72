"""omnichannel.pgtrip: statements in one pipeline, prepared once per connection, errors as Django raises them."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from omnichannel import pgtrip
from omnichannel.models import RealtimeStream

pytestmark = pytest.mark.django_db(transaction=True)


def test_split_distributes_parameters_by_placeholder():
    assert pgtrip.split("SELECT %s; ; SELECT 1; SELECT %s, %s", [1, 2, 3]) == [
        ("SELECT %s", [1]), ("SELECT 1", []), ("SELECT %s, %s", [2, 3])]
    assert pgtrip.split("SELECT '100%%' , %s", ["x"]) == [("SELECT '100%%' , %s", ["x"])]
    with pytest.raises(ValueError, match="2 parameters for 1 placeholders"):
        pgtrip.split("SELECT %s", [1, 2])


def test_results_in_order_each_statement_with_its_own_snapshot_and_one_logged_trip():
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        results = pgtrip.execute(
            "SAVEPOINT t; INSERT INTO omnichannel_realtimestream (name, last_seq) VALUES (%s, %s);"
            " SELECT name, last_seq FROM omnichannel_realtimestream WHERE name = %s;"
            " UPDATE omnichannel_realtimestream SET last_seq = last_seq + 1 WHERE name = %s RETURNING last_seq",
            ["trip", 4, "trip", "trip"])
    assert results == [None, None, [("trip", 4)], [(5,)]]
    assert RealtimeStream.objects.get(name="trip").last_seq == 5
    assert len(ctx.captured_queries) == 1 and "RETURNING last_seq" in ctx.captured_queries[0]["sql"]


def test_statements_are_prepared_once_per_connection():
    sql = "SELECT count(*) FROM omnichannel_realtimestream WHERE name = %s"
    for _ in range(3):
        with transaction.atomic():
            assert pgtrip.trip([(sql, ["nobody"])]) == [[(0,)]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), max(generic_plans) FROM pg_prepared_statements WHERE statement = %s",
                       [sql.replace("%s", "$1")])
        assert cursor.fetchone() == (1, 3)  # one statement, planned once (generic), executed three times


def test_a_failing_statement_raises_djangos_error_and_the_transaction_rolls_back():
    RealtimeStream.objects.create(name="taken", last_seq=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        pgtrip.execute("UPDATE omnichannel_realtimestream SET last_seq = 9 WHERE name = %s;"
                       " INSERT INTO omnichannel_realtimestream (name, last_seq) VALUES (%s, 1);"
                       " UPDATE omnichannel_realtimestream SET last_seq = 10 WHERE name = %s",
                       ["taken", "taken", "taken"])
    assert RealtimeStream.objects.get(name="taken").last_seq == 1
    with transaction.atomic():  # the connection is usable again
        assert pgtrip.execute("SELECT last_seq FROM omnichannel_realtimestream WHERE name = %s", ["taken"]) == [
            [(1,)]]


def test_prepared_statements_can_be_turned_off(settings):
    settings.DB_PREPARED_STATEMENTS = False
    sql = "SELECT count(*) + 0 FROM omnichannel_realtimestream WHERE name = %s"
    with transaction.atomic():
        assert pgtrip.trip([(sql, ["x"])]) == [[(0,)]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement = %s", [sql.replace("%s", "$1")])
        assert cursor.fetchone() == (0,)


def test_a_rollback_to_savepoint_in_a_pipeline_never_leaves_a_deallocated_statement_in_use():
    """psycopg forgets every prepared statement when a ROLLBACK result it has not seen before comes back, and
    deallocates them all on the server with the next execute, after that execute's own PREPARE: a statement
    prepared first thing after such a pipeline was deallocated while psycopg still used its name ("prepared
    statement _pg3_N does not exist", seen in the routing benchmark after a refused claim)."""
    first = "SELECT count(*) + 1 FROM omnichannel_realtimestream WHERE name = %s"
    second = "SELECT count(*) + 2 FROM omnichannel_realtimestream WHERE name = %s"
    for attempt in range(3):
        connection.close()  # a new connection: psycopg has not seen the ROLLBACK statement yet
        with transaction.atomic():
            assert pgtrip.trip([(first, ["x"])]) == [[(1,)]]
            pgtrip.execute(f"SAVEPOINT s{attempt}; ROLLBACK TO SAVEPOINT s{attempt}; RELEASE SAVEPOINT s{attempt}")
            assert pgtrip.trip([(second, ["x"])]) == [[(2,)]]  # prepared right after the pipeline
            assert pgtrip.trip([(second, ["x"])]) == [[(2,)]]  # and still there
            assert pgtrip.execute(f"{first}; {second}", ["x", "x"]) == [[(1,)], [(2,)]]
