"""Authentication backend: Django's ModelBackend, loading the user's agent profile with the user.

Every console request needs both (the agent profile decides what the user may see), so the session's user
is read with its profile in one statement instead of two. That statement is written once
(agents/queries.py: building and compiling ``select_related("agent").get(pk=…)`` through the ORM cost
~0.9-1.1 ms of CPU per inbox page, 16-20 %, measured 2026-12-08); the rows become model instances as the ORM
makes them (omnichannel.db.from_row).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError
from django.db import connection

from agents import queries
from agents.models import AgentProfile
from omnichannel.db import from_row


class AgentModelBackend(ModelBackend):
    def get_user(self, user_id):
        UserModel = get_user_model()
        try:
            user_id = UserModel._meta.pk.get_db_prep_value(UserModel._meta.pk.to_python(user_id), connection)
        except (ValidationError, TypeError, ValueError):  # a malformed value: no user
            return None
        sql, n, agent_pk_pos = queries.user_with_agent_sql()
        with connection.cursor() as cursor:
            cursor.execute(sql, [user_id])
            row = cursor.fetchone()
        if row is None:
            return None
        user = from_row(UserModel, row[:n])
        agent = None
        if row[agent_pk_pos] is not None:
            agent = from_row(AgentProfile, row[n:])
            AgentProfile._meta.get_field("user").set_cached_value(agent, user)
        # A user without a profile gets the relation cached as missing (user.agent raises DoesNotExist).
        UserModel._meta.get_field("agent").set_cached_value(user, agent)
        return user if self.user_can_authenticate(user) else None
