"""omnichannel.auth.AgentModelBackend: the session's user and its agent profile in one statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import AgentProfile
from omnichannel.auth import AgentModelBackend

pytestmark = pytest.mark.django_db


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_user_and_agent_profile_as_the_orm_loads_them(make_agent, django_user_model):
    user = make_agent("ann")
    AgentProfile.objects.filter(user=user).update(languages=["en", "es"], max_concurrent=4)
    with CaptureQueriesContext(connection) as ctx:
        loaded = AgentModelBackend().get_user(user.pk)
        agent = loaded.agent
        assert agent.user is loaded
    assert len(ctx.captured_queries) == 1
    expected = django_user_model.objects.select_related("agent").get(pk=user.pk)
    assert _fields(loaded) == _fields(expected)
    assert _fields(agent) == _fields(expected.agent)
    assert agent.languages == ["en", "es"] and agent.sees_all_inboxes is False
    assert not loaded._state.adding and loaded._state.db == "default"
    assert AgentModelBackend().get_user(str(user.pk)).pk == user.pk  # as the session stores it


def test_user_without_profile_missing_and_inactive_users(django_user_model):
    plain = django_user_model.objects.create_user("plain", password="x")
    with CaptureQueriesContext(connection) as ctx:
        loaded = AgentModelBackend().get_user(plain.pk)
        with pytest.raises(AgentProfile.DoesNotExist):
            _ = loaded.agent
    assert len(ctx.captured_queries) == 1
    assert _fields(loaded) == _fields(plain)
    assert AgentModelBackend().get_user(plain.pk + 1000) is None
    assert AgentModelBackend().get_user("not a number") is None
    plain.is_active = False
    plain.save()
    assert AgentModelBackend().get_user(plain.pk) is None
