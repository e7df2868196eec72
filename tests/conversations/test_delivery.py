"""Outbound delivery and what it means for the conversation: only a reply that left answers the customer
(waiting state, SLA clocks, the SLA report, the console agree), and a send in flight is never started twice."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from conversations import actions
from conversations.models import ChannelKind, Conversation, Inbox, Message
from conversations.tasks import deliver_outbound_message
from reporting.selectors import sla_outcomes
from sla.actions import do_sweep_sla
from sla.models import SlaClock, SlaEvent, SlaPolicy

pytestmark = pytest.mark.django_db
UTC = ZoneInfo("UTC")




@pytest.fixture
def policy(world):
    return SlaPolicy.objects.create(name="Everything", position=1, conditions=[],
                                    targets={"first_response": {"normal": 60}, "next_response": {"normal": 60}})


def _inbox(world, kind, **settings):
    box = Inbox.objects.create(name=f"{kind} inbox", kind=kind, settings=settings, secret="s3cret")
    world.support.inboxes.add(box)
    return box


def _fr(conversation):
    return SlaClock.objects.get(conversation=conversation, metric="first_response")


@pytest.mark.parametrize("setup", ["email", "sms_unconfigured"])
def test_a_reply_that_fails_answers_nothing(world, inbound, clock, policy, setup):
    """An email inbox that cannot send and an SMS inbox with no account: the reply fails with its reason; the
    conversation is still waiting, the first-response clock still runs (and breaches), the report says missed."""
    box = world.inbox_a if setup == "email" else _inbox(world, ChannelKind.SMS, from_number="+15550100000")
    conv = inbound(inbox=box, source_id="+14155550199" if setup != "email" else "c@example.com").message.conversation
    clock.advance(minutes=5)
    reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On it")
    assert deliver_outbound_message(reply.id) == "failed"
    reply.refresh_from_db()
    conv.refresh_from_db()
    assert reply.delivery_status == "failed"
    assert ("not available" if setup == "email" else "account SID") in reply.failure_reason
    assert conv.waiting_since is not None and conv.first_agent_reply_at is None
    fr = _fr(conv)
    assert fr.state == "running" and fr.fulfilled_at is None and conv.sla_due_at == fr.due_at
    assert not SlaEvent.objects.filter(clock=fr, kind__in=["fulfilled", "fulfilled_late"]).exists()
    SlaClock.objects.filter(pk=fr.pk).update(due_at=clock.now - timedelta(seconds=1),
                                             warn_at=clock.now - timedelta(seconds=1))
    assert do_sweep_sla()["breached"] == 1
    [row] = sla_outcomes(group_by="metric")
    assert (row["achieved"], row["missed"], row["rate"]) == (0, 1, 0.0)


def test_the_console_shows_the_failed_reply_and_the_waiting_conversation(world, inbound, clock, policy, client):
    conv = inbound(inbox=world.inbox_a).message.conversation
    reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On it")
    deliver_outbound_message(reply.id)
    client.force_login(world.alice)
    messages = client.get(f"/console/c/{conv.id}/messages/?after=0").content.decode()
    assert "failed: Sending on Email inboxes is not available yet" in messages
    row = client.get(f"/console/rows/?view=all&ids={conv.id}", HTTP_ACCEPT="application/json").json()["rows"]
    assert 'class="waiting"' in row[str(conv.id)] and 'class="sla"' in row[str(conv.id)]


def test_a_reply_answers_when_it_leaves_and_the_target_is_met_then(world, inbound, clock, policy, published):
    """A reply that leaves (the API channel in poll mode: sent by the task) fulfils the first response at the
    time it left; until then the conversation is waiting and the clock runs."""
    box = _inbox(world, ChannelKind.API, delivery="poll")
    conv = inbound(inbox=box, source_id="shop-1").message.conversation
    clock.advance(minutes=5)
    reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On it")
    conv.refresh_from_db()
    assert reply.delivery_status == "queued"
    assert conv.waiting_since is not None and _fr(conv).state == "running"
    clock.advance(minutes=2)
    with published() as frames:
        assert deliver_outbound_message(reply.id) == "sent"
    conv.refresh_from_db()
    fr = _fr(conv)
    assert fr.state == "fulfilled" and fr.fulfilled_at == clock.now
    assert conv.waiting_since is None and conv.first_agent_reply_at is not None and conv.sla_due_at is None
    assert any(f.get("op") == "delivery" and f.get("message_id") == reply.id for _, f in frames)
    assert any(f.get("type") == "conversation" and f.get("op") == "sla" and f["sla_due_at"] is None
               for _, f in frames)
    [row] = sla_outcomes(group_by="metric")
    assert (row["achieved"], row["missed"]) == (1, 0)
    # A later callback (delivered, read) answers nothing again.
    assert actions.do_update_delivery_status(message=reply, status="delivered")
    assert SlaEvent.objects.filter(kind="started", clock__metric="periodic_update").count() == 0
    assert SlaEvent.objects.filter(clock=fr, kind="fulfilled").count() == 1


def test_a_customer_message_after_the_reply_was_written_keeps_the_conversation_waiting(world, inbound, clock,
                                                                                       policy):
    box = _inbox(world, ChannelKind.API, delivery="poll")
    conv = inbound(inbox=box, source_id="shop-2").message.conversation
    reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On it")
    clock.advance(minutes=1)
    again = inbound(inbox=box, source_id="shop-2", body="Also, one more thing").message
    clock.advance(minutes=1)
    assert deliver_outbound_message(reply.id) == "sent"
    conv.refresh_from_db()
    assert conv.first_agent_reply_at is not None and conv.waiting_since == again.created_at
    assert _fr(conv).state == "fulfilled"
    assert SlaClock.objects.get(conversation=conv, metric="next_response").state == "running"


def test_a_web_chat_reply_goes_out_live_and_answers_at_once(world, inbound, clock, policy):
    chat = _inbox(world, ChannelKind.WEBCHAT)
    conv = inbound(inbox=chat, source_id="visitor-1").message.conversation
    clock.advance(minutes=1)
    with mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit") as enqueued:
        reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="Hi!")
    assert reply.delivery_status == "sent" and not enqueued.called
    conv.refresh_from_db()
    assert conv.waiting_since is None and conv.first_agent_reply_at is not None
    assert _fr(conv).state == "fulfilled" and _fr(conv).fulfilled_at == clock.now


def test_the_composer_warns_when_the_inbox_cannot_send(world, inbound, client):
    client.force_login(world.alice)
    warning = 'id="send-warning"'
    email = inbound(inbox=world.inbox_a).message.conversation
    page = client.get(f"/console/c/{email.id}/").content.decode()
    assert warning in page and "Sending on Email inboxes is not available yet" in page
    sms = _inbox(world, ChannelKind.SMS, account_sid="AC" + "1" * 32)  # no sender number
    conv = inbound(inbox=sms, source_id="+14155550199").message.conversation
    page = client.get(f"/console/c/{conv.id}/").content.decode()
    assert warning in page and "no sender number" in page
    Inbox.objects.filter(pk=sms.pk).update(settings={"account_sid": "AC" + "1" * 32, "from_number": "+15550100000"})
    assert warning not in client.get(f"/console/c/{conv.id}/").content.decode()
    api = inbound(inbox=world.inbox_api, source_id="shop-3").message.conversation
    assert warning not in client.get(f"/console/c/{api.id}/").content.decode()
    Inbox.objects.filter(pk=world.inbox_api.pk).update(settings={})
    page = client.get(f"/console/c/{api.id}/").content.decode()
    assert warning in page and "no webhook_url" in page


def test_only_agent_replies_that_leave_count(world, inbound, clock, policy):
    """Status updates of a customer's own message or a note never answer anything."""
    conv = inbound(inbox=world.inbox_a).message.conversation
    incoming = Message.objects.get(conversation=conv)
    Message.objects.filter(pk=incoming.pk).update(delivery_status="queued")
    incoming.refresh_from_db()
    assert actions.do_update_delivery_status(message=incoming, status="sent")
    conv = Conversation.objects.get(pk=conv.pk)
    assert conv.waiting_since is not None and _fr(conv).state == "running"


