"""Outbound delivery and what it means for the conversation: only a reply that left answers the customer
(waiting state, SLA clocks, the SLA report, the console agree), and a send in flight is never started twice."""

from __future__ import annotations

from datetime import datetime, timedelta
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


class Clock:
    """What sla.actions believes the database's now() is."""

    def __init__(self, start: datetime):
        self.now = start

    def advance(self, **kw):
        self.now += timedelta(**kw)


@pytest.fixture
def clock():
    c = Clock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    with mock.patch("sla.actions.db_now", lambda: c.now), \
            mock.patch("routing.tasks.route_conversation.delay_on_commit"), \
            mock.patch("routing.tasks.drain_queue.delay_on_commit"), \
            mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        yield c


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
