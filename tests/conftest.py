"""Shared fixtures: personas, API clients, event capture.

The suite runs against real PostgreSQL and Redis (see scripts/test.sh for the URLs);
these defaults only apply when pytest is started by hand.
"""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import pytest


@pytest.fixture(scope="session", autouse=True)
def _clean_redis():
    import redis
    from django.conf import settings

    assert settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), "tests run on PostgreSQL"
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.flushdb()


@pytest.fixture(autouse=True)
def _close_websocket_db_connection():
    """The consumers keep their threads' connections open (omnichannel.consumers.db_sync_to_async);
    close them after each test, or they would outlive the test database."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    from omnichannel.consumers import REPLAY_EXECUTOR

    for executor in (SyncToAsync.single_thread_executor, REPLAY_EXECUTOR):
        executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture
def no_background_tasks():
    """Routing, the queue drain and outbound delivery are not enqueued: the test calls the actions itself."""
    with mock.patch("routing.tasks.route_conversation.delay_on_commit"), \
            mock.patch("routing.tasks.drain_queue.delay_on_commit"), \
            mock.patch("routing.tasks.recheck_reopened.delay_on_commit"), \
            mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        yield


@pytest.fixture
def make_agent(db):
    from django.contrib.auth import get_user_model

    from agents.actions import do_set_agent_role
    from agents.models import AgentProfile

    User = get_user_model()

    def make(username: str, *, role: str = "agent", teams=(), status: str = "online"):
        user = User.objects.create_user(username=username, password="pw-" + username, first_name=username.title())
        agent = AgentProfile.objects.create(user=user, display_name=username.title(), status=status)
        agent.teams.set(list(teams))
        do_set_agent_role(agent=agent, role=role)
        return user

    return make


class World:
    """alice: agent on team Support (inbox_a, inbox_api); bob: supervisor; charlie: agent on Sales (inbox_b)."""


@pytest.fixture
def world(db, make_agent):
    from agents.models import Team
    from conversations.models import ChannelKind, Inbox

    w = World()
    w.inbox_a = Inbox.objects.create(name="Support email", kind=ChannelKind.EMAIL)
    w.inbox_api = Inbox.objects.create(name="Shop API", kind=ChannelKind.API,
                                       settings={"webhook_url": "http://127.0.0.1:9/hook"})
    w.inbox_b = Inbox.objects.create(name="Sales email", kind=ChannelKind.EMAIL)
    w.support = Team.objects.create(name="Support")
    w.support.inboxes.set([w.inbox_a, w.inbox_api])
    w.sales = Team.objects.create(name="Sales")
    w.sales.inboxes.set([w.inbox_b])
    w.alice = make_agent("alice", teams=[w.support])
    w.bob = make_agent("bob", role="supervisor", teams=[w.support])
    w.charlie = make_agent("charlie", teams=[w.sales])
    return w


@pytest.fixture
def inbound(world):
    """Post a customer message through the inbound action every channel calls."""
    from conversations.actions import do_receive_inbound_message

    def post(inbox=None, source_id="cust@example.com", body="Hello", **kw):
        return do_receive_inbound_message(inbox=inbox or world.inbox_a, source_id=source_id, body=body, **kw)

    return post


@pytest.fixture
def published(django_capture_on_commit_callbacks):
    """Capture realtime frames: `with published() as frames: ...` runs on-commit hooks and records sends."""

    @contextmanager
    def capture():
        frames: list[tuple[str, dict]] = []
        with mock.patch("omnichannel.realtime._send", lambda group, frame: frames.append((group, frame))), \
                mock.patch("omnichannel.realtime._send_many", frames.extend):  # publish_many()'s frames
            with mock.patch("conversations.tasks.deliver_outbound_message.delay"):
                with django_capture_on_commit_callbacks(execute=True):
                    yield frames

    return capture


@pytest.fixture
def api_client_for():
    from rest_framework.test import APIClient

    from agents.actions import do_create_api_token

    def make(user):
        _token, key = do_create_api_token(user=user, name="tests")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client

    return make


class Clock:
    """Controls what sla.actions believes the database's now() is."""

    def __init__(self, start):
        self.now = start

    def advance(self, **kw):
        from datetime import timedelta

        self.now += timedelta(**kw)


@pytest.fixture
def clock():
    """SLA time under the test's control (from Monday 2026-11-23 10:00 UTC), with routing and outbound
    delivery not enqueued."""
    from datetime import UTC, datetime

    c = Clock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))  # a Monday
    with mock.patch("sla.actions.db_now", lambda: c.now), \
            mock.patch("routing.tasks.route_conversation.delay_on_commit"), \
            mock.patch("routing.tasks.drain_queue.delay_on_commit"), \
            mock.patch("conversations.tasks.deliver_outbound_message.delay_on_commit"):
        yield c
