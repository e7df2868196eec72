"""A socket holds its visitor session across messages: the pre-chat answers are re-read only when they changed
(the stamp read with the rate limit), or when the socket's copy is older than PRECHAT_MAX_AGE."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import actions
from campaigns.models import VisitorSession

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit hooks run for real


@pytest.fixture
def held(chat):
    session, _ = actions.do_start_visitor_session(inbox=chat, visitor_token=None, info=actions.SessionInfo())
    return VisitorSession.objects.select_related("inbox", "contact").get(pk=session.pk)  # read without a stamp


def _send(session, n):
    with CaptureQueriesContext(connection) as ctx:
        message = actions.do_visitor_message(session=session, body=f"m{n}", client_id=f"c{n}", held_session=True)
    reads = [q for q in ctx.captured_queries if '"campaigns_visitorsession"."prechat"' in q["sql"]]
    return message, len(reads)


def test_answers_saved_after_the_socket_opened_reach_the_next_message(held):
    first, reads = _send(held, 1)
    assert reads == 1 and first.conversation.meta["prechat"] == {}  # read once, then held
    assert _send(held, 2)[1] == 0
    # The pre-chat form is posted over HTTP, through a session object of its own.
    other = VisitorSession.objects.select_related("inbox", "contact").get(pk=held.pk)
    actions.do_save_prechat(session=other, answers={"name": "Vera", "email": "vera@example.com",
                                                    "department": "Billing"})
    third, reads = _send(held, 3)
    assert reads == 1
    third.conversation.refresh_from_db()
    assert third.conversation.meta["prechat"]["department"] == "Billing"
    assert _send(held, 4)[1] == 0


def test_a_failed_stamp_renewal_is_caught_up_within_the_max_age(held):
    _send(held, 1)
    other = VisitorSession.objects.select_related("inbox", "contact").get(pk=held.pk)
    with mock.patch("campaigns.actions._renew_prechat_stamp", side_effect=ConnectionError("redis down")):
        actions.do_save_prechat(session=other, answers={"name": "Vera", "email": "vera@example.com",
                                                        "department": "Sales"})  # saved all the same
    assert VisitorSession.objects.get(pk=held.pk).prechat["department"] == "Sales"
    assert _send(held, 2)[1] == 0  # the stamp did not change: the held copy is used
    later = held._prechat_held[1] + actions.PRECHAT_MAX_AGE + 1
    with mock.patch("campaigns.actions.time.monotonic", return_value=later):
        message, reads = _send(held, 3)
    assert reads == 1
    message.conversation.refresh_from_db()
    assert message.conversation.meta["prechat"]["department"] == "Sales"


def test_a_lost_stamp_is_made_again_and_the_answers_re_read(held):
    from django.core.cache import caches

    _send(held, 1)
    caches["default"].delete(actions._prechat_key(held.inbox_id, held.visitor_id))  # evicted, or Redis flushed
    assert _send(held, 2)[1] == 1
    assert _send(held, 3)[1] == 0


def test_a_session_read_for_a_socket_comes_with_its_stamp(held):
    session = actions.held_session(held.inbox, held.visitor_id)
    assert session.pk == held.pk and session.contact_id == held.contact_id
    assert _send(session, 1)[1] == 0  # the first message need not re-read the answers
    other = VisitorSession.objects.select_related("inbox", "contact").get(pk=held.pk)
    actions.do_save_prechat(session=other, answers={"name": "Vera", "email": "vera@example.com",
                                                    "department": "Billing"})
    message, reads = _send(session, 2)
    assert reads == 1
    message.conversation.refresh_from_db()
    assert message.conversation.meta["prechat"]["department"] == "Billing"
    assert actions.held_session(held.inbox, "no-such-visitor") is None


def test_a_session_not_held_is_used_as_given(held):
    with CaptureQueriesContext(connection) as ctx:
        actions.do_visitor_message(session=held, body="hi", client_id="c-1")
    assert not [q for q in ctx.captured_queries if '"campaigns_visitorsession"."prechat"' in q["sql"]]


def test_one_cache_backend_per_process_whatever_the_async_context(held):
    """caches["default"] is one per async context: every websocket (its consumer's task) had its own backend,
    Redis pool and connection. The widget's rate limit and pre-chat stamp use one per process."""
    import contextvars

    from django.core.cache import caches

    fresh = [contextvars.Context().run(lambda: caches["default"]) for _ in range(2)]
    assert fresh[0] is not fresh[1]
    backends = [contextvars.Context().run(actions._cache) for _ in range(3)]
    assert backends[0] is backends[1] is backends[2]
    config = actions.get_config(held.inbox)
    for _ in range(2):
        contextvars.Context().run(actions.check_rate_limit, held, config)
    assert backends[0].get(actions._rate_key(held)) == 2
