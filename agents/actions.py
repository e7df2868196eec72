"""Agents' roles (the role on the profile and the matching Django admin access: staff flag, permission group)
and presence (online, away, offline; the console's heartbeat and the sweep of stopped consoles).

An agent coming online is a hook point (agents/hooks.py) that routing handles: it serves its queue.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from omnichannel.realtime import PRESENCE_GROUP, publish_ephemeral

from . import hooks
from .models import AgentProfile

ROLE_GROUPS = {AgentProfile.Role.SUPERVISOR: "Supervisors", AgentProfile.Role.ADMIN: "Admins"}
# The apps whose models the Admins group configures (and Supervisors view), by content type app label.
CONFIG_APPS = ("agents", "conversations", "routing", "sla", "campaigns", "chatbot", "reporting", "authtoken")


def _role_permissions(role: str):
    if role == AgentProfile.Role.ADMIN:
        return Permission.objects.filter(
            Q(content_type__app_label__in=CONFIG_APPS) | Q(content_type__app_label="auth", codename__in=[
                "add_user", "change_user", "view_user", "view_group"])
        )
    if role == AgentProfile.Role.SUPERVISOR:
        return Permission.objects.filter(
            Q(content_type__app_label__in=CONFIG_APPS, codename__startswith="view_")
            | Q(content_type__app_label="conversations", codename__in=[
                "change_conversation", "change_contact", "add_cannedmessage", "change_cannedmessage",
                "delete_cannedmessage", "change_segment", "add_tag", "change_tag"])
            | Q(content_type__app_label="agents", codename__in=["change_agentprofile"])
            | Q(content_type__app_label="auth", codename="view_user")
        )
    return Permission.objects.none()


def role_group(role: str) -> Group | None:
    name = ROLE_GROUPS.get(role)
    if name is None:
        return None
    group, _ = Group.objects.get_or_create(name=name)
    group.permissions.set(_role_permissions(role))
    return group


@transaction.atomic
def do_set_agent_role(*, agent: AgentProfile, role: str) -> AgentProfile:
    """Set the role and the matching Django admin access (staff flag and permission group)."""
    if role not in AgentProfile.Role.values:
        raise ValueError(f"Unknown role {role!r}")
    user = agent.user
    user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS.values()))
    group = role_group(role)
    if group is not None:
        user.groups.add(group)
    if not user.is_superuser:
        user.is_staff = role != AgentProfile.Role.AGENT
        user.save(update_fields=["is_staff"])
    if agent.role != role:
        agent.role = role
        agent.save(update_fields=["role"])
    return agent


@transaction.atomic
def do_set_agent_status(*, agent: AgentProfile, status: str, reason: str = "") -> AgentProfile:
    if status not in AgentProfile.Status.values:
        raise ValueError(f"Unknown status {status!r}")
    agent = AgentProfile.objects.select_for_update().get(pk=agent.pk)
    now = timezone.now()
    fields = ["status", "status_changed_at"]
    if status != AgentProfile.Status.OFFLINE:
        agent.last_seen_at = now
        fields.append("last_seen_at")
    if agent.status == status:
        if len(fields) > 2:
            agent.save(update_fields=["last_seen_at"])
        return agent
    agent.status = status
    agent.status_changed_at = now
    agent.save(update_fields=fields)
    if status == AgentProfile.Status.ONLINE:
        hooks.agent_online(agent=agent)  # routing offers them chats again and serves its queue
    publish_ephemeral({"type": "presence", "agent_id": agent.user_id, "status": status, "reason": reason},
                      groups=[PRESENCE_GROUP])
    return agent


def do_touch_presence(*, agent: AgentProfile) -> None:
    """Heartbeat from an open console: keeps an online/away agent from timing out."""
    AgentProfile.objects.filter(pk=agent.pk).update(last_seen_at=timezone.now())


def do_sweep_presence() -> int:
    """Set agents whose console stopped sending heartbeats offline. Returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)
    stale = AgentProfile.objects.filter(status__in=[AgentProfile.Status.ONLINE, AgentProfile.Status.AWAY]).filter(
        Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True))
    count = 0
    for agent in stale:
        do_set_agent_status(agent=agent, status=AgentProfile.Status.OFFLINE, reason="heartbeat timeout")
        count += 1
    return count
