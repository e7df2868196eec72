from datetime import timedelta

import pytest
from django.utils import timezone

from agents.actions import do_set_agent_status, do_sweep_presence
from agents.models import AgentProfile

pytestmark = pytest.mark.django_db


def test_closed_console_goes_offline_after_heartbeat_timeout(world, settings, published):
    alice = AgentProfile.objects.get(user=world.alice)
    do_set_agent_status(agent=alice, status="online")
    AgentProfile.objects.filter(pk=alice.pk).update(
        last_seen_at=timezone.now() - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS + 5))
    bob = AgentProfile.objects.get(user=world.bob)
    do_set_agent_status(agent=bob, status="away")  # fresh heartbeat
    with published() as frames:
        assert do_sweep_presence() >= 1
    alice.refresh_from_db()
    bob.refresh_from_db()
    assert alice.status == "offline" and bob.status == "away"
    assert {"type": "presence", "agent_id": world.alice.id, "status": "offline",
            "reason": "heartbeat timeout"} in [f for _, f in frames]


def test_roles_grant_admin_access(world):
    assert not world.alice.is_staff
    world.bob.refresh_from_db()
    assert world.bob.is_staff and world.bob.has_perm("conversations.view_conversation")
    assert not world.bob.has_perm("conversations.delete_inbox")
