"""Agents' roles: the role on the profile and the matching Django admin access (staff flag, permission group).

Presence (online, away, offline) is set by routing's actions: an agent coming online serves the queue.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

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
