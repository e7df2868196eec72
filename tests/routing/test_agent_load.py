"""Agents' loads kept by triggers (routing.models.AgentLoad, migration 0005) always equal the counts routing used
to make, whatever changes conversations, offers and inboxes: actions, bulk updates, raw SQL, deletions."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection, transaction

from agents.models import AgentProfile, Team
from conversations import actions as conv_actions
from conversations import channels
from conversations.models import ChannelKind, Conversation, Inbox
from routing import queries as routing_queries
from routing.actions import do_accept_offer, do_reconcile_loads, do_route_conversation
from routing.models import AgentLoad, QueueEntry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_background_tasks(no_background_tasks):
    yield


def counted() -> dict[int, tuple[int, int]]:
    """Every agent's (live, asynchronous) load as the counting SQL finds it."""
    live, _ = routing_queries.count_load_sql(True)
    other, _ = routing_queries.count_load_sql(False)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT a.user_id, {live}, {other} FROM routing_agentprofile a")
        return {user: (chats, asynchronous) for user, chats, asynchronous in cursor.fetchall()
                if chats or asynchronous}


def kept() -> dict[int, tuple[int, int]]:
    return {row.user_id: (row.chats, row.asynchronous) for row in AgentLoad.objects.all()
            if row.chats or row.asynchronous}


def assert_consistent() -> None:
    assert kept() == counted()


def test_the_migration_and_routing_agree_on_the_live_chat_kinds():
    migration = importlib.import_module("routing.migrations.0005_agentload")
    assert migration.CHAT_KINDS == channels.live_kinds()


@pytest.fixture
def desk(world):
    world.chat = Inbox.objects.create(name="Chat", kind=ChannelKind.WEBCHAT)
    world.support.inboxes.add(world.chat)
    world.support.auto_accept = False
    world.support.save()
    return world


def test_loads_follow_every_kind_of_change(desk, inbound):
    alice, charlie = desk.alice.agent, desk.charlie.agent
    # Routing assigns (email) and offers (live chat).
    email = inbound(source_id="a@example.com").message.conversation
    do_route_conversation(conversation_id=email.pk)
    chat = inbound(inbox=desk.chat, source_id="visitor-1").message.conversation
    do_route_conversation(conversation_id=chat.pk)
    assert QueueEntry.objects.get(conversation=chat).state == "offered"
    assert_consistent()
    offered_to = QueueEntry.objects.get(conversation=chat).offered_to
    assert kept()[offered_to.user_id][0] == 1
    # The offer accepted: the offer's count becomes the conversation's.
    do_accept_offer(user=offered_to.user, conversation_id=chat.pk)
    assert_consistent()
    assert kept()[offered_to.user_id][0] == 1
    # Transfer, solve, reopen, close.
    email.refresh_from_db()
    conv_actions.do_assign_conversation(actor=desk.bob, conversation=email, assignee=desk.bob)
    assert_consistent()
    conv_actions.do_change_status(actor=desk.bob, conversation=email, status="solved")
    assert_consistent()
    conv_actions.do_change_status(actor=desk.bob, conversation=email, status="open")
    assert_consistent()
    # Bulk ORM updates, raw SQL, a moved conversation, deletions.
    Conversation.objects.filter(pk=email.pk).update(assignee=desk.charlie)
    assert_consistent()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE conversations_conversation SET assignee_id = %s, inbox_id = %s WHERE id = %s",
                       [desk.alice.pk, desk.chat.pk, email.pk])
    assert kept()[desk.alice.pk][0] >= 1
    assert_consistent()
    QueueEntry.objects.create(conversation=email, inbox=desk.chat, state="offered", offered_to=charlie,
                              enqueued_at=email.created_at)
    assert_consistent()
    QueueEntry.objects.filter(conversation=email).update(offered_to=alice)
    assert_consistent()
    QueueEntry.objects.filter(conversation=email).delete()
    assert_consistent()
    Conversation.objects.filter(pk=chat.pk).delete()
    assert_consistent()
    assert do_reconcile_loads() == 0


def test_an_inbox_changing_kind_recounts(desk, inbound):
    for n in range(3):
        conversation = inbound(source_id=f"c{n}@example.com").message.conversation
        Conversation.objects.filter(pk=conversation.pk).update(assignee=desk.alice)
    assert kept() == {desk.alice.pk: (0, 3)}
    Inbox.objects.filter(pk=desk.inbox_a.pk).update(kind=ChannelKind.WEBCHAT)
    assert kept() == counted() == {desk.alice.pk: (3, 0)}
    Conversation.objects.filter(inbox=desk.inbox_a).delete()  # an inbox with conversations cannot be deleted
    assert kept() == counted() == {}


