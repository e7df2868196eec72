"""Routing edge cases found by an independent review: queue fairness with rules, conversations left without
an agent, reopened solved conversations, and rules that the admin would refuse."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from agents.models import AgentProfile
from conversations.actions import do_assign_conversation, do_change_status, do_receive_inbound_message
from conversations.models import Conversation, Segment
from routing.actions import do_drain_queue, do_expire_offers, do_recheck_reopened, do_route_conversation
from routing.models import QueueEntry, RoutingConfig, RoutingDecision, RoutingRule
from tests.routing.test_actions import agent, arrive, decision

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_background_tasks(no_background_tasks):
    yield


def chat_limit(user, limit: int) -> None:
    AgentProfile.objects.filter(user=user).update(max_concurrent=limit)


def only_gina(desk) -> None:
    for user in (desk.billing_agent, desk.senior):
        AgentProfile.objects.filter(user=user).update(status="offline")
    chat_limit(desk.generalist, 1)


def test_a_rule_sets_its_priority_even_when_others_wait_and_the_queue_serves_it_first(desk):
    only_gina(desk)
    RoutingRule.objects.create(name="Outage", position=1, target="team", target_team=desk.support, set_priority=3,
                               set_tags="outage", conditions=[{"field": "text", "op": "any_of", "value": ["down"]}])
    busy = arrive(desk.inboxes["webchat"], source_id="busy")
    assert busy.assignee == desk.generalist
    waiting = arrive(desk.inboxes["webchat"], source_id="a", body="Where is my parcel?")
    urgent = arrive(desk.inboxes["webchat"], source_id="b", body="Your site is down!")
    assert waiting.assignee is None and urgent.assignee is None
    assert urgent.priority == 3 and list(urgent.tags.values_list("name", flat=True)) == ["outage"]
    rules = decision(urgent).details["rules"]
    assert rules and rules[0]["matched"] is True  # the rules were evaluated, and stored
    assert QueueEntry.objects.get(conversation=urgent).priority > QueueEntry.objects.get(conversation=waiting).priority
    do_change_status(actor=None, conversation=busy, status="closed")
    do_drain_queue()
    urgent.refresh_from_db()
    waiting.refresh_from_db()
    assert urgent.assignee == desk.generalist and waiting.assignee is None


def test_a_rule_whose_own_target_is_free_serves_at_once_even_when_others_wait(desk, make_agent, django_user_model):
    only_gina(desk)
    manager = make_agent("mona", role="supervisor")  # in no team
    key = Segment.objects.create(name="Key", priority_level=1, account_manager=manager)
    RoutingRule.objects.create(name="Key accounts", position=1, target="account_manager",
                               conditions=[{"field": "segment", "op": "eq", "value": "Key"}])
    arrive(desk.inboxes["webchat"], source_id="busy")
    waiting = arrive(desk.inboxes["webchat"], source_id="a")
    assert waiting.assignee is None
    first = do_receive_inbound_message(inbox=desk.inboxes["webchat"], source_id="key", body="hello").message
    first.conversation.contact.segments.add(key)
    do_route_conversation(conversation_id=first.conversation_id)
    conv = Conversation.objects.get(pk=first.conversation_id)
    assert conv.assignee == manager and "Key accounts, the account manager" in decision(conv).summary


def test_a_conversation_whose_agent_was_deleted_is_routed_again_by_the_drain(desk):
    conv = arrive(desk.inboxes["email"], source_id="orphan")
    gone = conv.assignee
    assert gone is not None
    gone.delete()  # the conversation's assignee is set to NULL by the database
    Conversation.objects.filter(pk=conv.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    do_drain_queue()
    conv.refresh_from_db()
    assert conv.assignee is not None and conv.assignee_id != gone.pk
    assert [d.outcome for d in conv.routing_decisions.order_by("id")] == ["assigned", "assigned"]


def test_a_ticket_left_for_follow_up_is_not_routed_again_by_the_drain(desk):
    RoutingConfig.objects.update_or_create(pk=1, defaults={"overflow": RoutingConfig.Overflow.TICKET})
    AgentProfile.objects.update(status="offline")
    conv = arrive(desk.inboxes["email"], source_id="ticket")
    assert decision(conv).outcome == "ticket"
    AgentProfile.objects.update(status="online")
    Conversation.objects.filter(pk=conv.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    do_drain_queue()
    conv.refresh_from_db()
    assert conv.assignee is None and conv.routing_decisions.count() == 1


def test_a_transfer_to_a_team_is_routed_inside_that_team(desk):
    conv = arrive(desk.inboxes["email"], source_id="transfer")
    assert conv.assignee == desk.generalist
    with mock.patch("routing.tasks.route_conversation.delay_on_commit") as route:
        do_assign_conversation(actor=desk.generalist, conversation=conv, team=desk.billing,
                               note="Refund question, over to Billing")
    route.assert_called_once_with(conv.pk)  # routed again once the transfer commits
    do_route_conversation(conversation_id=conv.pk)
    conv.refresh_from_db()
    assert conv.assignee == desk.billing_agent and conv.team == desk.billing
    assert "transferred to team Billing" in decision(conv).summary


def test_a_picked_or_profile_language_with_a_region_matches_its_base_language(desk, make_agent):
    spanish = make_agent("sofia", teams=[desk.tier2])
    RoutingRule.objects.create(name="Spanish", position=1, target="agent",
                               target_agent=AgentProfile.objects.get(user=spanish),
                               conditions=[{"field": "language", "op": "eq", "value": "es"}])
    conv = arrive(desk.inboxes["webchat"], source_id="mx", body="Hello there, I need help",
                  meta={"prechat": {"language": "es-MX"}})
    assert conv.assignee == spanish, decision(conv).details["rules"]


def test_rules_written_outside_the_admin_never_stop_a_decision(desk):
    RoutingRule.objects.create(name="Bad field", position=1, target="team", target_team=desk.billing,
                               conditions=[{"field": 5, "op": "eq", "value": 1}, {"field": "channel", "op": ["eq"]}])
    RoutingRule.objects.create(name="Bad settings", position=2, target="team", target_team=desk.tier2,
                               set_priority=9, set_tags=",".join(f"t{n}" for n in range(40)), conditions=[])
    conv = arrive(desk.inboxes["email"], source_id="bad")
    assert conv.assignee == desk.senior and conv.priority == Conversation.Priority.NORMAL
    assert decision(conv).details["rules"][0]["conditions"][0].startswith("ignored malformed condition")


def test_the_rule_admin_refuses_a_field_or_op_that_is_not_text(desk, make_agent, client):
    client.force_login(make_agent("root", role="admin"))
    url = "/admin/routing/routingrule/add/"
    base = {"name": "R", "position": 1, "match": "all", "is_active": "on", "target": "team",
            "target_team": desk.support.pk, "secondary_target": "", "skill_min_level": 1}
    for conditions in ('[{"field": "country", "op": ["eq"]}]', '[{"field": {"a": 1}, "op": "eq"}]'):
        r = client.post(url, {**base, "conditions": conditions})
        assert r.status_code == 200 and b"field and op are text" in r.content


def test_a_chat_back_in_the_queue_after_a_missed_offer_stores_that_decision(desk):
    conv, _entry = offered_chat(desk)
    assert decision(conv).outcome == "offered"
    QueueEntry.objects.filter(conversation=conv).update(offer_expires_at=timezone.now() - timedelta(seconds=1))
    do_expire_offers()
    outcomes = [d.outcome for d in conv.routing_decisions.order_by("id")]
    assert outcomes[:2] == ["offered", "missed"] and outcomes[-1] == "queued", outcomes
    do_drain_queue()  # still nobody: nothing more is stored
    assert conv.routing_decisions.count() == len(outcomes)


class TestReopenedSolvedConversation:
    def solved(self, desk, *, ago: timedelta = timedelta(minutes=5)):
        conv = arrive(desk.inboxes["email"], source_id="again")
        do_change_status(actor=None, conversation=conv, status="solved")
        Conversation.objects.filter(pk=conv.pk).update(solved_at=timezone.now() - ago)
        conv.refresh_from_db()
        return conv

    def reopen(self, conv):
        with mock.patch("routing.tasks.recheck_reopened.delay_on_commit") as recheck:
            do_receive_inbound_message(inbox=conv.inbox, source_id="again", body="It broke again")
        (conversation_id, solved_at), _ = recheck.call_args
        return do_recheck_reopened(conversation_id=conversation_id, solved_at=solved_at and
                                   __import__("datetime").datetime.fromisoformat(solved_at))

    def test_stays_with_its_agent_when_available(self, desk):
        conv = self.solved(desk)
        assert self.reopen(conv) == "kept"
        conv.refresh_from_db()
        assert conv.status == "open" and conv.assignee == desk.generalist

    def test_is_routed_again_when_its_agent_is_offline(self, desk):
        conv = self.solved(desk)
        AgentProfile.objects.filter(user=desk.generalist).update(status="offline")
        with mock.patch("routing.tasks.route_conversation.delay_on_commit") as route:
            assert self.reopen(conv) == "rerouted"
        route.assert_called_once_with(conv.pk)
        conv.refresh_from_db()
        assert conv.assignee is None
        do_route_conversation(conversation_id=conv.pk)
        conv.refresh_from_db()
        assert conv.assignee in (desk.billing_agent, desk.senior)

    def test_is_routed_again_when_solved_before_the_reopen_window(self, desk):
        conv = self.solved(desk, ago=timedelta(days=60))
        assert self.reopen(conv) == "rerouted"

    def test_is_routed_again_when_its_agent_is_at_capacity(self, desk):
        conv = self.solved(desk)
        AgentProfile.objects.filter(user=desk.generalist).update(max_concurrent_async=1)
        other = arrive(desk.inboxes["email"], source_id="other")
        assert other.assignee != desk.generalist  # gina is full with another email
        Conversation.objects.filter(pk=other.pk).update(assignee=desk.generalist)
        assert self.reopen(conv) == "rerouted"


def test_the_decision_log_has_one_row_per_real_decision(desk):
    conv = arrive(desk.inboxes["email"], source_id="one")
    assert RoutingDecision.objects.filter(conversation=conv).count() == 1


def test_returning_first_sends_a_customer_back_to_their_agent_before_the_rules(desk):
    RoutingRule.objects.create(name="All mail to Billing", position=1, target="team", target_team=desk.billing,
                               conditions=[{"field": "channel", "op": "eq", "value": "email"}])
    first = arrive(desk.inboxes["email"], source_id="loyal")
    assert first.assignee == desk.billing_agent
    Conversation.objects.filter(pk=first.pk).update(assignee=desk.senior)  # Sam served them
    do_change_status(actor=None, conversation=first, status="closed")
    # Off (the default): the rules first.
    assert arrive(desk.inboxes["email"], source_id="loyal", body="again").assignee == desk.billing_agent
    RoutingConfig.objects.update_or_create(pk=1, defaults={"returning_first": True})
    Conversation.objects.filter(contact=first.contact).exclude(pk=first.pk).update(status="closed",
                                                                                  assignee=desk.senior)
    back = arrive(desk.inboxes["email"], source_id="loyal", body="and again")
    assert back.assignee == desk.senior and "returning customer, same agent" in decision(back).summary


def test_taking_a_chat_by_hand_counts_the_load_as_routing_counts_it(desk):
    from omnichannel.errors import ActionError

    only_gina(desk)
    mine = arrive(desk.inboxes["webchat"], source_id="mine")
    assert mine.assignee == desk.generalist
    other = do_receive_inbound_message(inbox=desk.inboxes["webchat"], source_id="other", body="hi").message.conversation
    with pytest.raises(ActionError, match="already has 1 live chats"):
        do_assign_conversation(actor=desk.generalist, conversation=other, assignee=desk.generalist)
    do_change_status(actor=None, conversation=mine, status="pending")  # waiting for the visitor: not counted
    do_assign_conversation(actor=desk.generalist, conversation=other, assignee=desk.generalist)
    other.refresh_from_db()
    assert other.assignee == desk.generalist


def test_an_agent_who_lets_a_conversation_go_does_not_get_it_back(desk):
    AgentProfile.objects.filter(user=desk.senior).update(status="offline")
    conv = arrive(desk.inboxes["email"], source_id="letgo")
    owner = conv.assignee
    with mock.patch("routing.tasks.route_conversation.delay_on_commit") as route:
        do_assign_conversation(actor=owner, conversation=conv, assignee=None)
    route.assert_called_once_with(conv.pk)
    do_route_conversation(conversation_id=conv.pk)
    conv.refresh_from_db()
    other = desk.billing_agent if owner == desk.generalist else desk.generalist
    assert conv.assignee == other
    skipped = {c["agent_id"]: c["skipped"] for t in decision(conv).details["targets"] for c in t["candidates"]}
    assert skipped.get(agent(owner).pk) == "missed or let go of this conversation"
    assert not QueueEntry.objects.filter(conversation=conv).exists()


def test_a_conversation_let_go_waits_when_nobody_else_is_there(desk):
    for user in (desk.billing_agent, desk.senior):
        AgentProfile.objects.filter(user=user).update(status="offline")
    conv = arrive(desk.inboxes["email"], source_id="alone")
    assert conv.assignee == desk.generalist
    do_assign_conversation(actor=desk.generalist, conversation=conv, assignee=None)
    do_route_conversation(conversation_id=conv.pk)
    conv.refresh_from_db()
    assert conv.assignee is None and decision(conv).outcome == "queued"
    AgentProfile.objects.filter(user=desk.billing_agent).update(status="online")
    do_drain_queue()
    conv.refresh_from_db()
    assert conv.assignee == desk.billing_agent


def test_odd_meta_and_attributes_from_api_clients_never_stop_a_decision(desk):
    from conversations.actions import do_update_contact

    conv = arrive(desk.inboxes["api"], source_id="odd", meta={"prechat": "x", "visitor": {"page_url": 5, "region": 7}})
    assert conv.assignee is not None
    do_update_contact(actor=None, contact=conv.contact, custom_attributes={"country": 44, "state": {"a": 1}})
    again = arrive(desk.inboxes["email"], source_id="odd2", meta={"prechat": ["a"]})
    again.contact.custom_attributes = {"country": ["FR"], "zip": 75001}
    again.contact.save()
    Conversation.objects.filter(pk=again.pk).update(assignee=None)
    do_route_conversation(conversation_id=again.pk)
    again.refresh_from_db()
    assert again.assignee is not None


def test_a_very_high_vip_level_still_queues(desk):
    AgentProfile.objects.update(status="offline")
    conv = do_receive_inbound_message(inbox=desk.inboxes["email"], source_id="whale", body="hi").message.conversation
    conv.contact.segments.add(Segment.objects.create(name="Whales", priority_level=32767))
    assert do_route_conversation(conversation_id=conv.pk).outcome == "queued"
    assert QueueEntry.objects.get(conversation=conv).priority == 32767


def offered_chat(desk):
    desk.support.auto_accept = False
    desk.support.save()
    for user in (desk.billing_agent, desk.senior):
        AgentProfile.objects.filter(user=user).update(status="offline")
    conv = arrive(desk.inboxes["webchat"], source_id="offer")
    entry = QueueEntry.objects.get(conversation=conv)
    assert entry.state == "offered" and entry.offered_to.user == desk.generalist
    return conv, entry


def test_an_agent_who_went_offline_during_an_offer_stays_offline_when_it_expires(desk):
    from agents.actions import do_set_agent_status

    conv, entry = offered_chat(desk)
    do_set_agent_status(agent=agent(desk.generalist), status="offline")
    QueueEntry.objects.filter(pk=entry.pk).update(offer_expires_at=timezone.now() - timedelta(seconds=1))
    do_expire_offers()
    gina = agent(desk.generalist)
    assert gina.status == "offline" and gina.missed_offers == 1


def test_an_expired_offer_cannot_be_accepted_even_before_the_sweep(desk):
    from omnichannel.errors import ActionError
    from routing.actions import do_accept_offer

    conv, entry = offered_chat(desk)
    QueueEntry.objects.filter(pk=entry.pk).update(offer_expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ActionError, match="expired"):
        do_accept_offer(user=desk.generalist, conversation_id=conv.pk)


def test_merging_a_waiting_or_offered_chat_takes_it_out_of_the_queue(desk):
    from conversations.actions import do_merge_conversations

    conv, entry = offered_chat(desk)
    target = Conversation.objects.create(inbox=desk.inboxes["email"], contact=conv.contact)
    do_merge_conversations(actor=None, source=conv, target=target)
    assert not QueueEntry.objects.filter(conversation=conv).exists()


def test_transferring_an_offered_chat_to_another_team_withdraws_the_offer(desk, make_agent):
    conv, entry = offered_chat(desk)
    AgentProfile.objects.filter(user=desk.billing_agent).update(status="online")
    desk.billing.auto_accept = True
    desk.billing.save()
    boss = make_agent("boss", role="supervisor")
    with mock.patch("routing.tasks.route_conversation.delay_on_commit") as route:
        do_assign_conversation(actor=boss, conversation=conv, team=desk.billing)
    route.assert_called_once_with(conv.pk)
    entry.refresh_from_db()
    assert entry.state == "waiting" and entry.offered_to is None
    do_route_conversation(conversation_id=conv.pk)
    conv.refresh_from_db()
    assert conv.assignee == desk.billing_agent and conv.team == desk.billing


def test_a_message_for_a_merged_conversation_goes_to_the_one_it_was_merged_into(desk):
    from conversations.actions import do_merge_conversations

    conv = arrive(desk.inboxes["api"], source_id="merge-me")
    target = Conversation.objects.create(inbox=desk.inboxes["api"], contact=conv.contact)
    do_merge_conversations(actor=None, source=conv, target=target)
    message = do_receive_inbound_message(inbox=desk.inboxes["api"], source_id="merge-me", body="still there?",
                                         conversation=conv).message
    assert message.conversation_id == target.pk


def test_the_visitor_gets_an_estimate_only_when_someone_can_serve_the_queue(desk):
    from routing.actions import queue_position

    only_gina(desk)
    arrive(desk.inboxes["webchat"], source_id="busy")
    waiting = arrive(desk.inboxes["webchat"], source_id="w")
    position, wait = queue_position(waiting)
    assert position == 1 and wait > 0
    AgentProfile.objects.update(status="offline")
    assert queue_position(waiting) == (1, None)


def test_a_waiting_conversation_moves_up_when_its_priority_or_vip_level_rises(desk):
    from conversations.actions import do_change_priority, do_set_contact_segments
    from routing.actions import queue_position

    only_gina(desk)
    busy = arrive(desk.inboxes["webchat"], source_id="busy")
    a, b, c = (arrive(desk.inboxes["webchat"], source_id=s) for s in "abc")
    assert [queue_position(x)[0] for x in (a, b, c)] == [1, 2, 3]
    do_change_priority(actor=None, conversation=c, priority=3)
    assert [queue_position(x)[0] for x in (a, b, c)] == [2, 3, 1]
    gold = Segment.objects.create(name="Gold", priority_level=2)
    do_set_contact_segments(actor=None, contact=b.contact, segment_ids=[gold.pk])
    assert [queue_position(x)[0] for x in (a, b, c)] == [3, 1, 2]
    do_change_status(actor=None, conversation=busy, status="closed")
    do_drain_queue()
    b.refresh_from_db()
    assert b.assignee == desk.generalist


def test_the_drain_serves_a_rule_target_outside_the_inbox_teams_behind_a_head_nobody_can_take(desk, make_agent):
    from agents.actions import do_set_agent_status

    sue = make_agent("sue", role="supervisor", status="offline")  # in no team
    RoutingRule.objects.create(name="Refunds to Sue", position=1, target="agent",
                               target_agent=AgentProfile.objects.get(user=sue),
                               conditions=[{"field": "text", "op": "contains", "value": "refund"}])
    AgentProfile.objects.exclude(user=sue).update(status="offline")
    parcel = arrive(desk.inboxes["email"], source_id="p", body="Where is my parcel?")
    refund = arrive(desk.inboxes["email"], source_id="r", body="I want a refund")
    assert parcel.assignee is None and refund.assignee is None
    do_set_agent_status(agent=AgentProfile.objects.get(user=sue), status="online")
    assert do_drain_queue() == 1
    parcel.refresh_from_db()
    refund.refresh_from_db()
    assert refund.assignee == sue and parcel.assignee is None
    assert "Refunds to Sue" in decision(refund).summary


def test_missed_and_accepted_offers_feed_the_routing_report(desk, make_agent, client):
    from reporting.selectors import routing_outcomes
    from routing.actions import do_accept_offer

    conv, entry = offered_chat(desk)  # offered to Gina, who lets it expire
    AgentProfile.objects.filter(user=desk.billing_agent).update(status="online")
    desk.billing.auto_accept = False
    desk.billing.save()
    QueueEntry.objects.filter(pk=entry.pk).update(offer_expires_at=timezone.now() - timedelta(seconds=1))
    do_expire_offers()  # then offered to Bill, who accepts
    do_accept_offer(user=desk.billing_agent, conversation_id=conv.pk)
    arrive(desk.inboxes["email"], source_id="mail")  # an email routed to Bill at once
    rows = {r["agent"]: r for r in routing_outcomes()}
    assert rows["Gina"] == {"agent": "Gina", "assigned": 0, "offered": 1, "accepted": 0, "missed": 1,
                            "missed_rate": 100.0}
    assert rows["Bill"]["offered"] == 1 and rows["Bill"]["accepted"] == 1 and rows["Bill"]["missed"] == 0
    assert rows["Bill"]["assigned"] + rows.get("Sam", {"assigned": 0})["assigned"] >= 1
    client.force_login(desk.generalist)
    assert client.get("/reports/routing/").status_code == 404  # agents don't read reports
    client.force_login(make_agent("boss", role="supervisor"))
    r = client.get("/reports/routing/?since=2000-01-01&until=bad")
    assert r.status_code == 200 and b"<td>Gina</td>" in r.content and b"100.0 %" in r.content


def test_a_transfer_to_a_team_with_nobody_there_waits_for_that_team(desk, make_agent):
    from agents.actions import do_set_agent_status
    from routing.actions import queue_position

    otto = make_agent("otto", teams=[desk.support])
    for user in (desk.billing_agent, desk.senior):
        AgentProfile.objects.filter(user=user).update(status="offline")
    conv = arrive(desk.inboxes["email"], source_id="t")
    owner = conv.assignee
    do_assign_conversation(actor=make_agent("boss", role="supervisor"), conversation=conv, team=desk.billing)
    do_route_conversation(conversation_id=conv.pk)
    conv.refresh_from_db()
    assert conv.assignee is None and conv.team == desk.billing
    assert "transferred to team Billing" in decision(conv).summary
    assert queue_position(conv) == (1, None)  # nobody in Billing online: no estimate
    for user in (owner, otto, desk.generalist):  # Support agents cycling their status change nothing
        do_set_agent_status(agent=agent(user), status="offline")
        do_set_agent_status(agent=agent(user), status="online")
    do_drain_queue()
    conv.refresh_from_db()
    assert conv.assignee is None
    do_set_agent_status(agent=agent(desk.billing_agent), status="online")
    do_drain_queue()
    conv.refresh_from_db()
    assert conv.assignee == desk.billing_agent


def test_a_reopened_conversation_rerouted_for_capacity_goes_back_to_its_agent_once_there_is_room(desk):
    only_gina(desk)
    AgentProfile.objects.filter(user=desk.generalist).update(max_concurrent_async=1)
    a = arrive(desk.inboxes["email"], source_id="a")
    do_change_status(actor=None, conversation=a, status="solved")
    b = arrive(desk.inboxes["email"], source_id="b")
    assert a.assignee == b.assignee == desk.generalist
    do_receive_inbound_message(inbox=desk.inboxes["email"], source_id="a", body="again")
    assert do_recheck_reopened(conversation_id=a.pk) == "rerouted"
    do_route_conversation(conversation_id=a.pk)
    a.refresh_from_db()
    assert a.assignee is None
    do_change_status(actor=None, conversation=b, status="solved")
    do_drain_queue()
    a.refresh_from_db()
    assert a.assignee == desk.generalist


def test_a_rerouted_vip_keeps_its_place_in_the_queue_at_once(desk):
    conv = arrive(desk.inboxes["email"], source_id="vip")
    conv.contact.segments.add(Segment.objects.create(name="Gold", priority_level=3))
    do_assign_conversation(actor=conv.assignee, conversation=conv, assignee=None)
    assert QueueEntry.objects.get(conversation=conv).priority == 31


def test_junk_in_an_entrys_excluded_agents_never_stops_the_offer_sweep(desk):
    conv, entry = offered_chat(desk)
    QueueEntry.objects.filter(pk=entry.pk).update(excluded_agents=["gina", None, 3.5, True],
                                                  offer_expires_at=None)
    assert do_expire_offers() == 1
    entry.refresh_from_db()
    assert entry.excluded_agents == [agent(desk.generalist).pk]


def test_assigning_an_offered_chat_to_someone_else_tells_the_agent_and_drains(desk, make_agent):
    conv, entry = offered_chat(desk)
    AgentProfile.objects.filter(user=desk.billing_agent).update(status="online")
    with mock.patch("conversations.actions.assignment.publish") as publish, \
            mock.patch("routing.tasks.drain_queue.delay_on_commit") as drain:
        do_assign_conversation(actor=make_agent("boss", role="supervisor"), conversation=conv,
                               assignee=desk.billing_agent)
    frames = [c.args[0] for c in publish.call_args_list if c.args[0].get("type") == "offer"]
    assert frames == [{"type": "offer", "op": "withdrawn", "conversation_id": conv.pk,
                       "agent_id": desk.generalist.pk, "inbox_id": conv.inbox_id}]
    assert drain.called


def test_reopening_to_open_with_nobody_on_it_routes_at_once(desk):
    conv = arrive(desk.inboxes["email"], source_id="re")
    do_change_status(actor=None, conversation=conv, status="pending")
    Conversation.objects.filter(pk=conv.pk).update(assignee=None)
    conv.refresh_from_db()
    with mock.patch("routing.tasks.route_conversation.delay_on_commit") as route:
        do_change_status(actor=None, conversation=conv, status="open")
    route.assert_called_once_with(conv.pk)


def test_the_routing_report_ignores_impossible_dates(desk, make_agent, client):
    client.force_login(make_agent("boss", role="supervisor"))
    for query in ("since=2024-02-30", "until=2024-13-01", "since=x"):
        assert client.get(f"/reports/routing/?{query}").status_code == 200
        assert client.get(f"/reports/sla/?{query}").status_code == 200


def test_a_note_with_a_transfer_that_changes_nothing_is_kept(desk):
    conv = arrive(desk.inboxes["email"], source_id="note")
    do_assign_conversation(actor=conv.assignee, conversation=conv, assignee=conv.assignee, note="Keep this")
    assert conv.messages.filter(kind="note", body="Keep this").count() == 1


def test_the_assignees_dropdown_counts_the_load_as_routing_does(desk, make_agent, client):
    conv, entry = offered_chat(desk)  # one chat offered to Gina (limit 3)
    other = do_receive_inbound_message(inbox=desk.inboxes["webchat"], source_id="o", body="hi").message.conversation
    client.force_login(make_agent("boss", role="supervisor"))
    r = client.get(f"/console/c/{other.pk}/assignees/")
    assert r.status_code == 200 and "Gina (Online, 1/3 chats" in r.content.decode()


@pytest.mark.parametrize("value", ["²", "١", "99999999999999999999", "-1"])
def test_the_assign_form_refuses_ids_that_are_not_plain_numbers(desk, make_agent, client, value):
    conv = arrive(desk.inboxes["email"], source_id="ids")
    client.force_login(make_agent("boss", role="supervisor"))
    for field in ("assignee", "team"):
        r = client.post(f"/console/c/{conv.pk}/assign/", {field: value}, HTTP_ACCEPT="application/json")
        assert r.status_code == 400, (field, value, r.status_code)


def test_admin_changelists_refuse_regex_filters_from_the_url(make_agent, client):
    client.force_login(make_agent("root", role="admin"))
    r = client.get("/admin/routing/routingdecision/?summary__regex=(")
    assert r.status_code == 400


def test_the_rule_admin_refuses_conditions_that_are_not_a_list_and_a_bare_prechat(desk, make_agent, client):
    client.force_login(make_agent("root", role="admin"))
    base = {"name": "R", "position": 1, "match": "all", "is_active": "on", "target": "team",
            "target_team": desk.support.pk, "secondary_target": "", "skill_min_level": 1}
    for conditions in ("{}", '[{"field": "prechat.", "op": "eq", "value": "x"}]'):
        r = client.post("/admin/routing/routingrule/add/", {**base, "conditions": conditions})
        assert r.status_code == 200 and not RoutingRule.objects.exists(), conditions
