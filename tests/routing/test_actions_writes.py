"""What a routing decision writes under its lock (a rule's settings, the assignment, the web chat's system line)
is what the public actions write: same rows, timeline events and published events, SLA clocks re-applied."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import transaction

from agents.models import Team
from conversations import actions as conv_actions
from conversations.actions import do_receive_inbound_message
from conversations.models import ChannelKind, Conversation, Inbox, Message, Tag
from routing.actions import do_route_conversation
from routing.models import RoutingDecision, RoutingRule
from sla.models import SlaClock, SlaEvent, SlaPolicy

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_background_tasks(no_background_tasks):
    yield


@pytest.fixture
def desk(db, make_agent):
    d = type("Desk", (), {})()
    d.email = Inbox.objects.create(name="email", kind=ChannelKind.EMAIL)
    d.chat = Inbox.objects.create(name="chat", kind=ChannelKind.WEBCHAT)
    d.support = Team.objects.create(name="Support", auto_accept=True)
    d.support.inboxes.set([d.email, d.chat])
    d.vip = Team.objects.create(name="VIP desk", auto_accept=True)
    d.vip.inboxes.set([d.email, d.chat])
    d.concierge = make_agent("victor", teams=[d.vip])
    d.generalist = make_agent("gina", teams=[d.support])
    return d


def receive(inbox, source_id: str) -> Conversation:
    return do_receive_inbound_message(inbox=inbox, source_id=source_id, body="Hello, I need help with my order"
                                      ).message.conversation


def timeline(conversation: Conversation) -> list[tuple[str, dict]]:
    return [(e.kind, e.data) for e in conversation.events.order_by("id")]


def conversation_frames(frames, conversation: Conversation) -> list[dict]:
    drop = {"seq", "stream", "conversation_id"}
    return [{k: v for k, v in frame.items() if k not in drop} for _group, frame in frames
            if frame.get("conversation_id") == conversation.id]


def test_rule_settings_are_written_as_their_actions_write_them(desk, published):
    Tag.objects.create(name="vip")  # one tag exists, the other is created on first use
    RoutingRule.objects.create(name="VIP", position=1, target="team", target_team=desk.vip, set_priority=3,
                               set_tags="vip, Needs  callback", set_team=desk.vip, conditions=[])
    routed, by_hand = receive(desk.email, "a@example.com"), receive(desk.email, "b@example.com")

    with published() as routed_frames:
        do_route_conversation(conversation_id=routed.id)
    with published() as hand_frames, transaction.atomic():
        conv_actions.do_change_priority(actor=None, conversation=by_hand, priority=3)
        conv_actions.do_add_tag(actor=None, conversation=by_hand, name="vip")
        conv_actions.do_add_tag(actor=None, conversation=by_hand, name=" Needs  callback")
        conv_actions.do_assign_conversation(actor=None, conversation=by_hand, team=desk.vip)
        conv_actions.do_assign_conversation(actor=None, conversation=by_hand, assignee=desk.concierge)

    routed.refresh_from_db()
    by_hand.refresh_from_db()
    for conversation in (routed, by_hand):
        assert (conversation.priority, conversation.team, conversation.assignee) == (3, desk.vip, desk.concierge)
        assert list(conversation.tags.values_list("name", flat=True)) == ["Needs callback", "vip"]
    assert Tag.objects.filter(name="vip").count() == 1 and Tag.objects.filter(name="Needs callback").count() == 1
    assert timeline(routed) == timeline(by_hand)
    assert [kind for kind, _ in timeline(routed)] == ["created", "priority_changed", "tags_changed", "tags_changed",
                                                      "assigned", "assigned"]
    routed_events = conversation_frames(routed_frames, routed)
    assert [e["op"] for e in routed_events] == ["priority", "tags", "tags", "assigned", "assigned", "routed"]
    assert routed_events[:-1] == conversation_frames(hand_frames, by_hand)
    assert RoutingDecision.objects.get(conversation=routed).outcome == "assigned"


def test_rule_settings_reapply_an_active_sla_policy_after_each_change(desk):
    SlaPolicy.objects.create(name="Tagged VIP", position=1, conditions=[{"field": "tags", "op": "eq", "value": "vip"}],
                             targets={"first_response": {"normal": 5, "high": 5}})
    SlaPolicy.objects.create(name="Email", position=2, conditions=[{"field": "channel", "op": "eq", "value": "email"}],
                             targets={"first_response": {"normal": 1440, "high": 240}})
    RoutingRule.objects.create(name="VIP", position=1, target="team", target_team=desk.vip, set_priority=2,
                               set_tags="vip", conditions=[])
    conversation = receive(desk.email, "c@example.com")
    first_response = SlaClock.objects.get(conversation=conversation, metric="first_response")
    assert (first_response.policy.name, first_response.target_seconds) == ("Email", 24 * 3600)

    do_route_conversation(conversation_id=conversation.id)

    first_response.refresh_from_db()
    assert (first_response.policy.name, first_response.target_seconds) == ("Tagged VIP", 300)
    reapplied = [e.data for e in SlaEvent.objects.filter(clock=first_response, kind="reapplied").order_by("id")]
    # The priority change re-applied the email policy's high target, then the tag the tagged policy's.
    assert [(e["policy"], e["target_seconds"]) for e in reapplied] == [("Email", 4 * 3600), ("Tagged VIP", 300)]
    conversation.refresh_from_db()
    assert conversation.assignee == desk.concierge and conversation.sla_due_at == first_response.due_at


def test_joined_line_written_with_the_assignment_is_the_row_the_orm_writes(desk, published):
    RoutingRule.objects.create(name="Chats", position=1, target="team", target_team=desk.support, conditions=[])
    conversation = receive(desk.chat, "visitor-1")
    with published() as frames:
        do_route_conversation(conversation_id=conversation.id)
    line = Message.objects.get(conversation=conversation, sender_type=Message.SenderType.SYSTEM)
    assert line.body == "Gina joined the chat"
    with transaction.atomic():
        orm = conv_actions.system_line(conversation, line.body)
    orm.refresh_from_db()
    for field in Message._meta.concrete_fields:
        if field.name not in ("id", "uuid", "created_at"):
            assert getattr(line, field.attname) == getattr(orm, field.attname), field.name
    assert line.uuid and line.uuid != orm.uuid and line.created_at <= orm.created_at
    message_frames = [f for _, f in frames if f.get("type") == "message"]
    assert {f.get("message_id") for f in message_frames if "message_id" in f} == {line.id}
    assert [f["message"]["body"] for f in message_frames if "message" in f] == ["Gina joined the chat"]


def test_compiled_conditions_agree_with_check_for_every_op_and_value():
    """The routing setup compiles each condition once (engine._tester); the result, or the error, is check()'s."""
    from conversations.conditions import _tester, check

    ops = ["eq", "neq", "gt", "gte", "lt", "lte", "contains", "startswith", "in", "not_in", "any_of", "exists",
           "within", "unknown"]
    values = [None, "", "Abc", "abc", "ABC def", 0, 1, 5, 5.0, "5", "x5", True, False, [], ["Abc", "x"], [None],
              ["abc", ["ABC"]], {}, {"a": 1}, ["5", 7], [1, 2], "en", "EN", float("nan"), "1e3", [[]],
              {"days": {}}, {"tz": "UTC", "days": {d: [["00:00", "23:59"]] for d in
                                                   ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}]

    def outcome(function, *args):
        try:
            return function(*args)
        except Exception as exc:  # noqa: BLE001 - the same error is the expected outcome
            return type(exc)

    for op in ops:
        for expected in values:
            test = _tester(op, expected)
            for actual in values:
                assert outcome(test, actual) == outcome(check, actual, op, expected), (op, expected, actual)


def test_compiled_rules_explain_as_evaluate_does(desk):
    from conversations.conditions import compile_rule, evaluate, evaluate_compiled, gather_facts

    conversation = do_receive_inbound_message(
        inbox=desk.chat, source_id="visitor-2", body="Hola, mi pedido no ha llegado todavía",
        meta={"prechat": {"department": "Billing", "zip": "10001"}, "visitor": {"page_url": "https://x.example/p?utm_campaign=bf"}},
    ).message.conversation
    rules = [
        RoutingRule(name="a", conditions=[{"field": "language", "op": "eq", "value": "es"},
                                          {"field": "prechat.department", "op": "in", "value": ["billing", "Sales"]}]),
        RoutingRule(name="b", match="any", conditions=[{"field": "zip", "op": "startswith", "value": ["100", "2"]},
                                                       {"field": "segment", "op": "eq", "value": "VIP"}, "junk"]),
        RoutingRule(name="c", conditions=[]),
        RoutingRule(name="d", conditions=[{"field": "campaign", "op": "eq", "value": "BF"},
                                          {"field": "history.conversations", "op": "gte", "value": "x"},
                                          {"field": "text", "op": "any_of", "value": ["pedido", "refund"]},
                                          {"field": "prechat.department", "op": "exists"}]),
    ]
    seen: dict = {}
    compiled_facts, facts = gather_facts(conversation), gather_facts(conversation)
    for rule in rules:
        assert evaluate_compiled(compile_rule(rule), compiled_facts, seen) == evaluate(rule, facts)


@pytest.mark.parametrize("prefetch", [True, False])
def test_contact_facts_read_with_the_lock_or_lazily_decide_the_same(desk, make_agent, prefetch):
    """The decision's first round trip reads the contact's segments and history when the rules use them; a
    decision that does not (or whose cached setup said otherwise) reads them when a rule first asks."""
    from conversations.actions import do_update_contact
    from conversations.models import Segment

    Segment.objects.create(name="VIP", priority_level=5, rule={"match": "all", "conditions": [
        {"field": "attributes.spend_tier", "op": "gte", "value": 5}]})
    RoutingRule.objects.create(name="VIP", position=1, target="team", target_team=desk.vip,
                               conditions=[{"field": "vip_level", "op": "gte", "value": 5}])
    RoutingRule.objects.create(name="Repeat", position=2, target="team", target_team=desk.support,
                               conditions=[{"field": "history.conversations", "op": "gte", "value": 1}])
    earlier = receive(desk.email, "rich@example.com")
    conv_actions.do_change_status(actor=None, conversation=earlier, status="closed")
    conversation = receive(desk.email, "rich@example.com")
    do_update_contact(actor=None, contact=conversation.contact, custom_attributes={"spend_tier": 7})
    with mock.patch("routing.actions.decision.cached_setup", return_value=None if prefetch else mock.Mock(reads_contact=False)):
        do_route_conversation(conversation_id=conversation.id)
    conversation.refresh_from_db()
    assert conversation.assignee == desk.concierge
    details = RoutingDecision.objects.get(conversation=conversation).details
    assert details["rules"] == [{"rule": "VIP", "matched": True, "conditions": ["vip_level gte 5: yes (is 5)"]}]


def test_chat_routed_without_a_team_is_offered_as_the_agents_first_team_by_name_says(desk, make_agent, published):
    """A skill target names no team: the offer settings are those of the agent's first team (by name) that
    works the inbox, read with the claim (agent.teams.filter(inboxes=...).first() before)."""
    from agents.models import AgentSkill, Skill
    from routing.models import QueueEntry

    skill = Skill.objects.create(name="Italian")
    offers = Team.objects.create(name="A offers", auto_accept=False, offer_timeout_seconds=45)
    offers.inboxes.set([desk.chat])
    later = Team.objects.create(name="Z later", auto_accept=True)
    later.inboxes.set([desk.chat])
    elsewhere = Team.objects.create(name="0 elsewhere", auto_accept=True)  # first by name, other inbox only
    elsewhere.inboxes.set([desk.email])
    linguist = make_agent("lina", teams=[later, offers, elsewhere])
    AgentSkill.objects.create(agent=linguist.agent, skill=skill, level=3)
    RoutingRule.objects.create(name="Italian", position=1, target="skill", target_skill=skill, skill_min_level=1,
                               conditions=[])
    conversation = receive(desk.chat, "visitor-it")
    with published() as frames:
        assert do_route_conversation(conversation_id=conversation.id).outcome == "offered"
    entry = QueueEntry.objects.get(conversation=conversation)
    assert entry.state == "offered" and entry.offered_to == linguist.agent
    assert [f["expires_in"] for _, f in frames if f.get("type") == "offer"] == [45]
    offers.auto_accept = True
    offers.save()
    second = receive(desk.chat, "visitor-it-2")
    assert do_route_conversation(conversation_id=second.id).outcome == "assigned"