# --- the re-drive and a send in flight -------------------------------------------------------------------------


@pytest.fixture
def slow_provider(world, settings):
    """(inbox, the provider's accepted sends, an Event set when a send reaches it) for each transport."""
    from tests.integrations.api.test_transport import FakeIntegration
    from tests.integrations.twilio_sms.fake import FakeTwilio

    made = []

    def make(kind: str):
        if kind == "sms":
            fake = FakeTwilio()
            fake.accept_delay = 2.0  # Twilio taking its time to accept
            settings.TWILIO_API_BASE_URL = fake.url
            box = _inbox(world, ChannelKind.SMS, account_sid="AC" + "1" * 32, from_number="+15550100000")
            made.append(fake)
            return box, fake.sends, fake.send_arrived
        receiver = FakeIntegration(delay=2.0)
        made.append(receiver)
        return _inbox(world, ChannelKind.API, webhook_url=receiver.url), receiver.requests, receiver.arrived

    yield make
    for provider in made:
        provider.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["sms", "api"])
def test_the_redrive_never_starts_a_second_send_while_the_first_is_in_flight(world, inbound, slow_provider,
                                                                             no_background_tasks, kind):
    """A backlog: the reply was written 12 minutes ago and its first send is at the provider right now. The
    re-drive, running meanwhile, leaves it alone: one send, one attempt."""
    import threading

    from django.db import connection
    from django.utils import timezone

    from conversations.tasks import redrive_outbound_messages

    box, sends, arrived = slow_provider(kind)
    conv = inbound(inbox=box, source_id="+14155550199" if kind == "sms" else "shop-9").message.conversation
    reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="Your parcel ships today")
    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(minutes=12))
    results = {}

    def first_send():
        try:
            results["first"] = deliver_outbound_message(reply.id)
        finally:
            connection.close()

    sender = threading.Thread(target=first_send)
    sender.start()
    assert arrived.wait(10), "the first send never reached the provider"
    with mock.patch("conversations.tasks.deliver_outbound_message.delay",
                    side_effect=lambda message_id: results.setdefault("again", deliver_outbound_message(message_id))):
        redriven = redrive_outbound_messages()
    sender.join(30)
    assert (redriven, results) == (0, {"first": "sent"})
    assert len(sends) == 1
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.delivery_attempts) == ("sent", 1)


