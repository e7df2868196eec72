"""Actions: rows written, timeline recorded, events published after commit on the right streams."""

from __future__ import annotations

import pytest

from conversations import actions
from conversations.models import Contact, Conversation, ConversationEvent, Message, Segment
from omnichannel.models import RealtimeEvent

pytestmark = pytest.mark.django_db


def test_inbound_creates_contact_conversation_and_publishes(world, published):
    with published() as frames:
        result = actions.do_receive_inbound_message(inbox=world.inbox_a, source_id="ann@example.com",
                                                    body="My order is late", contact_name="Ann Lee",
                                                    provider_message_id="<m1@mail>")
    assert result.created and result.new_conversation
    conv = result.message.conversation
    assert conv.contact.name == "Ann Lee"
    assert conv.status == "open" and conv.waiting_since is not None and conv.last_customer_message_at
    assert conv.events.filter(kind=ConversationEvent.Kind.CREATED).exists()
    assert [(g, f["type"], f["seq"]) for g, f in frames] == [(f"inbox.{world.inbox_a.id}", "message", 1)]
    assert frames[0][1]["new_conversation"] is True
    assert RealtimeEvent.objects.filter(stream=f"inbox.{world.inbox_a.id}", seq=1).exists()


def test_retried_delivery_is_stored_once(world, inbound):
    first = inbound(provider_message_id="SM123")
    again = inbound(provider_message_id="SM123")
    assert first.created and not again.created
    assert again.message.pk == first.message.pk
    assert Message.objects.count() == 1


def test_same_provider_id_in_another_inbox_is_a_different_message(world, inbound):
    inbound(provider_message_id="X1")
    other = inbound(inbox=world.inbox_b, provider_message_id="X1")
    assert other.created


def test_customer_writing_again_continues_then_reopens(world, inbound):
    a = inbound(body="one").message.conversation
    b = inbound(body="two").message.conversation
    assert a.pk == b.pk
    actions.do_change_status(actor=world.alice, conversation=a, status="solved")
    c = inbound(body="three").message.conversation
    assert c.pk == a.pk
    c.refresh_from_db()
    assert c.status == "open" and c.solved_at is None
    actions.do_change_status(actor=world.alice, conversation=a, status="closed")
    d = inbound(body="four").message.conversation
    assert d.pk != a.pk


def test_empty_and_oversized_bodies_are_refused(world, inbound, settings):
    with pytest.raises(actions.ActionError, match="empty"):
        inbound(body="   ")
    with pytest.raises(actions.ActionError, match="longer than"):
        inbound(body="x" * (settings.MAX_MESSAGE_LENGTH + 1))
    assert Message.objects.count() == 0 and Conversation.objects.count() == 0


def test_agent_reply_sets_timestamps_assigns_and_enqueues_after_commit(world, inbound, published,
                                                                      django_capture_on_commit_callbacks):
    conv = inbound().message.conversation
    from unittest import mock

    with mock.patch("conversations.tasks.deliver_outbound_message.delay") as delay:
        with mock.patch("omnichannel.realtime._send"):
            with django_capture_on_commit_callbacks(execute=True):
                msg = actions.do_send_agent_reply(actor=world.alice, conversation=conv, body="On it!")
    delay.assert_called_once_with(msg.id)
    conv.refresh_from_db()
    assert msg.delivery_status == "queued" and msg.direction == "out"
    assert conv.assignee == world.alice
    # The customer is answered when the reply leaves, not when it is written.
    assert conv.first_agent_reply_at is None and conv.waiting_since is not None
    with mock.patch("omnichannel.realtime._send"):
        assert actions.do_update_delivery_status(message=msg, status="sent")
    conv.refresh_from_db()
    assert conv.first_agent_reply_at is not None and conv.waiting_since is None


def test_note_is_never_delivered(world, inbound, published):
    conv = inbound().message.conversation
    with published() as frames:
        note = actions.do_add_note(actor=world.alice, conversation=conv, body="internal only")
    assert note.kind == "note"
    from conversations.tasks import deliver_outbound_message

    assert deliver_outbound_message(note.id) == "skipped"
    assert frames[0][1]["kind"] == "note"


def test_agent_outside_the_team_cannot_write(world, inbound):
    conv = inbound().message.conversation
    with pytest.raises(actions.ActionError):
        actions.do_send_agent_reply(actor=world.charlie, conversation=conv, body="hi")
    with pytest.raises(actions.ActionError):
        actions.do_assign_conversation(actor=world.alice, conversation=conv, assignee=world.charlie)


