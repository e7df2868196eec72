"""A known customer's message to a conversation in progress: locked in one round trip and written in another
(PostgreSQL), with the same rows, timeline and events as the general path."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from conversations import actions
from conversations.models import ChannelKind, Conversation, Inbox, Message
from omnichannel import realtime
from omnichannel.models import RealtimeEvent

pytestmark = pytest.mark.django_db


def _statements(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


def test_message_in_progress_takes_two_round_trips_and_writes_what_the_general_path_writes(world, published):
    first = actions.do_receive_inbound_message(inbox=world.inbox_a, source_id="ann@example.com", body="one",
                                               meta={"a": 1})
    conversation = first.message.conversation
    with published() as frames, CaptureQueriesContext(connection) as ctx:
        result = actions.do_receive_inbound_message(inbox=world.inbox_a, source_id="ann@example.com",
                                                    body="  two\n  lines ", provider_message_id="m-2",
                                                    meta={"b": 2}, expect_new=True)
    # Two round trips: lock the contact; lock the conversation; reserve the message id (one simple query of three
    # statements), then INSERT the message; UPDATE the conversation; log the events (another).
    statements = _statements(ctx)
    assert [sql.split()[0] for sql in statements] == ["SELECT", "INSERT"]
    assert "FOR UPDATE OF c; SELECT" in statements[0] and "FOR UPDATE OF v; SELECT nextval" in statements[0]
    assert "; UPDATE" in statements[1] and "omnichannel_realtimeevent" in statements[1]
    assert result.created and not result.new_conversation
    message = result.message
    stored = Message.objects.get(pk=message.pk)
    assert message.pk > first.message.pk and not message._state.adding
    for field in ("uuid", "conversation_id", "inbox_id", "direction", "sender_type", "sender_user_id", "kind",
                  "body", "provider_message_id", "delivery_status", "failure_reason", "delivery_attempts",
                  "created_at"):
        assert getattr(stored, field) == getattr(message, field), field
    assert (stored.direction, stored.sender_type, stored.kind, stored.delivery_status, stored.body) == (
        "in", "contact", "message", "received", "two\n  lines")
    conversation.refresh_from_db()
    assert conversation.last_message_at == conversation.last_customer_message_at == stored.created_at
    assert conversation.updated_at == stored.created_at
    assert conversation.last_message_preview == "two lines"
    assert conversation.meta == {"a": 1, "b": 2}
    assert conversation.status == "open" and conversation.waiting_since is not None
    stream = f"inbox.{world.inbox_a.id}"
    assert [(g, f["type"], f["seq"], f["message_id"], f["preview"]) for g, f in frames] == [
        (stream, "message", 2, message.pk, "two lines")]
    assert frames[0][1]["new_conversation"] is False and frames[0][1]["contact_id"] == conversation.contact_id
    assert RealtimeEvent.objects.get(stream=stream, seq=2).payload == frames[0][1]


def test_web_chat_message_reaches_the_visitor_stream_too(world, published):
    chat = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    first = actions.do_receive_inbound_message(inbox=chat, source_id="visitor-1", body="hi")
    with published() as frames:
        second = actions.do_receive_inbound_message(inbox=chat, source_id="visitor-1", body="there",
                                                    provider_message_id="c-2", expect_new=True)
    visitor = f"webchat.{chat.id}.{first.message.conversation.contact_id}"
    assert [(g, f["seq"]) for g, f in frames] == [(f"inbox.{chat.id}", 2), (visitor, 2)]
    sent = frames[1][1]["message"]
    assert (sent["id"], sent["body"], sent["client_id"], sent["from"]) == (second.message.pk, "there", "c-2",
                                                                           "visitor")
    assert sent["created_at"] == Message.objects.get(pk=second.message.pk).created_at.isoformat()


def test_resent_client_id_is_stored_once(world):
    chat = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    actions.do_receive_inbound_message(inbox=chat, source_id="visitor-1", body="hi")
    sent = actions.do_receive_inbound_message(inbox=chat, source_id="visitor-1", body="x", provider_message_id="c-1",
                                              expect_new=True)
    again = actions.do_receive_inbound_message(inbox=chat, source_id="visitor-1", body="x",
                                               provider_message_id="c-1", expect_new=True)
    assert sent.created and not again.created and again.message.pk == sent.message.pk
    assert Message.objects.filter(provider_message_id="c-1").count() == 1
    assert RealtimeEvent.objects.filter(stream=f"inbox.{chat.id}").count() == 2  # the resend published nothing


def test_inside_a_callers_batch_the_events_keep_their_order(world, published):
    actions.do_receive_inbound_message(inbox=world.inbox_a, source_id="ann@example.com", body="one")
    stream = f"inbox.{world.inbox_a.id}"
    with published() as frames:
        with transaction.atomic(), realtime.batched():
            realtime.publish({"type": "note", "n": 1}, streams=[stream])
            actions.do_receive_inbound_message(inbox=world.inbox_a, source_id="ann@example.com", body="two")
    assert [(f["type"], f["seq"]) for _, f in frames] == [("note", 2), ("message", 3)]


def test_a_failed_write_leaves_nothing_behind(world, published):
    first = actions.do_receive_inbound_message(inbox=world.inbox_a, source_id="ann@example.com", body="one")
    Message.objects.filter(pk=first.message.pk).update(provider_message_id="taken")
    with published() as frames:  # the INSERT fails: the statement's UPDATE and log are rolled back with it
        result = actions.do_receive_inbound_message(inbox=world.inbox_a, source_id="ann@example.com", body="two",
                                                    provider_message_id="taken", expect_new=True)
    assert not result.created and result.message.pk == first.message.pk
    assert frames == []
    assert Message.objects.count() == 1 and RealtimeEvent.objects.count() == 1
    assert Conversation.objects.get().last_message_preview == "one"


def test_closed_conversation_and_unknown_customer_take_the_general_path(world, inbound):
    conversation = inbound(body="one").message.conversation
    actions.do_change_status(actor=world.alice, conversation=conversation, status="closed")
    again = inbound(body="two")
    assert again.new_conversation and again.message.conversation_id != conversation.pk
    other = inbound(source_id="new@example.com", body="hello")
    assert other.new_conversation and other.message.conversation.contact.identities.get().value == "new@example.com"
