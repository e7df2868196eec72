"""The hook registry (omnichannel/hooks.py) and the core's points (conversations/hooks.py)."""

from __future__ import annotations

import pytest

from conversations import hooks
from omnichannel.hooks import Hook


def test_handlers_run_in_registration_order_with_keyword_arguments_and_register_once():
    point = Hook("example", "An example point.")
    calls = []

    def first(*, value):
        calls.append(("first", value))

    def second(*, value):
        calls.append(("second", value))

    point.register(first)
    point.register(second)
    point.register(first)  # an app's ready() that runs twice registers once
    point(value=7)
    assert calls == [("first", 7), ("second", 7)]
    assert point.handlers == (first, second)


def test_collect_returns_each_handlers_answer_in_order():
    point = Hook("question", "A point the caller asks.")
    point.register(lambda *, value: value + 1)
    point.register(lambda *, value: value * 10)
    assert point.collect(value=2) == [3, 20]


def test_a_handler_error_reaches_the_caller():
    point = Hook("failing", "A point whose handler fails.")

    @point.register
    def boom(**_):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        point()


def _owners(point: Hook) -> list[str]:
    return [handler.__module__ for handler in point.handlers]


def test_the_engines_handle_the_core_points_sla_first():
    """SLA's clocks change before routing moves its queue (INSTALLED_APPS order), the order every path locks."""
    assert _owners(hooks.conversation_created) == ["sla.handlers", "routing.handlers"]
    assert _owners(hooks.customer_wrote) == ["sla.handlers", "routing.handlers"]
    assert _owners(hooks.status_changed) == ["sla.handlers", "routing.handlers"]
    assert _owners(hooks.contact_changed) == ["sla.handlers", "routing.handlers"]
    assert _owners(hooks.agent_replied) == ["sla.handlers"]
    assert _owners(hooks.match_changed) == ["sla.handlers"]
    assert _owners(hooks.priority_changed) == ["routing.handlers"]
    assert _owners(hooks.conversation_released) == ["routing.handlers"]
    assert _owners(hooks.capacity_freed) == ["routing.handlers"]
    assert _owners(hooks.agent_assigned) == ["routing.handlers"]
    assert _owners(hooks.conversation_merged) == ["routing.handlers"]
    assert _owners(hooks.chats_held) == ["routing.handlers"]
    assert _owners(hooks.match_check_sql) == ["sla.handlers"]


def test_the_match_check_is_one_sql_expression_of_every_handlers():
    """Routing folds it into its locking statement without knowing who asked for it (SLA)."""
    sql, params = hooks.match_check_sql_of(42)
    assert sql.startswith("(") and "sla_slapolicy" in sql and 42 in params
    point = Hook("example_check", "An example.")
    assert point.collect(conversation_id=1) == []


def test_every_core_point_is_handled_by_someone():
    points = [value for value in vars(hooks).values() if isinstance(value, Hook)]
    assert len(points) == 13
    assert all(point.handlers for point in points), [p.name for p in points if not p.handlers]


def test_routing_handles_an_agent_coming_online():
    from agents import hooks as agent_hooks

    assert _owners(agent_hooks.agent_online) == ["routing.handlers"]
