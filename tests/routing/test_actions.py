"""Routing scenarios played through the inbound action every channel calls; each asserts who gets the
conversation and the stored explanation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import AgentProfile, AgentSkill, Skill, Team
from conversations.actions import do_change_status, do_receive_inbound_message, do_update_contact
from conversations.models import Conversation, Segment
from routing.actions import do_accept_offer, do_drain_queue, do_expire_offers, do_route_conversation
from routing.models import QueueEntry, RoutingConfig, RoutingDecision, RoutingRule

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_background_tasks(no_background_tasks):
    yield


def agent(user) -> AgentProfile:
    return AgentProfile.objects.get(user=user)


def arrive(inbox, source_id="cust-1", body="Hello, I need help with my order", **kw):
    conversation = do_receive_inbound_message(inbox=inbox, source_id=source_id, body=body, **kw).message.conversation
    do_route_conversation(conversation_id=conversation.id)
    conversation.refresh_from_db()
    return conversation


def decision(conversation) -> RoutingDecision:
    return conversation.routing_decisions.first()


def test_public_facebook_post_goes_to_the_public_post_specialist(desk, make_agent):
    social = make_agent("sofia", teams=[desk.support])
    skill = Skill.objects.create(name="Public Facebook posts")
    AgentSkill.objects.create(agent=agent(social), skill=skill, level=4)
    RoutingRule.objects.create(name="Public posts", position=1, target="skill", target_skill=skill, conditions=[
        {"field": "channel", "op": "eq", "value": "messenger"}, {"field": "meta.post_type", "op": "eq",
                                                                "value": "public"}])
    conv = arrive(desk.inboxes["messenger"], source_id="psid-1", body="Love your tents! Do you ship to Canada?",
                  meta={"post_type": "public"})
    assert conv.assignee == social
    d = decision(conv)
    assert d.summary == "Routed to Sofia: Public posts, skill Public Facebook posts ≥ 1"
    assert d.details["rules"][0]["matched"] is True


def test_widget_visitor_who_picks_billing_goes_to_the_billing_team(desk):
    RoutingRule.objects.create(name="Billing pre-chat", position=1, target="team", target_team=desk.billing,
                               conditions=[{"field": "prechat.department", "op": "eq", "value": "Billing"}])
    conv = arrive(desk.inboxes["webchat"], meta={"prechat": {"name": "Vera", "department": "Billing"}})
    assert conv.assignee == desk.billing_agent and conv.team == desk.billing
    assert "Billing pre-chat, team Billing" in decision(conv).summary


def test_open_high_priority_issue_goes_back_to_its_owner_when_online(desk, make_agent):
    owner = make_agent("olivia", teams=[desk.support])
    RoutingRule.objects.create(name="Open issue owner", position=1, target="last_agent", conditions=[
        {"field": "history.open_high_priority", "op": "exists"}])
    first = arrive(desk.inboxes["email"], source_id="ann@example.com")
    from conversations.actions import do_assign_conversation, do_change_priority

    do_assign_conversation(actor=None, conversation=first, assignee=owner)
    do_change_priority(actor=None, conversation=first, priority=2)
    second = arrive(desk.inboxes["sms"], source_id="+15551230000", body="Any news on my refund?")
    from conversations.actions import do_merge_contacts

    do_merge_contacts(actor=None, source=second.contact, target=first.contact)
    second.assignee = None
    Conversation.objects.filter(pk=second.pk).update(assignee=None)
    do_route_conversation(conversation_id=second.pk)
    second.refresh_from_db()
    assert second.assignee == owner
    assert "Open issue owner, the last agent" in decision(second).summary
    # When the owner is offline, the rule cannot be served and the conversation goes elsewhere.
    AgentProfile.objects.filter(user=owner).update(status="offline")
    from conversations.actions import do_receive_inbound_message as receive
    from conversations.models import ContactIdentity

    third = receive(inbox=desk.inboxes["whatsapp"], source_id="+15551239999", body="Another thing").message.conversation
    ContactIdentity.objects.filter(value="+15551239999").update(contact=first.contact)
    Conversation.objects.filter(pk=third.pk).update(contact=first.contact)
    do_route_conversation(conversation_id=third.pk)
    third.refresh_from_db()
    assert third.assignee != owner
    skipped = [c for t in decision(third).details["targets"] for c in t["candidates"] if c["agent"] == "Olivia"]
    assert skipped and skipped[0]["skipped"] == "offline"


def test_northeast_visitor_goes_to_the_regional_agent_in_their_time_zone(desk, make_agent):
    east = Team.objects.create(name="US East")
    east.inboxes.set(desk.inboxes.values())
    regional = make_agent("nora", teams=[east])
    AgentProfile.objects.filter(user=regional).update(timezone="America/New_York")
    RoutingRule.objects.create(name="US Northeast", position=1, target="team", target_team=east, conditions=[
        {"field": "country", "op": "eq", "value": "US"},
        {"field": "state", "op": "in", "value": ["ME", "NH", "VT", "MA", "RI", "CT", "NY", "NJ", "PA"]}])
    conv = arrive(desk.inboxes["webchat"], meta={"prechat": {"country": "us", "state": "ny", "zip": "10001"}})
    assert conv.assignee == regional
    other = arrive(desk.inboxes["webchat"], source_id="cust-ca", meta={"prechat": {"country": "US", "state": "CA"}})
    assert other.assignee != regional


def test_spanish_sms_goes_to_a_spanish_speaking_agent(desk, make_agent):
    spanish = Skill.objects.create(name="Spanish")
    hablo = make_agent("hector", teams=[desk.support])
    AgentSkill.objects.create(agent=agent(hablo), skill=spanish, level=5)
    RoutingRule.objects.create(name="Spanish speakers", position=1, target="skill", target_skill=spanish,
                               conditions=[{"field": "language", "op": "eq", "value": "es"}])
    conv = arrive(desk.inboxes["sms"], source_id="+34600111222",
                  body="Hola, mi pedido llegó roto y necesito un reembolso por favor")
    assert conv.assignee == hablo
    assert "language eq 'es': yes" in " ".join(decision(conv).details["rules"][0]["conditions"])
    english = arrive(desk.inboxes["sms"], source_id="+15550001111", body="Hello, my order arrived broken")
    assert english.assignee != hablo


def test_vip_rule_wins_over_location_language_and_prechat_rules(desk, make_agent):
    vip_team = Team.objects.create(name="VIP desk")
    vip_team.inboxes.set(desk.inboxes.values())
    concierge = make_agent("victor", teams=[vip_team])
    Segment.objects.create(name="VIP", priority_level=5, rule={"match": "all", "conditions": [
        {"field": "attributes.spend_tier", "op": "gte", "value": 5}]})
    RoutingRule.objects.create(name="VIP", position=1, target="team", target_team=vip_team, set_priority=3,
                               set_tags="vip", conditions=[{"field": "vip_level", "op": "gte", "value": 5}])
    RoutingRule.objects.create(name="Billing", position=2, target="team", target_team=desk.billing,
                               conditions=[{"field": "prechat.department", "op": "eq", "value": "Billing"}])
    RoutingRule.objects.create(name="English", position=3, target="team", target_team=desk.support,
                               conditions=[{"field": "language", "op": "eq", "value": "en"}])
    RoutingRule.objects.create(name="US", position=4, target="team", target_team=desk.tier2,
                               conditions=[{"field": "country", "op": "eq", "value": "US"}])
    conv = do_receive_inbound_message(inbox=desk.inboxes["webchat"], source_id="rich", body="Hello, billing question",
                                      meta={"prechat": {"department": "Billing", "country": "US"}}
                                      ).message.conversation
    do_update_contact(actor=None, contact=conv.contact, custom_attributes={"spend_tier": 7})
    do_route_conversation(conversation_id=conv.id)
    conv.refresh_from_db()
    assert conv.assignee == concierge and conv.priority == 3
    assert list(conv.tags.values_list("name", flat=True)) == ["vip"]
    matched = [r["rule"] for r in decision(conv).details["rules"] if r["matched"]]
    assert matched == ["VIP"]  # evaluation stops at the first rule that is served


def test_customer_who_chatted_more_than_three_times_goes_to_tier_two(desk):
    RoutingRule.objects.create(name="Frequent customers", position=1, target="team", target_team=desk.tier2,
                               conditions=[{"field": "history.conversations", "op": "gt", "value": 3}])
    for i in range(4):
        conv = arrive(desk.inboxes["webchat"], source_id="loyal", body=f"question {i}")
        assert conv.assignee != desk.senior
        do_change_status(actor=None, conversation=conv, status="closed")
    fifth = arrive(desk.inboxes["webchat"], source_id="loyal", body="question 5")
    assert fifth.assignee == desk.senior


def test_secondary_target_then_next_rule_then_queue(desk):
    RoutingRule.objects.create(name="Billing first", position=1, target="team", target_team=desk.billing,
                               secondary_target="team", secondary_team=desk.tier2,
                               conditions=[{"field": "text", "op": "any_of", "value": ["refund", "invoice"]}])
    AgentProfile.objects.filter(user=desk.billing_agent).update(status="away")
    conv = arrive(desk.inboxes["email"], body="Please send my invoice")
    assert conv.assignee == desk.senior and "(secondary target)" in decision(conv).summary
    AgentProfile.objects.update(status="offline")
    waiting = arrive(desk.inboxes["email"], source_id="c2", body="invoice again")
    assert waiting.assignee is None and decision(waiting).outcome == "queued"
    assert QueueEntry.objects.filter(conversation=waiting).exists()
    RoutingConfig.objects.update_or_create(pk=1, defaults={"overflow": "ticket"})
    ticket = arrive(desk.inboxes["email"], source_id="c3", body="hello")
    # Others are queued for this inbox: fairness first, it waits behind them.
    assert decision(ticket).outcome == "queued"


def test_ticket_overflow_when_nobody_is_there(desk):
    RoutingConfig.objects.update_or_create(pk=1, defaults={"overflow": "ticket"})
    AgentProfile.objects.update(status="offline")
    conv = arrive(desk.inboxes["email"], body="hello")
    assert decision(conv).outcome == "ticket" and "follow-up" in conv.tags.values_list("name", flat=True)


def test_away_offline_deleted_agents_empty_teams_and_rule_loops(desk, make_agent, django_user_model):
    empty = Team.objects.create(name="Empty")
    gone = make_agent("gone", teams=[desk.support])
    gone_profile = agent(gone)
    RoutingRule.objects.create(name="Empty team", position=1, target="team", target_team=empty)
    RoutingRule.objects.create(name="Deleted agent", position=2, target="agent", target_agent=gone_profile)
    RoutingRule.objects.create(name="Broken", position=3, target="team", target_team=None,
                               conditions=[{"oops": 1}, "not a dict"])
    gone.delete()
    AgentProfile.objects.exclude(user=desk.generalist).update(status="away")
    conv = arrive(desk.inboxes["email"])
    assert conv.assignee == desk.generalist
    assert "default" in decision(conv).summary


def test_reopen_window_returns_to_the_same_agent(desk, make_agent):
    first = arrive(desk.inboxes["webchat"], source_id="back")
    owner = first.assignee
    do_change_status(actor=None, conversation=first, status="closed")
    make_agent("zed", teams=[desk.support])  # a less busy agent exists
    again = arrive(desk.inboxes["webchat"], source_id="back", body="me again")
    assert again.assignee == owner and "returning customer" in decision(again).summary
    Conversation.objects.filter(pk=again.pk).update(closed_at=timezone.now() - timedelta(days=10),
                                                    status="closed")
    later = arrive(desk.inboxes["webchat"], source_id="back", body="months later")
    assert decision(later).summary.endswith("default: the inbox's teams, least busy")


def test_offer_timeout_moves_the_chat_and_counts_the_miss(desk, make_agent):
    desk.support.auto_accept = False
    desk.support.offer_timeout_seconds = 30
    desk.support.save()
    AgentProfile.objects.exclude(user=desk.generalist).update(status="offline")
    backup = make_agent("bea", teams=[desk.support])
    AgentProfile.objects.filter(user=backup).update(last_assigned_at=timezone.now())  # gina is idler: first
    conv = arrive(desk.inboxes["webchat"])
    entry = QueueEntry.objects.get(conversation=conv)
    assert entry.state == "offered" and entry.offered_to.user == desk.generalist and conv.assignee is None
    QueueEntry.objects.filter(pk=entry.pk).update(offer_expires_at=timezone.now() - timedelta(seconds=1))
    assert do_expire_offers() == 1
    gina = agent(desk.generalist)
    assert gina.status == "away" and gina.missed_offers == 1
    entry.refresh_from_db()
    assert entry.offered_to.user == backup
    from omnichannel.errors import ActionError

    with pytest.raises(ActionError):
        do_accept_offer(user=desk.generalist, conversation_id=conv.id)
    do_accept_offer(user=backup, conversation_id=conv.id)
    conv.refresh_from_db()
    assert conv.assignee == backup and not QueueEntry.objects.filter(conversation=conv).exists()
    outcomes = list(conv.routing_decisions.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["offered", "missed", "offered", "assigned"]


def test_queue_drains_in_order_as_capacity_frees(desk):
    AgentProfile.objects.exclude(user=desk.generalist).update(status="offline")
    AgentProfile.objects.filter(user=desk.generalist).update(max_concurrent=1)
    convs = [arrive(desk.inboxes["webchat"], source_id=f"v{i}", body=f"hi {i}") for i in range(4)]
    assert convs[0].assignee == desk.generalist
    assert [c.assignee for c in convs[1:]] == [None, None, None]
    for expected in convs[1:]:
        current = Conversation.objects.get(assignee=desk.generalist, status="open")
        do_change_status(actor=None, conversation=current, status="closed")
        do_drain_queue()
        expected.refresh_from_db()
        assert expected.assignee == desk.generalist


def test_an_agent_who_missed_the_heads_offer_serves_the_chat_behind_it(desk):
    """The head of the queue refuses Gina (she let its offer expire); when she is back, the drain must not
    stop at the head: the next chat in the same inbox gets her."""
    AgentProfile.objects.exclude(user=desk.generalist).update(status="offline")
    AgentProfile.objects.filter(user=desk.generalist).update(max_concurrent=1)
    busy = arrive(desk.inboxes["webchat"], source_id="v0", body="first")
    head, behind = (arrive(desk.inboxes["webchat"], source_id=f"v{i}", body=f"hi {i}") for i in (1, 2))
    assert busy.assignee == desk.generalist and head.assignee is None and behind.assignee is None
    QueueEntry.objects.filter(conversation=head).update(excluded_agents=[agent(desk.generalist).pk])
    do_change_status(actor=None, conversation=busy, status="closed")
    assert do_drain_queue() == 1
    head.refresh_from_db()
    behind.refresh_from_db()
    assert head.assignee is None and behind.assignee == desk.generalist
    assert QueueEntry.objects.get(conversation=head).state == "waiting"


def test_a_chat_that_ends_while_waiting_leaves_the_queue(desk):
    from routing.actions import queue_position

    AgentProfile.objects.update(status="offline")
    first, second, third = (arrive(desk.inboxes["webchat"], source_id=f"q{i}", body=f"hi {i}") for i in range(3))
    assert queue_position(third)[0] == 3
    do_change_status(actor=None, conversation=first, status="closed")  # the visitor gave up
    do_change_status(actor=None, conversation=second, status="solved")
    assert not QueueEntry.objects.filter(conversation__in=[first, second]).exists()
    assert queue_position(third)[0] == 1


def test_an_agent_back_online_after_a_missed_offer_may_get_that_chat(desk):
    """One agent, who let the offer expire (and went away): back online, the chat is offered again."""
    from agents.actions import do_set_agent_status

    desk.support.auto_accept = False
    desk.support.save()
    AgentProfile.objects.exclude(user=desk.generalist).update(status="offline")
    conv = arrive(desk.inboxes["webchat"])
    QueueEntry.objects.filter(conversation=conv).update(offer_expires_at=timezone.now() - timedelta(seconds=1))
    assert do_expire_offers() == 1
    entry = QueueEntry.objects.get(conversation=conv)
    assert entry.state == "waiting" and entry.excluded_agents == [agent(desk.generalist).pk]
    do_set_agent_status(agent=agent(desk.generalist), status="online")
    assert QueueEntry.objects.get(conversation=conv).excluded_agents == []
    do_drain_queue()
    entry = QueueEntry.objects.get(conversation=conv)
    assert entry.state == "offered" and entry.offered_to.user == desk.generalist


def test_queue_position_follows_the_drains_order_sla_first(desk):
    from routing.actions import queue_position

    AgentProfile.objects.update(status="offline")
    first, second = (arrive(desk.inboxes["email"], source_id=f"s{i}", body=f"hi {i}") for i in range(2))
    # At risk (past its warning): ahead of one on track, whatever their arrival.
    Conversation.objects.filter(pk=second.pk).update(sla_due_at=timezone.now() + timedelta(minutes=5),
                                                     sla_warn_at=timezone.now() - timedelta(minutes=1))
    assert queue_position(second)[0] == 1 and queue_position(first)[0] == 2
    AgentProfile.objects.filter(user=desk.generalist).update(status="online", max_concurrent_async=1)
    do_drain_queue()
    second.refresh_from_db()
    assert second.assignee == desk.generalist  # the drain served the one it said was first


def test_vip_jumps_the_queue(desk):
    AgentProfile.objects.update(status="offline")
    Segment.objects.create(name="VIP", priority_level=5, rule={"match": "all", "conditions": [
        {"field": "attributes.vip", "op": "eq", "value": "yes"}]})
    normal = arrive(desk.inboxes["email"], source_id="n1")
    vip = do_receive_inbound_message(inbox=desk.inboxes["email"], source_id="v1", body="help").message.conversation
    do_update_contact(actor=None, contact=vip.contact, custom_attributes={"vip": "yes"})
    do_route_conversation(conversation_id=vip.id, from_queue=True)
    from routing.actions import queue_position

    assert queue_position(vip)[0] == 1 and queue_position(normal)[0] == 2
    AgentProfile.objects.filter(user=desk.generalist).update(status="online", max_concurrent_async=1)
    do_drain_queue()
    vip.refresh_from_db()
    normal.refresh_from_db()
    assert vip.assignee == desk.generalist and normal.assignee is None


def test_console_shows_why(desk, client):
    RoutingRule.objects.create(name="Everything to support", position=1, target="team", target_team=desk.support)
    conv = arrive(desk.inboxes["email"])
    client.force_login(desk.generalist)
    r = client.get(f"/console/c/{conv.id}/")
    assert b"Routed to Gina: Everything to support, team Support" in r.content


def test_rule_admin_validates_conditions_and_targets(desk, make_agent, client):
    boss = make_agent("boss", role="admin")
    client.force_login(boss)
    url = "/admin/routing/routingrule/add/"
    base = {"name": "R", "position": 1, "is_active": "on", "match": "all", "target": "team",
            "skill_min_level": 1, "set_tags": ""}
    r = client.post(url, {**base, "conditions": '[{"field": "colour", "op": "eq", "value": 1}]',
                          "target_team": desk.support.pk})
    assert r.status_code == 200 and b"Unknown field" in r.content
    r = client.post(url, {**base, "conditions": "[]"})
    assert r.status_code == 200 and b"Choose the team" in r.content
    r = client.post(url, {**base, "conditions": '[{"field": "prechat.department", "op": "eq", "value": "Sales"}]',
                          "target_team": desk.support.pk})
    assert r.status_code == 302 and RoutingRule.objects.get().conditions[0]["value"] == "Sales"


def test_never_decided_conversations_are_picked_up_by_the_drain(desk):
    from datetime import timedelta as td

    from django.utils import timezone as tz

    conv = do_receive_inbound_message(inbox=desk.inboxes["email"], source_id="lost", body="hello").message.conversation
    Conversation.objects.filter(pk=conv.pk).update(created_at=tz.now() - td(minutes=5))  # its task was lost
    do_drain_queue()
    conv.refresh_from_db()
    assert conv.assignee is not None and decision(conv).outcome == "assigned"


def test_a_decision_that_fails_is_logged_and_the_drain_goes_on_with_the_others(desk, monkeypatch, caplog):
    from datetime import timedelta as td

    from django.utils import timezone as tz

    from routing.actions import decision as actions

    convs = [do_receive_inbound_message(inbox=desk.inboxes["email"], source_id=f"lost-{n}", body="hello")
             .message.conversation for n in range(2)]
    Conversation.objects.filter(pk__in=[c.pk for c in convs]).update(created_at=tz.now() - td(minutes=5))
    real = actions._route

    def broken_for_the_first(conversation_id, **kwargs):
        if conversation_id == convs[0].pk:
            raise RuntimeError("a bug in one decision")
        return real(conversation_id, **kwargs)

    monkeypatch.setattr(actions, "_route", broken_for_the_first)
    do_drain_queue()
    for conv in convs:
        conv.refresh_from_db()
    assert convs[0].assignee is None and not convs[0].routing_decisions.exists()  # rolled back, tried again later
    assert convs[1].assignee is not None and decision(convs[1]).outcome == "assigned"
    assert f"routing conversation {convs[0].pk} failed" in caplog.text
    monkeypatch.setattr(actions, "_route", real)
    do_drain_queue()  # the next sweep
    convs[0].refresh_from_db()
    assert convs[0].assignee is not None


def test_rule_changes_apply_to_the_next_decision_however_they_are_written(desk):
    """Rules, teams and settings are cached per process: any write (save, queryset update, a deleted target)
    must reach the very next decision."""
    rule = RoutingRule.objects.create(name="Billing first", position=1, target="team", target_team=desk.billing)
    assert arrive(desk.inboxes["email"], source_id="r1").assignee == desk.billing_agent
    RoutingRule.objects.filter(pk=rule.pk).update(target_team=desk.tier2)  # no signals, no save()
    assert arrive(desk.inboxes["email"], source_id="r2").assignee == desk.senior
    Team.objects.filter(pk=desk.tier2.pk).update(name="Second line")
    assert "team Second line" in decision(arrive(desk.inboxes["email"], source_id="r3")).summary
    desk.tier2.delete()  # the rule's target becomes NULL (ON DELETE SET NULL, done by an UPDATE)
    d = decision(arrive(desk.inboxes["email"], source_id="r4"))
    assert "default" in d.summary and d.details["targets"][0]["target"] == "team (deleted)"
    RoutingRule.objects.filter(pk=rule.pk).update(is_active=False)
    assert decision(arrive(desk.inboxes["email"], source_id="r5")).details["rules"] == []


def test_claimed_agent_is_read_with_its_user_as_the_orm_reads_them(desk):
    """The claim reads the chosen agent and user rows in its own statement: same values as select_related."""
    from django.db import transaction

    from routing.actions.decision import Candidate, _claim

    profile = agent(desk.generalist)
    profile.languages = ["en", "es"]
    profile.status = AgentProfile.Status.ONLINE
    profile.save()
    candidate = Candidate(agent_id=profile.pk, name="", is_active=True, status="online", sees_inbox=True, load=0,
                          limit=3, skill_level=0, last_assigned_at=None)
    with transaction.atomic():
        assert _claim(candidate, chat=True) is None
        expected = AgentProfile.objects.select_related("user").get(pk=profile.pk)
    claimed = candidate.profile
    assert claimed is not None
    for field in AgentProfile._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(expected, field.attname), field.name
    for field in type(expected.user)._meta.concrete_fields:
        assert getattr(claimed.user, field.attname) == getattr(expected.user, field.attname), field.name
    assert claimed.languages == ["en", "es"]
    assert claimed.user.agent is claimed
    assert claimed.name == expected.name
