"""Agents' roles (the role on the profile and the matching Django admin access: staff flag, permission group),
who may change them, users' API tokens, and presence (online, away, offline; the console's heartbeat and the
sweep of stopped consoles).

Roles: agents work conversations and never see the admin; supervisors also configure routing rules, SLA
policies and calendars, widgets and canned messages and edit agents' teams and limits; admins configure
everything and assign roles. Nobody changes their own role (except a superuser), only admins assign roles,
and only superusers touch a superuser or the superuser/staff flags and raw permissions (agents/admin.py).

An agent coming online is a hook point (agents/hooks.py) that routing handles: it serves its queue.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from omnichannel.errors import ActionError
from omnichannel.realtime import PRESENCE_GROUP, publish_ephemeral

from . import hooks
from .models import AgentProfile, ApiToken

ROLE_GROUPS = {AgentProfile.Role.SUPERVISOR: "Supervisors", AgentProfile.Role.ADMIN: "Admins"}
# The apps whose models the Admins group configures (and Supervisors view), by content type app label.
CONFIG_APPS = ("agents", "conversations", "routing", "sla", "campaigns", "chatbot", "reporting")
# What supervisors add, change and delete besides viewing: the day-to-day configuration of their teams.
SUPERVISOR_EDITS = {"routing": ["routingrule"], "sla": ["slapolicy", "businesscalendar"],
                    "campaigns": ["widgetconfig"], "conversations": ["cannedmessage"]}
# Never for supervisors, not even to view: other people's credentials.
SUPERVISOR_HIDDEN = {"agents": ["apitoken"]}


def _role_permissions(role: str):
    if role == AgentProfile.Role.ADMIN:
        return Permission.objects.filter(
            Q(content_type__app_label__in=CONFIG_APPS) | Q(content_type__app_label="auth", codename__in=[
                "add_user", "change_user", "view_user", "view_group"])
        )
    if role == AgentProfile.Role.SUPERVISOR:
        edits = Q()
        for app, models in SUPERVISOR_EDITS.items():
            edits |= Q(content_type__app_label=app, codename__in=[
                f"{action}_{model}" for model in models for action in ("add", "change", "delete")])
        hidden = Q()
        for app, models in SUPERVISOR_HIDDEN.items():
            hidden |= Q(content_type__app_label=app, content_type__model__in=models)
        return Permission.objects.filter(
            Q(content_type__app_label__in=CONFIG_APPS, codename__startswith="view_") | edits
            | Q(content_type__app_label="conversations", codename__in=[
                "change_conversation", "change_contact", "change_segment", "add_tag", "change_tag"])
            | Q(content_type__app_label="agents", codename__in=["change_agentprofile"])
            | Q(content_type__app_label="auth", codename="view_user")
        ).exclude(hidden)
    return Permission.objects.none()


def role_group(role: str) -> Group | None:
    name = ROLE_GROUPS.get(role)
    if name is None:
        return None
    group, _ = Group.objects.get_or_create(name=name)
    group.permissions.set(_role_permissions(role))
    return group


def sync_role_groups(**_kwargs) -> None:
    """(post_migrate) Give the role groups the permissions of their role as this version defines them."""
    for role in ROLE_GROUPS:
        role_group(role)
    # Superusers with a profile were once left without staff (so outside the admin): set it.
    get_user_model().objects.filter(is_superuser=True, is_staff=False, agent__isnull=False).update(is_staff=True)


def is_admin(user) -> bool:
    """A superuser, or an agent whose role is admin."""
    if getattr(user, "is_superuser", False):
        return True
    agent = AgentProfile.objects.filter(user_id=getattr(user, "pk", None)).only("role").first()
    return agent is not None and agent.role == AgentProfile.Role.ADMIN


def can_change_role(actor, agent: AgentProfile) -> bool:
    """Only admins assign roles; nobody but a superuser changes their own, and only a superuser changes a
    superuser's."""
    if actor is None or not is_admin(actor):
        return False
    if actor.is_superuser:
        return True
    return agent.user_id != actor.pk and not agent.user.is_superuser


def do_change_agent_role(*, actor, agent: AgentProfile, role: str) -> AgentProfile:
    """An admin's change of someone's role (the admin, the API): checked by can_change_role."""
    if role == agent.role:
        return agent
    if not can_change_role(actor, agent):
        raise ActionError("Only an admin can change roles, and nobody can change their own", field="role")
    return do_set_agent_role(agent=agent, role=role)


@transaction.atomic
def do_set_agent_role(*, agent: AgentProfile, role: str) -> AgentProfile:
    """Set the role and the matching Django admin access (staff flag and permission group), unchecked: for
    seeding, tests and do_change_agent_role. A superuser is always staff (the admin is theirs)."""
    if role not in AgentProfile.Role.values:
        raise ValueError(f"Unknown role {role!r}")
    user = agent.user
    user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS.values()))
    group = role_group(role)
    if group is not None:
        user.groups.add(group)
    is_staff = user.is_superuser or role != AgentProfile.Role.AGENT
    if user.is_staff != is_staff:
        user.is_staff = is_staff
        user.save(update_fields=["is_staff"])
    if agent.role != role:
        agent.role = role
        agent.save(update_fields=["role"])
    return agent


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def do_create_api_token(*, user, name: str) -> tuple[ApiToken, str]:
    """A new API key for `user`: returns the stored token and the key, which is never shown again."""
    name = (name or "").replace("\x00", "").strip()
    if not name:
        raise ActionError("Give the token a name (what will use it)", field="name")
    if len(name) > 100:
        raise ActionError("The name is longer than 100 characters", field="name")
    if user.api_tokens.count() >= 20:
        raise ActionError("A user has at most 20 tokens: revoke one first", field="name")
    key = "oc_" + secrets.token_urlsafe(30)
    token = ApiToken.objects.create(user=user, name=name, prefix=key[:10], key_hash=hash_api_key(key))
    return token, key


def do_revoke_api_token(*, actor, token_id: int) -> None:
    """Revoke one of `actor`'s own tokens (admins revoke anyone's in the admin)."""
    deleted, _ = ApiToken.objects.filter(pk=token_id, user_id=actor.pk).delete()
    if not deleted:
        raise ActionError("No such token")


def touch_api_token(token: ApiToken) -> None:
    """Record when a token was last used, at most once a minute (one UPDATE, not one per request)."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)


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
