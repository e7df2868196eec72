"""A conversation's tags: replacing them (``do_set_tags``), adding one (``do_add_tag``; ``add_tag_locked`` for
an action that holds the row lock, routing's and SLA's), at most ``MAX_TAGS``, names normalized by
``normalize_tag``. The writes are raw SQL in one round trip (``common.write_change``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from omnichannel.errors import ActionError, check_text

from .. import hooks
from ..models import (
    Conversation,
    ConversationEvent,
)
from .common import check_agent_can_write, lock_conversation, publish_conversation, write_change

MAX_TAGS = 30


def normalize_tag(name: str) -> str:
    return " ".join((name or "").strip().split())[:64]


@transaction.atomic
def do_set_tags(*, actor: AbstractBaseUser | None, conversation: Conversation, names: Iterable[str]
                ) -> list[str]:
    """Replace the conversation's tags with `names` (created on first use).
    The writes bypass the ORM: raw SQL in one round trip (write_change)."""
    wanted = {normalize_tag(check_text(n, field="tags", label="A tag")) for n in names} - {""}
    if len(wanted) > MAX_TAGS:
        raise ActionError(f"At most {MAX_TAGS} tags per conversation", field="tags")
    if actor is not None:
        check_agent_can_write(actor, conversation)
    return _set_tags_locked(actor=actor, conversation=lock_conversation(conversation), wanted=wanted)


def _set_tags_locked(*, actor: AbstractBaseUser | None, conversation: Conversation, wanted: set[str],
                     current: list[str] | None = None) -> list[str]:
    """The writes and events of do_set_tags for an action that holds `conversation`'s row lock in its
    transaction; `wanted`: normalized, at most MAX_TAGS. `current`: the conversation's tag names as read under
    that lock (else read here). Raw SQL, not the ORM (write_change)."""
    if current is None:
        current = [t.name for t in conversation.tags.all()]
    added = sorted(wanted - set(current))
    removed = sorted(set(current) - wanted)
    if not added and not removed:
        return sorted(current)
    match = write_change(conversation, actor, ConversationEvent.Kind.TAGS_CHANGED,
                         {"added": added, "removed": removed}, tags=(added, removed))
    publish_conversation(conversation, "tags", actor, tags=sorted(wanted))
    hooks.match_changed(conversation=conversation, policy_or_clock=match)
    return sorted(wanted)


def do_add_tag(*, actor: AbstractBaseUser | None, conversation: Conversation, name: str) -> list[str]:
    names = set(conversation.tags.values_list("name", flat=True)) | {name}
    return do_set_tags(actor=actor, conversation=conversation, names=names)


def add_tag_locked(*, actor: AbstractBaseUser | None, conversation: Conversation, name: str, current: list[str]
                   ) -> list[str]:
    """do_add_tag for an action that holds `conversation`'s row lock and read its tag names (`current`) under
    it; returns the tags after (pass them as `current` to the next call)."""
    wanted = {normalize_tag(n) for n in {*current, name}} - {""}
    if len(wanted) > MAX_TAGS:
        raise ActionError(f"At most {MAX_TAGS} tags per conversation", field="tags")
    return _set_tags_locked(actor=actor, conversation=conversation, wanted=wanted, current=current)