def test_a_retry_keeps_its_lease_and_the_redrive_takes_over_only_when_it_is_overdue(world, inbound,
                                                                                    no_background_tasks):
    """A temporary failure schedules a retry: the message is queued again, leased to that retry; the re-drive does
    not enqueue a second task for it (however old the message is) until the retry is overdue."""
    from celery.exceptions import Retry
    from django.utils import timezone

    from conversations.tasks import redrive_outbound_messages

    conv = inbound(inbox=world.inbox_api, source_id="shop-10").message.conversation  # its webhook refuses
    reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On it")
    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(minutes=12))
    with pytest.raises(Retry):
        deliver_outbound_message.apply(args=[reply.id], throw=True)
    reply.refresh_from_db()
    assert reply.delivery_status == "queued" and reply.delivery_lease_until > timezone.now()
    with mock.patch("conversations.tasks.deliver_outbound_message.delay") as enqueued:
        assert redrive_outbound_messages() == 0
        Message.objects.filter(pk=reply.pk).update(delivery_lease_until=timezone.now() - timedelta(seconds=1))
        assert redrive_outbound_messages() == 1
        assert redrive_outbound_messages() == 0  # leased to the task it just enqueued
    enqueued.assert_called_once_with(reply.id)


def test_a_send_whose_lease_expired_is_redriven(world, inbound, no_background_tasks):
    """A worker that died mid-send: once its lease has expired, the message is queued and enqueued again."""
    from django.utils import timezone

    from conversations.tasks import redrive_outbound_messages

    conv = inbound(inbox=world.inbox_api, source_id="shop-11").message.conversation
    reply = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On it")
    Message.objects.filter(pk=reply.pk).update(delivery_status="sending", delivery_attempts=1,
                                               delivery_lease_until=timezone.now() + timedelta(minutes=1))
    with mock.patch("conversations.tasks.deliver_outbound_message.delay") as enqueued:
        assert redrive_outbound_messages() == 0
        Message.objects.filter(pk=reply.pk).update(delivery_lease_until=timezone.now() - timedelta(seconds=1))
        assert redrive_outbound_messages() == 1
    enqueued.assert_called_once_with(reply.id)
    reply.refresh_from_db()
    assert reply.delivery_status == "queued"
