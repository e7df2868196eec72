"""SLA clocks driven by conversation actions, with a controlled clock; the sweep fires each transition once."""

from __future__ import annotations

from datetime import datetime, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import pytest

from conversations import actions
from conversations.models import Inbox, Segment
from sla.actions import do_sweep_sla
from sla.models import BusinessCalendar, Holiday, SlaClock, SlaEvent, SlaNotification, SlaPolicy

pytestmark = pytest.mark.django_db
UTC = ZoneInfo("UTC")




@pytest.fixture
def policies(world):
    """The issue's example policies."""
    office = BusinessCalendar.objects.create(name="Office", timezone="UTC",
                                             intervals={d: [["09:00", "17:00"]] for d in
                                                        ("mon", "tue", "wed", "thu", "fri")})
    vip = Segment.objects.create(name="VIP", priority_level=5)
    p = {}
    p["vip"] = SlaPolicy.objects.create(name="VIP", position=1, conditions=[
        {"field": "vip_level", "op": "gte", "value": 5}], targets={"first_response": {"normal": 5, "high": 5}})
    p["public_tweet"] = SlaPolicy.objects.create(name="Public tweets", position=2, conditions=[
        {"field": "channel", "op": "eq", "value": "x"}, {"field": "meta.post_type", "op": "eq", "value": "public"}],
        targets={"first_response": {"normal": 60}})
    p["messenger"] = SlaPolicy.objects.create(name="Private Messenger", position=3, conditions=[
        {"field": "channel", "op": "eq", "value": "messenger"}], targets={"first_response": {"normal": 15}})
    p["chat"] = SlaPolicy.objects.create(name="Live chat", position=4, calendar=office,
                                         business_time_metrics=["first_response"], conditions=[
                                             {"field": "channel", "op": "eq", "value": "webchat"}],
                                         targets={"first_response": {"normal": 1}})
    p["fast"] = SlaPolicy.objects.create(name="SMS and social", position=5, conditions=[
        {"field": "channel", "op": "in", "value": ["sms", "whatsapp", "instagram", "x"]}],
        targets={"first_response": {"normal": 60}})
    p["email"] = SlaPolicy.objects.create(
        name="Email", position=6, conditions=[{"field": "channel", "op": "eq", "value": "email"}],
        pause_statuses=["pending", "on_hold"], warn_at_percent=75,
        targets={"first_response": {"low": 2880, "normal": 1440, "high": 240, "urgent": 60},
                 "next_response": {"normal": 480}, "resolution": {"normal": 4320}},
        escalations={"warning": [{"action": "notify", "to": "assignee"}],
                     "breach": [{"action": "raise_priority"}, {"action": "add_tag", "tag": "sla-breached"},
                                {"action": "reassign_team", "team": world.sales.pk},
                                {"action": "notify", "users": [world.bob.pk]}]})
    p["vip_segment"] = vip
    p["office"] = office
    return p


def inbox(kind):
    from agents.models import Team

    box, created = Inbox.objects.get_or_create(name=kind, kind=kind)
    if created:
        Team.objects.get(name="Support").inboxes.add(box)
    return box


def receive(kind="email", source="c@example.com", body="Hello there, I need help", **kw):
    return actions.do_receive_inbound_message(inbox=inbox(kind), source_id=source, body=body,
                                              **kw).message.conversation


def reply(conversation, actor, body):
    """An agent's reply that leaves (the provider reports it sent): only then does it answer the customer."""
    message = actions.do_send_agent_reply(actor=actor, conversation=conversation, body=body)
    assert actions.do_update_delivery_status(message=message, status="sent")
    return message


def clocks(conversation):
    return {c.metric: c for c in SlaClock.objects.filter(conversation=conversation)}


def test_example_targets(clock, policies):
    email = clocks(receive("email"))["first_response"]
    assert email.target_seconds == 24 * 3600 and email.due_at == clock.now + timedelta(hours=24)
    assert clocks(receive("sms", "+15550001"))["first_response"].target_seconds == 3600
    assert clocks(receive("whatsapp", "+15550002"))["first_response"].target_seconds == 3600
    assert clocks(receive("x", "u1", meta={"post_type": "public"}))["first_response"].target_seconds == 3600
    assert clocks(receive("messenger", "psid"))["first_response"].target_seconds == 15 * 60
    chat = clocks(receive("webchat", "v1"))["first_response"]
    assert chat.target_seconds == 60 and chat.due_at == clock.now + timedelta(minutes=1)


def test_live_chat_outside_business_hours_counts_from_opening(clock, policies):
    clock.now = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)  # Saturday evening
    chat = clocks(receive("webchat", "v2"))["first_response"]
    assert chat.due_at == datetime(2026, 11, 30, 9, 1, tzinfo=UTC)


def test_vip_segment_gets_the_faster_target(clock, policies):
    conv = receive("email")
    assert clocks(conv)["first_response"].target_seconds == 24 * 3600
    actions.do_set_contact_segments(actor=None, contact=conv.contact, segment_ids=[policies["vip_segment"].id])
    clock_after = clocks(conv)["first_response"]
    assert clock_after.policy.name == "VIP" and clock_after.target_seconds == 300


def test_priority_change_reapplies_keeping_elapsed_time(clock, policies):
    conv = receive("email")
    clock.advance(minutes=30)
    actions.do_change_priority(actor=None, conversation=conv, priority=2)  # high: 4 h
    fr = clocks(conv)["first_response"]
    assert fr.target_seconds == 4 * 3600 and fr.consumed_seconds == 1800
    assert fr.due_at == clock.now + timedelta(hours=3, minutes=30)
    assert SlaEvent.objects.filter(clock=fr, kind="reapplied").exists()


