"""Open consoles follow changes to who may see what.

A console socket joins the streams of the inboxes its agent may see when it connects. When that set can
change (team membership, a team's inboxes, a role, a deactivated user, an inbox created or deleted, however
it is written: admin, action, shell), every console is told after commit to check its own access again; a
console whose set changed is told to resync (the page reloads and reconnects with the new set), so an agent
removed from a team stops receiving that team's inboxes at once and an agent added to one sees them at once.
Presence and heartbeat writes do not trigger it."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_delete, post_save

from agents.models import AgentProfile, Team
from conversations.models import Inbox
from omnichannel.realtime import PRESENCE_GROUP, publish_ephemeral

ACCESS_CHANGED = {"type": "access_changed"}


def access_changed(**kwargs) -> None:
    publish_ephemeral(dict(ACCESS_CHANGED), groups=[PRESENCE_GROUP])


def _m2m(action: str, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        access_changed()


def _fields_touch(update_fields, *names: str) -> bool:
    return update_fields is None or any(name in update_fields for name in names)


def _agent_saved(instance, created: bool, update_fields=None, **kwargs) -> None:
    if created or _fields_touch(update_fields, "role"):
        access_changed()


def _user_saved(instance, created: bool, update_fields=None, **kwargs) -> None:
    if not created and _fields_touch(update_fields, "is_active", "is_superuser"):
        access_changed()


def _inbox_saved(instance, created: bool, **kwargs) -> None:
    if created:
        access_changed()


def connect() -> None:
    m2m_changed.connect(_m2m, sender=AgentProfile.teams.through, dispatch_uid="access-agent-teams")
    m2m_changed.connect(_m2m, sender=Team.inboxes.through, dispatch_uid="access-team-inboxes")
    post_save.connect(_agent_saved, sender=AgentProfile, dispatch_uid="access-agent-saved")
    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="access-user-saved")
    post_save.connect(_inbox_saved, sender=Inbox, dispatch_uid="access-inbox-saved")
    for model, uid in ((AgentProfile, "agent"), (Team, "team"), (Inbox, "inbox")):
        post_delete.connect(access_changed, sender=model, dispatch_uid=f"access-{uid}-deleted")