def test_an_agent_deleted_or_moved_to_another_user(desk, inbound, make_agent):
    chat = Inbox.objects.create(name="Chat 2", kind=ChannelKind.WEBCHAT)
    conversation = inbound(inbox=chat, source_id="visitor-2").message.conversation
    QueueEntry.objects.create(conversation=conversation, inbox=chat, state="offered", offered_to=desk.charlie.agent,
                              enqueued_at=conversation.created_at)
    assert kept() == {desk.charlie.pk: (1, 0)}
    other = make_agent("olga")
    olga_profile = AgentProfile.objects.get(user=other)
    olga_profile.delete()
    AgentProfile.objects.filter(pk=desk.charlie.agent.pk).update(user=other)
    assert kept() == counted() == {other.pk: (1, 0)}
    AgentProfile.objects.filter(user=other).delete()  # the offer's agent: SET NULL
    assert kept() == counted() == {}


def test_reconcile_corrects_drift_and_says_how_many(desk, inbound, caplog):
    conversation = inbound().message.conversation
    Conversation.objects.filter(pk=conversation.pk).update(assignee=desk.alice)
    AgentLoad.objects.filter(user_id=desk.alice.pk).update(asynchronous=7)
    AgentLoad.objects.create(user_id=desk.charlie.pk, chats=2)
    assert do_reconcile_loads() == 2
    assert kept() == counted() == {desk.alice.pk: (0, 1)}
    assert "corrected the load of 2 agents" in caplog.text
    assert do_reconcile_loads() == 0


def test_routing_reads_the_kept_load(desk, inbound):
    """The capacity check uses the kept load: an agent whose kept load says full gets nothing."""
    desk.bob.agent.status = "offline"
    desk.bob.agent.save()
    AgentProfile.objects.filter(user=desk.alice).update(max_concurrent_async=1)
    first = inbound(source_id="one@example.com").message.conversation
    assert do_route_conversation(conversation_id=first.pk).agent.user == desk.alice
    second = inbound(source_id="two@example.com").message.conversation
    assert do_route_conversation(conversation_id=second.pk).outcome == "queued"
    conv_actions.do_change_status(actor=desk.alice, conversation=first, status="closed")
    assert kept() == {}


@pytest.mark.django_db(transaction=True)
def test_truncated_tables_leave_no_load(world, inbound):
    conversation = inbound().message.conversation
    Conversation.objects.filter(pk=conversation.pk).update(assignee=world.alice)
    assert kept() == {world.alice.pk: (0, 1)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE conversations_conversation CASCADE")
    assert kept() == counted() == {}


def test_new_team_member_starts_empty(db, make_agent):
    team = Team.objects.create(name="Empty")
    user = make_agent("nina", teams=[team])
    assert not AgentLoad.objects.filter(user_id=user.pk).exists()
    assert counted().get(user.pk) is None


@pytest.mark.django_db(transaction=True)
def test_outermost_decision_commits_in_its_last_round_trip(world, inbound, published, no_background_tasks):
    """do_route_conversation as a Celery task runs it (its own transaction): the COMMIT goes with the last
    round trip, the decision is committed, the after-commit frames go out, and the connection is usable."""
    from django.db.transaction import get_autocommit
    from django.test.utils import CaptureQueriesContext

    from routing.models import RoutingDecision

    conversation = inbound().message.conversation
    with published() as frames, CaptureQueriesContext(connection) as ctx:
        outcome = do_route_conversation(conversation_id=conversation.pk)
    assert outcome.outcome == "assigned" and get_autocommit() and not connection.in_atomic_block
    trips = [q["sql"].split(" -- params")[0] for q in ctx.captured_queries]
    assert trips[-2].endswith("; COMMIT") and "omnichannel_realtimeevent" in trips[-2]  # then Django's own, a no-op
    assert RoutingDecision.objects.filter(conversation=conversation, outcome="assigned").exists()
    assert {frame["type"] for _group, frame in frames} >= {"conversation"}
    assert kept() == counted() == {outcome.agent.user_id: (0, 1)}
    with transaction.atomic():
        second = inbound(source_id="second@example.com").message.conversation
    assert do_route_conversation(conversation_id=second.pk).outcome == "assigned"
