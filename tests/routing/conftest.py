"""Fixtures shared by the routing tests."""

from __future__ import annotations

import pytest

from agents.models import Team
from conversations.models import ChannelKind, Inbox


@pytest.fixture
def desk(db, make_agent):
    """Inboxes of every kind handled by one Support team, plus specialists."""
    d = type("Desk", (), {})()
    d.inboxes = {k: Inbox.objects.create(name=k, kind=k) for k in ChannelKind.values}
    d.support = Team.objects.create(name="Support")
    d.support.inboxes.set(d.inboxes.values())
    d.billing = Team.objects.create(name="Billing")
    d.billing.inboxes.set(d.inboxes.values())
    d.tier2 = Team.objects.create(name="Tier 2")
    d.tier2.inboxes.set(d.inboxes.values())
    d.generalist = make_agent("gina", teams=[d.support])
    d.billing_agent = make_agent("bill", teams=[d.billing])
    d.senior = make_agent("sam", teams=[d.tier2])
    return d