def test_pause_and_resume(clock, policies, world):
    conv = receive("email")
    clock.advance(hours=2)
    actions.do_change_status(actor=None, conversation=conv, status="pending")
    fr = clocks(conv)["first_response"]
    assert fr.state == "paused" and fr.consumed_seconds == 7200 and fr.due_at is None
    conv.refresh_from_db()
    assert conv.sla_paused is True
    clock.advance(hours=10)  # waiting on the customer does not count
    actions.do_change_status(actor=None, conversation=conv, status="open")
    fr = clocks(conv)["first_response"]
    assert fr.state == "running" and fr.due_at == clock.now + timedelta(hours=22)
    kinds = list(SlaEvent.objects.filter(clock=fr).order_by("id").values_list("kind", flat=True))
    assert kinds == ["started", "paused", "resumed"]


def test_reply_fulfills_and_next_response_starts(clock, policies, world):
    conv = receive("email")
    clock.advance(minutes=10)
    reply(conv, world.alice, "On it")
    fr = SlaClock.objects.get(conversation=conv, metric="first_response")
    assert fr.state == "fulfilled" and not fr.breached_at
    receive("email", body="Thanks, any news?")
    nr = clocks(conv)["next_response"]
    assert nr.state == "running" and nr.target_seconds == 8 * 3600
    actions.do_change_status(actor=world.alice, conversation=conv, status="solved")
    states = {c.metric: (c.state, c.breached_at is None) for c in SlaClock.objects.filter(conversation=conv)}
    assert states["resolution"] == ("fulfilled", True) and states["next_response"][0] == "cancelled"


def _make_due(clock_obj, now, *, warn=False):
    past = now - timedelta(seconds=1)
    if warn:
        SlaClock.objects.filter(pk=clock_obj.pk).update(warn_at=past)
    else:
        SlaClock.objects.filter(pk=clock_obj.pk).update(warn_at=past, due_at=past)


def test_warning_then_breach_each_exactly_once_with_escalations(clock, policies, world, published):
    conv = receive("email")
    actions.do_assign_conversation(actor=None, conversation=conv, assignee=world.alice)
    fr = clocks(conv)["first_response"]
    _make_due(fr, clock.now, warn=True)
    with mock.patch("sla.actions.db_now", lambda: clock.now), published() as frames:
        assert do_sweep_sla()["warned"] >= 1
        assert do_sweep_sla() == {"warned": 0, "breached": 0}
    assert SlaNotification.objects.filter(user=world.alice, conversation=conv).count() == 1
    assert any(f["type"] == "notification" and f["user_ids"] == [world.alice.id] for _, f in frames)
    _make_due(fr, clock.now)
    with mock.patch("sla.actions.db_now", lambda: clock.now), published() as frames:
        fired = do_sweep_sla()
        again = do_sweep_sla()
    assert fired["breached"] >= 1 and again == {"warned": 0, "breached": 0}
    assert SlaEvent.objects.filter(clock=fr, kind="warned").count() == 1
    assert SlaEvent.objects.filter(clock=fr, kind="breached").count() == 1
    conv.refresh_from_db()
    assert conv.priority == 2 and conv.team == world.sales
    assert "sla-breached" in conv.tags.values_list("name", flat=True)
    assert SlaNotification.objects.filter(user=world.bob).exists()
    assert any(f.get("op") == "sla" and f.get("sla_event") == "breached" for _, f in frames)
    # Answering after the breach is "achieved late".
    reply(conv, world.alice, "Sorry for the wait")
    assert SlaEvent.objects.filter(clock=fr, kind="fulfilled_late").count() == 1


def test_two_sweepers_never_double_fire(clock, policies):
    conv = receive("email")
    fr = clocks(conv)["first_response"]
    _make_due(fr, clock.now)
    with mock.patch("sla.actions.db_now", lambda: clock.now):
        first = do_sweep_sla()
        second = do_sweep_sla()
    assert first["breached"] == 1 and second["breached"] == 0


def test_holidays_loaded_from_the_holidays_package(policies):
    from sla.admin import load_country_holidays

    count = load_country_holidays(policies["office"], "FR", 2026)
    assert count >= 11
    assert Holiday.objects.filter(calendar=policies["office"], date="2026-07-14").exists()


def test_console_shows_sla_badge_and_sorts_by_urgency(clock, policies, world, client):
    email = receive("email", "late@example.com")
    sms = receive("sms", "+15550009", body="urgent question")
    actions.do_assign_conversation(actor=None, conversation=email, team=world.support)
    world.support.inboxes.add(inbox("sms"))
    client.force_login(world.bob)
    r = client.get("/console/?view=all&sort=sla")
    ids = [c.id for c in r.context["rows"]]
    assert ids.index(sms.id) < ids.index(email.id)  # 1 h before 24 h
    assert b'class="sla"' in r.content and b"data-due=" in r.content


def test_sla_report_counts_achieved_and_missed(clock, policies, world, client):
    met = receive("email", "met@example.com")
    reply(met, world.alice, "fast answer")
    late = receive("sms", "+15550042")
    fr = clocks(late)["first_response"]
    _make_due(fr, clock.now)
    with mock.patch("sla.actions.db_now", lambda: clock.now):
        do_sweep_sla()
    from reporting.selectors import sla_outcomes

    by_channel = {r["group"]: r for r in sla_outcomes(group_by="channel")}
    assert by_channel["email"]["achieved"] == 1 and by_channel["email"]["rate"] == 100.0
    assert by_channel["sms"]["missed"] == 1 and by_channel["sms"]["rate"] == 0.0
    client.force_login(world.alice)
    assert client.get("/reports/sla/").status_code == 404  # agents don't read reports
    client.force_login(world.bob)
    r = client.get("/reports/sla/?by=policy")
    assert r.status_code == 200 and b"SMS and social" in r.content
