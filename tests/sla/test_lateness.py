"""A breached clock keeps its breach time and lateness through pauses and re-prioritising; a clock cancelled
because a priority had no target comes back with that priority (issue 14)."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest

from conversations import actions
from conversations.models import Conversation
from sla.actions import do_sweep_sla
from sla.models import SlaClock
from tests.sla.test_actions import clocks, policies, receive  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def _sweep(clock):  # noqa: F811
    with mock.patch("sla.actions.db_now", lambda: clock.now):
        return do_sweep_sla()


def test_pausing_a_breached_clock_keeps_when_it_fell_due(clock, policies):  # noqa: F811
    conv = receive("email")
    due = clocks(conv)["first_response"].due_at
    clock.advance(hours=24, minutes=1)
    assert _sweep(clock)["breached"] == 1
    clock.advance(minutes=10)
    actions.do_change_status(actor=None, conversation=conv, status="pending")
    clock.advance(minutes=10)
    actions.do_change_status(actor=None, conversation=conv, status="open")
    fr = clocks(conv)["first_response"]
    assert fr.state == "running" and fr.due_at == due
    conv.refresh_from_db()
    assert conv.sla_due_at == due  # the console shows "21 min over" and sorts it as the most overdue
    assert _sweep(clock) == {"warned": 0, "breached": 0}  # the breach was recorded once


def test_re_prioritising_a_breached_clock_keeps_its_lateness(clock, policies):  # noqa: F811
    conv = receive("email")
    due = clocks(conv)["first_response"].due_at
    clock.advance(hours=24, minutes=5)
    assert _sweep(clock)["breached"] == 1
    # Lower: the low target (48 h) would put the due time in the future; the breach stands.
    actions.do_change_priority(actor=None, conversation=conv, priority=Conversation.Priority.LOW)
    assert clocks(conv)["first_response"].due_at == due
    # Higher: the breach stands as it was recorded.
    actions.do_change_priority(actor=None, conversation=conv, priority=Conversation.Priority.URGENT)
    fr = clocks(conv)["first_response"]
    assert fr.due_at == due and fr.breached_at is not None


def test_an_unbreached_clock_that_ran_over_while_unswept_keeps_its_lateness(clock, policies):  # noqa: F811
    conv = receive("email")
    due = clocks(conv)["first_response"].due_at
    clock.advance(hours=24, minutes=30)  # no sweep ran (a worker was down)
    actions.do_change_status(actor=None, conversation=conv, status="pending")
    clock.advance(minutes=5)
    actions.do_change_status(actor=None, conversation=conv, status="open")
    # 30 min over when it paused; the 5 paused minutes do not count: it fell due 30 min of running ago.
    assert clocks(conv)["first_response"].due_at == due + timedelta(minutes=5)


def test_a_clock_cancelled_for_want_of_a_target_comes_back_with_the_priority(clock, policies):  # noqa: F811
    email = policies["email"]
    email.targets = {**email.targets, "resolution": {"normal": 4320}}  # no resolution target when high
    email.save()
    start = clock.now
    conv = receive("email")
    assert clocks(conv)["resolution"].state == "running"
    clock.advance(hours=1)
    actions.do_change_priority(actor=None, conversation=conv, priority=Conversation.Priority.HIGH)
    assert not SlaClock.objects.filter(conversation=conv, metric="resolution", state="running").exists()
    clock.advance(hours=2)
    actions.do_change_priority(actor=None, conversation=conv, priority=Conversation.Priority.NORMAL)
    res = SlaClock.objects.filter(conversation=conv, metric="resolution", state="running").get()
    # The customer has waited three hours for a resolution: the clock counts all of it.
    assert res.consumed_seconds == 3 * 3600 and res.due_at == start + timedelta(minutes=4320)
