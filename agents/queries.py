"""The agents app's hand-written SQL: the session's user with its agent profile (omnichannel.auth), read into
model instances by omnichannel.db.from_row."""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model

from omnichannel.db import columns

from .models import AgentProfile


@cache
def user_with_agent_sql() -> tuple[str, int, int]:
    """(sql, number of user columns, position of the profile's primary key in the row): one user by primary
    key (the parameter) with its agent profile's columns, NULL when it has none (select_related("agent"))."""
    user_model = get_user_model()
    link = AgentProfile._meta.get_field("user")
    sql = (f'SELECT {columns(user_model, "u")}, {columns(AgentProfile, "a")} '
           f'FROM "{user_model._meta.db_table}" u LEFT JOIN "{AgentProfile._meta.db_table}" a '
           f'ON a."{link.column}" = u."{link.target_field.column}" WHERE u."{user_model._meta.pk.column}" = %s')
    n = len(user_model._meta.concrete_fields)
    return sql, n, n + [f.primary_key for f in AgentProfile._meta.concrete_fields].index(True)
