"""Authentication backend: Django's ModelBackend, loading the user's agent profile with the user.

Every console request needs both (the agent profile decides what the user may see), so the session's user
is read with its profile in one statement instead of two. That statement is written once per database
(building and compiling ``select_related("agent").get(pk=…)`` through the ORM cost ~1 ms of CPU per request);
the rows become model instances with ``from_db`` and each field's database converters, as the ORM makes them.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import ValidationError
from django.db import connections, router

from agents.models import AgentProfile

_SQL: dict[str, tuple] = {}


def _user_with_agent_sql(using: str) -> tuple:
    """(sql, user attnames, agent attnames, agent pk position, converters by column position) for `using`."""
    cached = _SQL.get(using)
    if cached is not None:
        return cached
    UserModel = get_user_model()
    connection = connections[using]
    qn = connection.ops.quote_name
    user_fields, agent_fields = UserModel._meta.concrete_fields, AgentProfile._meta.concrete_fields
    user_table, agent_table = UserModel._meta.db_table, AgentProfile._meta.db_table
    columns = [f"u.{qn(f.column)}" for f in user_fields] + [f"a.{qn(f.column)}" for f in agent_fields]
    link = AgentProfile._meta.get_field("user")
    sql = (f"SELECT {', '.join(columns)} FROM {qn(user_table)} u LEFT JOIN {qn(agent_table)} a "
           f"ON a.{qn(link.column)} = u.{qn(link.target_field.column)} "
           f"WHERE u.{qn(UserModel._meta.pk.column)} = %s")
    converters = []
    for pos, (table, f) in enumerate([(user_table, f) for f in user_fields] + [(agent_table, f) for f in agent_fields]):
        col = f.get_col(table)
        convs = [*connection.ops.get_db_converters(col), *f.get_db_converters(connection)]
        if convs:
            converters.append((pos, col, convs))
    agent_pk_pos = len(user_fields) + [f.primary_key for f in agent_fields].index(True)
    _SQL[using] = cached = (sql, [f.attname for f in user_fields], [f.attname for f in agent_fields], agent_pk_pos,
                            converters)
    return cached


class AgentModelBackend(ModelBackend):
    def get_user(self, user_id):
        UserModel = get_user_model()
        try:
            user_id = UserModel._meta.pk.get_db_prep_value(UserModel._meta.pk.to_python(user_id),
                                                           connections[router.db_for_read(UserModel)])
        except (ValidationError, TypeError, ValueError):  # a malformed value: no user
            return None
        using = router.db_for_read(UserModel)
        sql, user_names, agent_names, agent_pk_pos, converters = _user_with_agent_sql(using)
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(sql, [user_id])
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for pos, col, convs in converters:
            for conv in convs:
                row[pos] = conv(row[pos], col, connection)
        n = len(user_names)
        user = UserModel.from_db(using, user_names, row[:n])
        agent = None
        if row[agent_pk_pos] is not None:
            agent = AgentProfile.from_db(using, agent_names, row[n:])
            AgentProfile._meta.get_field("user").set_cached_value(agent, user)
        # A user without a profile gets the relation cached as missing (user.agent raises DoesNotExist).
        UserModel._meta.get_field("agent").set_cached_value(user, agent)
        return user if self.user_can_authenticate(user) else None
