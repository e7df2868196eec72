"""Parallel deliveries on real PostgreSQL: one contact, one conversation, each message stored once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from conversations.actions import do_receive_inbound_message
from conversations.models import Contact, Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)


def _parallel(n, fn):
    barrier = threading.Barrier(n)
    errors = []

    def run(i):
        try:
            barrier.wait()
            fn(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_first_messages_from_a_new_customer_arriving_together(world):
    _parallel(6, lambda i: do_receive_inbound_message(inbox=world.inbox_a, source_id="new@example.com",
                                                      body=f"hello {i}"))
    assert Contact.objects.count() == 1
    assert Conversation.objects.count() == 1
    assert Message.objects.count() == 6


def test_the_same_delivery_retried_in_parallel_is_stored_once(world):
    _parallel(6, lambda i: do_receive_inbound_message(inbox=world.inbox_a, source_id="new@example.com",
                                                      body="hello", provider_message_id="SM-1"))
    assert Message.objects.count() == 1


def test_returning_customer_messages_arriving_together_open_one_conversation(world):
    from conversations.actions import do_change_status

    first = do_receive_inbound_message(inbox=world.inbox_a, source_id="back@example.com", body="old")
    do_change_status(actor=None, conversation=first.message.conversation, status="closed")
    _parallel(6, lambda i: do_receive_inbound_message(inbox=world.inbox_a, source_id="back@example.com",
                                                      body=f"again {i}"))
    assert Conversation.objects.count() == 2
    assert Conversation.objects.exclude(pk=first.message.conversation_id).get().messages.count() == 6


def test_a_lock_order_race_in_the_one_trip_lookup_is_retried_on_the_general_path(world):
    """_lock_known_customer raises when the customer's identity appeared between its statements (it then holds
    the conversation's lock without the contact's); the attempt is rolled back and the general path stores the
    message once."""
    from unittest import mock

    from conversations.actions import inbound

    first = do_receive_inbound_message(inbox=world.inbox_a, source_id="race@example.com", body="one")
    real = inbound._lock_known_customer
    calls = []

    def racing(*args, **kwargs):
        calls.append(1)
        real(*args, **kwargs)  # takes the locks, as in the race
        raise inbound._LockOrderRace

    with mock.patch.object(inbound, "_lock_known_customer", racing):
        second = do_receive_inbound_message(inbox=world.inbox_a, source_id="race@example.com", body="two")
    assert calls == [1] and second.created
    assert second.message.conversation_id == first.message.conversation_id
    assert list(Message.objects.order_by("id").values_list("body", flat=True)) == ["one", "two"]