def test_assign_status_priority_tags_record_timeline_and_publish(world, inbound, published):
    conv = inbound().message.conversation
    with published() as frames:
        actions.do_assign_conversation(actor=world.bob, conversation=conv, assignee=world.alice,
                                       team=world.support, note="VIP, be quick")
        actions.do_change_status(actor=world.alice, conversation=conv, status="pending")
        actions.do_change_priority(actor=world.alice, conversation=conv, priority=3)
        actions.do_set_tags(actor=world.alice, conversation=conv, names=["refund", " Refund ", "vip"])
    conv.refresh_from_db()
    assert (conv.assignee, conv.team, conv.status, conv.priority) == (world.alice, world.support, "pending", 3)
    assert sorted(conv.tags.values_list("name", flat=True)) == ["Refund", "refund", "vip"]
    kinds = list(conv.events.values_list("kind", flat=True))
    assert kinds[-4:] == ["assigned", "status_changed", "priority_changed", "tags_changed"]
    assert [f["op"] for _, f in frames] == ["assigned", "status", "priority", "tags"]
    seqs = [f["seq"] for _, f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert conv.messages.filter(kind="note", body="VIP, be quick").exists()


def test_agents_transfer_their_own_and_take_unassigned_supervisors_reassign_anything(world, inbound, make_agent):
    dana = make_agent("dana", teams=[world.support])
    conv = inbound().message.conversation
    actions.do_assign_conversation(actor=world.alice, conversation=conv, assignee=world.alice)  # takes it
    with pytest.raises(actions.ActionError, match="only a supervisor"):
        actions.do_assign_conversation(actor=dana, conversation=conv, assignee=dana)  # grabs Alice's
    with pytest.raises(actions.ActionError, match="only a supervisor"):
        actions.do_assign_conversation(actor=dana, conversation=conv, assignee=None)
    actions.do_assign_conversation(actor=world.alice, conversation=conv, assignee=dana, note="Over to you")
    actions.do_assign_conversation(actor=world.bob, conversation=conv, assignee=world.alice)  # supervisor
    conv.refresh_from_db()
    assert conv.assignee == world.alice
    actions.do_assign_conversation(actor=dana, conversation=conv, team=world.support)  # team only: allowed


def test_transfer_to_a_team_leaves_the_agent_unless_they_are_in_it(world, inbound, make_agent):
    from agents.models import Team

    billing = Team.objects.create(name="Billing")
    billing.inboxes.set([world.inbox_a])
    bea = make_agent("bea", teams=[billing])
    conv = inbound().message.conversation
    actions.do_assign_conversation(actor=world.alice, conversation=conv, assignee=world.alice)
    actions.do_assign_conversation(actor=world.alice, conversation=conv, team=billing, note="Refund question")
    conv.refresh_from_db()
    assert (conv.assignee, conv.team) == (None, billing)
    assert conv.messages.filter(kind="note", body="Refund question").exists()
    from conversations.selectors import InboxFilters, filter_conversations_for_agent

    assert conv in filter_conversations_for_agent(bea, InboxFilters.from_params({"view": "teams"}))
    # An agent who is in the team keeps it; a team that does not work the inbox is refused.
    actions.do_assign_conversation(actor=bea, conversation=conv, assignee=bea)
    actions.do_assign_conversation(actor=bea, conversation=conv, team=world.support)
    with pytest.raises(actions.ActionError, match="does not work"):
        actions.do_assign_conversation(actor=bea, conversation=conv, team=world.sales)
    conv.refresh_from_db()
    assert (conv.assignee, conv.team) == (None, world.support)  # bea is not in Support
    billing.members.add(world.alice.agent)
    actions.do_assign_conversation(actor=world.bob, conversation=conv, assignee=world.alice)
    actions.do_assign_conversation(actor=world.alice, conversation=conv, team=billing)
    conv.refresh_from_db()
    assert (conv.assignee, conv.team) == (world.alice, billing)


def test_a_team_change_hands_sla_the_match_check_read_with_the_assignment(world, inbound):
    """assign_locked reads the SLA hook's match check in the assignment's own round trip when the team changes,
    and passes it on (no statement of SLA's own); no team change, no re-match."""
    from unittest import mock

    conv = inbound().message.conversation
    with mock.patch("sla.actions.on_match_changed") as rematch:
        actions.do_assign_conversation(actor=world.bob, conversation=conv, assignee=world.alice)
        assert not rematch.called
        actions.do_assign_conversation(actor=world.bob, conversation=conv, team=world.support)
    rematch.assert_called_once_with(conv, policy_or_clock=False)  # no SLA policy active, no clock running
    conv.refresh_from_db()
    assert (conv.assignee, conv.team) == (world.alice, world.support)


def test_my_teams_view_holds_my_teams_conversations_and_teamless_ones_of_my_teams_inboxes(world, inbound):
    from conversations.selectors import InboxFilters, filter_conversations_for_agent

    teams = InboxFilters.from_params({"view": "teams"})
    teamless = inbound(source_id="a@example.com").message.conversation  # routed to the inbox's teams: no team
    sales_conv = inbound(inbox=world.inbox_b, source_id="b@example.com").message.conversation
    given = inbound(source_id="c@example.com").message.conversation
    world.sales.inboxes.add(world.inbox_a)
    actions.do_assign_conversation(actor=world.bob, conversation=given, team=world.sales)
    alice = set(filter_conversations_for_agent(world.alice, teams))
    charlie = set(filter_conversations_for_agent(world.charlie, teams))
    assert alice == {teamless}
    assert charlie == {sales_conv, given, teamless}  # Sales now works inbox_a too
    from django.test import Client

    page = Client()
    page.force_login(world.alice)
    html = page.get("/console/?view=teams&status=open").content.decode()
    assert f'data-id="{teamless.id}"' in html and f'data-id="{given.id}"' not in html


def test_invalid_status_and_priority(world, inbound):
    conv = inbound().message.conversation
    with pytest.raises(actions.ActionError):
        actions.do_change_status(actor=world.alice, conversation=conv, status="bogus")
    with pytest.raises(actions.ActionError):
        actions.do_change_priority(actor=world.alice, conversation=conv, priority=9)


def test_delivery_status_moves_forward_only(world, inbound):
    conv = inbound().message.conversation
    msg = Message.objects.create(conversation=conv, inbox=conv.inbox, direction="out", sender_type="agent",
                                 body="x", delivery_status="queued")
    assert actions.do_update_delivery_status(message=msg, status="delivered")
    assert not actions.do_update_delivery_status(message=msg, status="sent")  # late, out of order
    assert actions.do_update_delivery_status(message=msg, status="read")
    msg.refresh_from_db()
    assert msg.delivery_status == "read"
    assert actions.do_update_delivery_status(message=msg, status="failed", reason="bounced")
    assert not actions.do_update_delivery_status(message=msg, status="delivered")
    msg.refresh_from_db()
    assert (msg.delivery_status, msg.failure_reason) == ("failed", "bounced")


def test_merge_contacts_keeps_all_history(world, inbound):
    c1 = inbound(source_id="ann@example.com", contact_name="Ann").message.conversation
    c2 = inbound(inbox=world.inbox_api, source_id="shop-42", contact_name="").message.conversation
    vip = Segment.objects.create(name="VIP")
    actions.do_set_contact_segments(actor=None, contact=c2.contact, segment_ids=[vip.id])
    target = actions.do_merge_contacts(actor=world.alice, source=c2.contact, target=c1.contact)
    assert set(target.conversations.values_list("id", flat=True)) == {c1.id, c2.id}
    assert set(target.identities.values_list("value", flat=True)) == {"ann@example.com", "shop-42"}
    assert list(target.segments.all()) == [vip]
    assert Contact.objects.get(pk=c2.contact_id).merged_into == target
    # The merged identity now resolves to the surviving contact.
    again = inbound(inbox=world.inbox_api, source_id="shop-42", body="hi again").message
    assert again.conversation.contact_id == target.id


def test_merge_conversations_of_same_contact(world, inbound):
    a = inbound(source_id="ann@example.com").message.conversation
    b = inbound(inbox=world.inbox_api, source_id="shop-42").message.conversation
    with pytest.raises(actions.ActionError, match="same contact"):
        actions.do_merge_conversations(actor=world.alice, source=b, target=a)
    actions.do_merge_contacts(actor=world.alice, source=b.contact, target=a.contact)
    b.refresh_from_db()
    actions.do_merge_conversations(actor=world.alice, source=b, target=a)
    b.refresh_from_db()
    assert b.merged_into_id == a.id and b.status == "closed"
    assert a.messages.count() == 2
    with pytest.raises(actions.ActionError, match="merged"):
        actions.do_send_agent_reply(actor=world.alice, conversation=b, body="x")


def test_segment_membership_by_rule_and_by_hand(world, inbound):
    rule = {"match": "all", "conditions": [{"field": "attributes.spend_tier", "op": "gte", "value": 5}]}
    vip = Segment.objects.create(name="VIP-Spend 5", rule=rule)
    manual = Segment.objects.create(name="Upset")
    contact = inbound().message.conversation.contact
    assert not contact.segments.exists()
    actions.do_update_contact(actor=None, contact=contact, custom_attributes={"spend_tier": 6})
    assert list(contact.segments.all()) == [vip]
    actions.do_set_contact_segments(actor=None, contact=contact, segment_ids=[manual.id])
    assert set(contact.segments.all()) == {vip, manual}
    actions.do_update_contact(actor=None, contact=contact, custom_attributes={"spend_tier": 2})
    assert list(contact.segments.all()) == [manual]


def test_canned_placeholders(world, inbound):
    from conversations.canned import render_canned

    conv = inbound(contact_name="María José").message.conversation
    text = render_canned("Hi {{contact.first_name}}, I'm {{ agent.name }} on #{{conversation.id}} {{bogus.x}}",
                         contact=conv.contact, agent_user=world.alice, conversation=conv)
    assert text == f"Hi María, I'm Alice on #{conv.id} {{{{bogus.x}}}}"
